"""The accelerator top: controller, scratchpad, distribution networks, CE array, reduction, requantizer.

:class:`Datapath` gathers, for one configuration, the network and requantizer components, their
latencies and the meaning of route-table entries (used by the RTL, the model and the compiler);
:class:`Timing` is the cycle count of every instruction, derived from those latencies.
"""

import dataclasses
import functools

import numpy as np

from . import distribution as _dist
from . import reduction as _red
from .config import AcceleratorConfig
from .distribution import BenesDistribution
from .isa import route_words
from .reduction import ReductionNetwork
from .requantize import Requantizer

__all__ = ["Datapath", "Timing"]


def _ceil32(bits):
    return -(-bits // 32) * 32


class Datapath:
    """The datapath components of one configuration and the meaning of route-table entries.

    A distribution entry is the network's configuration value (an int of ``dist_bits`` bits). A
    reduction entry packs, from bit 0, the reduction configuration (``red_bits``, padded to a
    multiple of 32), the ``keep`` lane mask (L bits, padded to a multiple of 32) and the ``write``
    lane mask.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._config = config

    @property
    def config(self):
        return self._config

    # Components (fresh instances each call: an Amaranth component is elaborated once).

    def distribution(self):
        c = self._config
        return BenesDistribution(lanes=c.lanes, width=c.width)

    def reduction(self):
        c = self._config
        return ReductionNetwork(lanes=c.lanes, width=c.acc_width)

    def requantizer(self):
        c = self._config
        return Requantizer(lanes=c.lanes, acc_width=c.sum_width, width=c.width, seed=0)

    @functools.cached_property
    def _probe(self):
        return self.distribution(), self.reduction(), self.requantizer()

    @property
    def dist_latency(self):
        return self._probe[0].latency

    @property
    def red_latency(self):
        return self._probe[1].latency

    @property
    def rq_latency(self):
        return self._probe[2].latency

    @property
    def dist_bits(self):
        return self._probe[0].config_layout.size

    @property
    def red_bits(self):
        return self._probe[1].config_layout.size

    @property
    def keep_offset(self):
        return _ceil32(self.red_bits)

    @property
    def write_offset(self):
        return self.keep_offset + _ceil32(self._config.lanes)

    @property
    def red_entry_bits(self):
        return self.write_offset + self._config.lanes

    @property
    def dist_words(self):
        """32-bit words per distribution route entry (the ``DIST_WORDS`` CSR)."""
        return route_words(self.dist_bits)

    @property
    def red_words(self):
        """32-bit words per reduction route entry (the ``RED_WORDS`` CSR)."""
        return route_words(self.red_entry_bits)

    # Route-table entries.

    def check_dist_bits(self, bits):
        if not isinstance(bits, int) or not 0 <= bits < 1 << self.dist_bits:
            raise ValueError(f"distribution entry must be an integer of {self.dist_bits} bits, "
                             f"not {bits!r}")
        return bits

    def check_red_entry(self, bits):
        if not isinstance(bits, int) or not 0 <= bits < 1 << self.red_entry_bits:
            raise ValueError(f"reduction entry must be an integer of {self.red_entry_bits} bits, "
                             f"not {bits!r}")
        return bits

    def pack_red_entry(self, config, *, keep, write):
        """Pack a reduction configuration value and lane masks (ints or sequences of lanes)."""
        L = self._config.lanes
        masks = []
        for name, mask in (("keep", keep), ("write", write)):
            if not isinstance(mask, int):
                lanes = list(mask)
                if any(not isinstance(l, (int, np.integer)) or not 0 <= l < L for l in lanes):
                    raise ValueError(f"{name} lanes must be from 0 to {L - 1}, not {lanes!r}")
                mask = sum(1 << int(l) for l in set(lanes))
            if not 0 <= mask < 1 << L:
                raise ValueError(f"{name} mask must be an integer of {L} bits, not {mask!r}")
            masks.append(mask)
        if not isinstance(config, int) or not 0 <= config < 1 << self.red_bits:
            raise ValueError(f"reduction configuration must be an integer of {self.red_bits} bits, "
                             f"not {config!r}")
        return config | masks[0] << self.keep_offset | masks[1] << self.write_offset

    def unpack_red_entry(self, bits):
        """Return ``(config, keep, write)`` of a packed reduction entry."""
        L = self._config.lanes
        self.check_red_entry(bits)
        return (bits & ((1 << self.red_bits) - 1), (bits >> self.keep_offset) & ((1 << L) - 1),
                (bits >> self.write_offset) & ((1 << L) - 1))

    def dist_lane_map(self, bits):
        """Return, for each lane, the index of the row word the distribution entry puts on it."""
        L = self._config.lanes
        modes = _dist.unpack_config(self.check_dist_bits(bits), L)
        return _dist.model(modes, np.arange(L, dtype=np.int64)[None, :])[0]

    def red_matrix(self, config):
        """Return the reduction configuration's 0/1 matrix ``M`` (sums = ``M @ accumulators``)."""
        L = self._config.lanes
        modes = np.array([[mode.value for mode in row] for row in _red.unpack_config(config, L)])
        if any(group is None for group in _red.symbolic_outputs(modes, L)):
            raise ValueError(f"reduction configuration {config:#x} adds some lane twice; "
                             f"the model does not reproduce its wrap-around")
        # Without multisets the network only passes, swaps and adds distinct lanes: it is linear
        # and exact, so unit vectors reveal it.
        unit = np.eye(L, dtype=np.int64)
        return _red.reduction_model(unit, modes, width=self._config.acc_width).T

    def red_semantics(self, bits):
        """Return ``(matrix, keep, write)`` of a packed reduction entry, masks as bool arrays."""
        config, keep, write = self.unpack_red_entry(bits)
        lanes = np.arange(self._config.lanes)
        return self.red_matrix(config), (keep >> lanes) & 1 == 1, (write >> lanes) & 1 == 1


@dataclasses.dataclass(frozen=True)
class Timing:
    """Cycle counts of the instructions, for the controller and the model alike.

    A STEP of ``n`` beats takes ``step_setup + n + drain`` cycles; other instructions ``instr``;
    a fetch beyond program memory ``fetch_fault``. See docs/isa.md, "Timing".
    """
    dist_latency: int
    red_latency: int
    rq_latency: int
    instr: int = 2          # fetch, execute
    step_setup: int = 3     # fetch, decode and check, load the route configurations
    fetch_fault: int = 1

    @classmethod
    def from_datapath(cls, datapath):
        return cls(dist_latency=datapath.dist_latency, red_latency=datapath.red_latency,
                   rq_latency=datapath.rq_latency)

    @classmethod
    def from_config(cls, config):
        return cls.from_datapath(Datapath(config))

    @property
    def drain(self):
        """Cycles after the last beat of a step until its last row is written: memory read, the
        distribution network, the CE, the reduction network, the requantizer, the write."""
        return 2 + self.dist_latency + self.red_latency + self.rq_latency

    @property
    def step_stalls(self):
        """Cycles of a running step without a beat issued (the STALLS counter): load and drain."""
        return 1 + self.drain

    def step_cycles(self, beats):
        return self.step_setup + beats + self.drain
