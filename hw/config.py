"""The accelerator's configuration: one frozen, keyword-only dataclass and its derived parameters."""

import dataclasses
import json
import tomllib
from pathlib import Path

__all__ = ["AcceleratorConfig", "ISA_LIMITS"]

#: Upper bounds that the instruction encoding (``hw/isa.py``) places on the configuration.
ISA_LIMITS = {
    "loop_levels": 8,        # LOOP.level is 3 bits
    "depth": 1 << 13,        # strides are 14-bit signed, row addresses 16 bits
    "regions": 8,            # region fields are 3 bits
    "dist_routes": 1 << 10,  # route indices are 10 bits
    "red_routes": 1 << 10,
    "prog_depth": 1 << 16,   # the program counter is 16 bits
}


def _is_pow2(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value & (value - 1) == 0


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")


def _check_pow2(name, value, lo, hi):
    if not _is_pow2(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a power of two from {lo} to {hi}, not {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """Parameters of one accelerator instance.

    Every parameter is validated on construction; a bad value raises :exc:`ValueError` quoting it.
    Derived parameters (``lane_bits``, ``row_bits``, ``sum_width``, ...) are properties computed from
    the fields, so that the RTL, the model and the compiler never recompute them differently.

    Parameters
    ----------
    lanes : int
        L, the number of CE lanes and of scratchpad banks; a power of two from 4 to 256.
    width : int
        W, the operand and scratchpad word width in bits: 8 or 16.
    acc_width : int or None
        Accumulator width of each CE; from ``2 * width`` to ``62 - log2 L``.
        Default: 32 for W = 8, 48 for W = 16.
    regions : int
        Scratchpad regions (each one simple dual-port RAM of L banks); 3 to 8. A step reads two
        regions and writes a third.
    depth : int
        Rows per region; a power of two from 2 to 8192.
    loop_levels : int
        Levels of the loop nest a step runs (N); 1 to 8.
    prog_depth : int
        Instructions in program memory; a power of two from 2 to 65536.
    dist_routes : int
        Entries of the distribution route table (shared by the A and B networks); 1 to 1024.
    red_routes : int
        Entries of the reduction route table (reduction config and output masks); 1 to 1024.
    dist_register_every : int
        Switch stages of each distribution network between pipeline registers; 1 (every stage
        registered, the default) to ``dist_stages``. Fewer registers shorten the distribution
        latency (``ceil(dist_stages / dist_register_every)`` cycles, which every step's drain
        includes) and save flip-flops, at the cost of a longer combinational path: for a slow
        clock on a small FPGA.
    counter_width : int
        Bits of each performance counter (``CYCLES``, ``BUSY``, ``MACS``, ``STALLS``); 16 to 64.
        A counter wraps modulo ``2 ** counter_width``; its ``*_HI`` CSR reads the bits above 32
        (zero when ``counter_width <= 32``). Narrow counters save logic on small FPGAs.
    """

    lanes: int = 16
    width: int = 8
    acc_width: int | None = None
    regions: int = 4
    depth: int = 1024
    loop_levels: int = 4
    prog_depth: int = 256
    dist_routes: int = 64
    red_routes: int = 64
    dist_register_every: int = 1
    counter_width: int = 64

    def __post_init__(self):
        _check_pow2("lanes", self.lanes, 4, 256)
        if self.width not in (8, 16) or isinstance(self.width, bool):
            raise ValueError(f"width must be 8 or 16, not {self.width!r}")
        if self.acc_width is None:
            object.__setattr__(self, "acc_width", 32 if self.width == 8 else 48)
        # A reduced sum (acc_width + log2 L bits) must fit the 62-bit requantizer.
        _check_int("acc_width", self.acc_width, 2 * self.width, 62 - self.lane_bits)
        _check_int("regions", self.regions, 3, ISA_LIMITS["regions"])
        _check_pow2("depth", self.depth, 2, ISA_LIMITS["depth"])
        _check_int("loop_levels", self.loop_levels, 1, ISA_LIMITS["loop_levels"])
        _check_pow2("prog_depth", self.prog_depth, 2, ISA_LIMITS["prog_depth"])
        _check_int("dist_routes", self.dist_routes, 1, ISA_LIMITS["dist_routes"])
        _check_int("red_routes", self.red_routes, 1, ISA_LIMITS["red_routes"])
        _check_int("dist_register_every", self.dist_register_every, 1, self.dist_stages)
        # The CSRs hold 64 bits; below 16 a short program would already wrap.
        _check_int("counter_width", self.counter_width, 16, 64)

    # Derived parameters.

    @property
    def lane_bits(self):
        """log2 L."""
        return self.lanes.bit_length() - 1

    @property
    def dist_stages(self):
        """Switch stages of a distribution network (``5 log2 L - 4``, see ``hw/distribution.py``)."""
        return 5 * self.lane_bits - 4

    @property
    def row_bits(self):
        """Bits of a row address within a region."""
        return self.depth.bit_length() - 1

    @property
    def sum_width(self):
        """Width of a reduced sum: an accumulator plus log2 L bits, so a sum of L never overflows."""
        return self.acc_width + self.lane_bits

    @property
    def word_min(self):
        return -(1 << (self.width - 1))

    @property
    def word_max(self):
        return (1 << (self.width - 1)) - 1

    @property
    def acc_min(self):
        return -(1 << (self.acc_width - 1))

    @property
    def acc_max(self):
        return (1 << (self.acc_width - 1)) - 1

    @property
    def counter_mask(self):
        """``2 ** counter_width - 1``: the performance counters count modulo ``counter_width`` bits."""
        return (1 << self.counter_width) - 1

    @property
    def words(self):
        """Scratchpad capacity in words (all regions)."""
        return self.regions * self.depth * self.lanes

    # Serialization.

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, **kwargs):
        """Return the fields (with ``acc_width`` resolved) as a JSON object."""
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    @classmethod
    def from_dict(cls, values):
        """Build a configuration from a mapping; unknown keys raise :exc:`ValueError`."""
        if not isinstance(values, dict):
            raise ValueError(f"configuration must be a mapping, not {values!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown!r}; known keys are {sorted(names)!r}")
        return cls(**values)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_toml(cls, source):
        """Build a configuration from TOML text or a path to a TOML file.

        The keys are read from an ``[accelerator]`` table if there is one, else from the top level.
        """
        if isinstance(source, Path) or (isinstance(source, str) and "=" not in source
                                         and source.endswith(".toml")):
            text = Path(source).read_text()
        else:
            text = source
        values = tomllib.loads(text)
        if "accelerator" in values:
            values = values["accelerator"]
        return cls.from_dict(values)
