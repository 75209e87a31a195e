"""Resource counts of Amaranth components through Amaranth's builtin Yosys.

After ``proc; flatten; opt; wreduce; simplemap; opt`` a design is single-bit cells (``$_MUX_``,
``$_DFF_P_``, ``$_AND_``, ...), counted by type: technology-independent, deterministic and free of
any toolchain beyond Amaranth, which suits comparing networks with each other. (The builtin Yosys
has no technology mapping; LUT counts need a full Yosys and ``synth_ecp5``.)
"""

import json
from collections import Counter

from amaranth.back import rtlil

from .rtl import component_ports

__all__ = ["yosys_stats"]

_SCRIPT = """\
hierarchy -top {top}
proc
flatten
opt
wreduce
opt_clean
simplemap
opt
write_json
"""


def yosys_stats(component, *, name="top"):
    """Synthesize ``component`` to single-bit cells and count them by type.

    Parameters
    ----------
    component : wiring.Component
        The design; its signature's members become the ports.
    name : str
        Name of the top module.

    Returns
    -------
    collections.Counter
        Cell type (``"$_MUX_"``, ``"$_DFF_P_"``, ...) to count.
    """
    from amaranth._toolchain.yosys import find_yosys
    text = rtlil.convert(component, name=name, ports=component_ports(component), emit_src=False)
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = "read_rtlil <<rtlil\n" + text + "\nrtlil\n" + _SCRIPT.format(top=name)
    design = json.loads(yosys.run(["-q", "-"], script))
    return Counter(cell["type"] for cell in design["modules"][name]["cells"].values())
