"""The reduction network: a BIRRD-style butterfly that sums groups of lanes and reorders the sums.

The network has ``L`` lanes (a power of two) and ``S`` stages (``2 * log2(L)`` for ``L >= 8``, 3 for
``L = 4``) of ``L / 2`` two-input switches. Switch ``j`` of a stage takes ports ``lo = 2j`` and
``hi = 2j + 1`` and applies one :class:`SwitchMode`. Between stages ``s`` and ``s + 1``, output
port ``q`` of stage ``s`` drives input port ``reverse_bits(q, g)`` of stage ``s + 1``, where only the
low ``g = min(2 + s, log2 L, 2 log2 L - s)`` bits are reversed. The outputs of the last stage are the
output lanes.

Because every inter-stage wiring is a permutation of address bits, stage ``s`` always pairs values
whose *coordinates* differ in one bit, ``stage_dims(L)[s]``: the first ``log2 L`` stages pair along
bits ``0, 1, ..., log2 L - 1`` (a butterfly that can sum any aligned block of lanes), the remaining
stages visit every bit once more (for ``L = 4``: bit 0 only). :func:`port_coordinates` gives the
coordinate of every port, which is what the router works with.
"""

import numpy as np
from amaranth import Module, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "SwitchMode", "ReductionNetwork", "stage_count", "stage_dims", "wiring_bits", "port_coordinates",
    "pack_config", "unpack_config", "reduction_model", "symbolic_outputs",
]


class SwitchMode(enum.Enum, shape=2):
    """Operation of one 2x2 switch on its inputs ``lo`` (port ``2j``) and ``hi`` (port ``2j + 1``).

    Modes are named by the output port that receives the sum; the other output carries that port's
    own input unchanged.

    ========== ============ ============
    mode       output lo    output hi
    ========== ============ ============
    PASS       lo           hi
    SWAP       hi           lo
    ADD_TO_LO  lo + hi      hi
    ADD_TO_HI  lo           lo + hi
    ========== ============ ============
    """
    PASS = 0
    SWAP = 1
    ADD_TO_LO = 2
    ADD_TO_HI = 3


def _check_lanes(lanes):
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 4 or lanes > 1024 \
            or lanes & (lanes - 1):
        raise ValueError(f"Lane count must be a power of two from 4 to 1024, not {lanes!r}")
    return lanes.bit_length() - 1


def stage_count(lanes):
    """Return the number of stages of a network with ``lanes`` lanes (``2 log2 L``, 3 for ``L = 4``)."""
    n = _check_lanes(lanes)
    return 3 if n == 2 else 2 * n


def wiring_bits(lanes):
    """Return ``g`` for each wiring between consecutive stages (``stage_count - 1`` values)."""
    n = _check_lanes(lanes)
    return [min(2 + s, n, 2 * n - s) for s in range(stage_count(lanes) - 1)]


def _reverse_low(value, bits):
    low = value & ((1 << bits) - 1)
    rev = 0
    for k in range(bits):
        rev |= ((low >> k) & 1) << (bits - 1 - k)
    return (value & ~((1 << bits) - 1)) | rev


def port_coordinates(lanes):
    """Return ``coords[s][p]``: the coordinate of input port ``p`` of stage ``s``.

    The coordinate of a port is the input lane a value on it would come from if every switch were in
    ``PASS``. Output port ``q`` of stage ``s`` has the same coordinate as input port ``q`` of stage
    ``s``, so the output lanes of the network have coordinates ``coords[-1]``.
    """
    coords = [list(range(lanes))]
    for g in wiring_bits(lanes):
        prev = coords[-1]
        coords.append([prev[_reverse_low(p, g)] for p in range(lanes)])
    return coords


def stage_dims(lanes):
    """Return, for each stage, the coordinate bit in which the two inputs of each switch differ."""
    dims = []
    for stage in port_coordinates(lanes):
        diffs = {stage[2 * j] ^ stage[2 * j + 1] for j in range(lanes // 2)}
        assert len(diffs) == 1 and diffs.pop().bit_count() == 1
        dims.append((stage[0] ^ stage[1]).bit_length() - 1)
    return dims


def _config_layout(lanes):
    return data.ArrayLayout(data.ArrayLayout(SwitchMode, lanes // 2), stage_count(lanes))


def pack_config(modes, lanes):
    """Pack ``modes[s][j]`` (a :class:`SwitchMode` or its value) into the integer value of a config.

    Switch ``j`` of stage ``s`` occupies bits ``2 * (s * L / 2 + j)`` and up, as in
    :attr:`ReductionNetwork.config_layout`.
    """
    stages = stage_count(lanes)
    if len(modes) != stages or any(len(row) != lanes // 2 for row in modes):
        raise ValueError(f"Modes must be {stages} stages of {lanes // 2} switches, not "
                         f"{[len(row) for row in modes]!r}")
    value = 0
    for s, row in enumerate(modes):
        for j, mode in enumerate(row):
            value |= SwitchMode(mode).value << (2 * (s * (lanes // 2) + j))
    return value


def unpack_config(value, lanes):
    """Inverse of :func:`pack_config`: return ``modes[s][j]`` as :class:`SwitchMode` members."""
    half = lanes // 2
    return [[SwitchMode((value >> (2 * (s * half + j))) & 3) for j in range(half)]
            for s in range(stage_count(lanes))]


def _stage_widths(lanes, width):
    n = lanes.bit_length() - 1
    return [width + min(s + 1, n) for s in range(stage_count(lanes))]


def _wrap(values, bits):
    half = 1 << (bits - 1)
    return ((values + half) & ((1 << bits) - 1)) - half


def _mode_values(modes):
    if isinstance(modes, SwitchMode):
        return modes.value
    if isinstance(modes, (list, tuple)):
        return [_mode_values(m) for m in modes]
    return modes


def reduction_model(x, modes, *, width):
    """Bit-exact model of :class:`ReductionNetwork`, vectorized over beats.

    Parameters
    ----------
    x : array of int, shape ``(beats, L)``
        Signed ``width``-bit inputs.
    modes : array-like of int or SwitchMode, shape ``(beats, S, L / 2)`` or ``(S, L / 2)``
        The :class:`SwitchMode` values of every switch for every beat (or one configuration for all).
    width : int
        Input width ``W``.

    Returns
    -------
    array of int64, shape ``(beats, L)``
        The outputs, signed ``W + log2 L`` bits. Stage ``s`` computes in ``W + min(s + 1, log2 L)``
        bits and wraps (two's complement) on overflow, as the hardware does; a sum of distinct
        inputs never overflows.
    """
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2:
        raise ValueError(f"Inputs must have shape (beats, lanes), not {x.shape!r}")
    beats, lanes = x.shape
    stages = stage_count(lanes)
    if not isinstance(modes, np.ndarray):
        modes = _mode_values(modes)
    modes = np.asarray(modes, dtype=np.int64)
    if modes.ndim == 2:
        modes = np.broadcast_to(modes, (beats,) + modes.shape)
    if modes.shape != (beats, stages, lanes // 2):
        raise ValueError(f"Modes must have shape {(beats, stages, lanes // 2)!r}, not {modes.shape!r}")
    lo_bound = -(1 << (width - 1))
    if x.size and (x.min() < lo_bound or x.max() >= -lo_bound):
        raise ValueError(f"Inputs must be signed {width}-bit integers")
    wires = x.copy()
    widths = _stage_widths(lanes, width)
    gs = wiring_bits(lanes)
    for s in range(stages):
        lo, hi, mode = wires[:, 0::2], wires[:, 1::2], modes[:, s, :]
        total = lo + hi
        out = np.empty_like(wires)
        out[:, 0::2] = np.select([mode == 1, mode == 2], [hi, total], lo)
        out[:, 1::2] = np.select([mode == 1, mode == 3], [lo, total], hi)
        out = _wrap(out, widths[s])
        if s < stages - 1:
            # Input port p of the next stage is driven by output port reverse_bits(p, g).
            out = out[:, [_reverse_low(p, gs[s]) for p in range(lanes)]]
        wires = out
    return wires


def symbolic_outputs(modes, lanes):
    """Return, for each output lane, the set of input lanes whose sum it carries.

    A lane that would carry some input more than once (a multiset) is reported as ``None``. This
    is the exact check of a configuration: a route is correct if every output of interest carries
    exactly its group.
    """
    stages = stage_count(lanes)
    gs = wiring_bits(lanes)
    wires = [1 << k for k in range(lanes)]  # bitmask of input lanes, or None for a multiset
    for s in range(stages):
        out = [None] * lanes
        for j in range(lanes // 2):
            lo, hi = wires[2 * j], wires[2 * j + 1]
            mode = SwitchMode(modes[s][j])
            if mode in (SwitchMode.ADD_TO_LO, SwitchMode.ADD_TO_HI):
                total = None if lo is None or hi is None or lo & hi else lo | hi
                out[2 * j], out[2 * j + 1] = (total, hi) if mode == SwitchMode.ADD_TO_LO else (lo, total)
            elif mode == SwitchMode.SWAP:
                out[2 * j], out[2 * j + 1] = hi, lo
            else:
                out[2 * j], out[2 * j + 1] = lo, hi
        if s < stages - 1:
            out = [out[_reverse_low(p, gs[s])] for p in range(lanes)]
        wires = out
    return [None if w is None else frozenset(k for k in range(lanes) if w >> k & 1) for w in wires]


class ReductionNetwork(wiring.Component):
    """Sum groups of lanes and place each sum on any output lane, one vector per cycle.

    Each beat carries its own configuration (2 bits per switch, :attr:`config_layout`); stage ``s``
    consumes its part and forwards the rest with the data, so the configuration may change on every
    cycle. Every stage is registered. Latency: :attr:`latency` (= number of stages) cycles from a
    beat on ``i`` to its result on ``o``; throughput one beat per cycle; no back-pressure (both
    streams are ``always_ready``).

    Widths: inputs are signed ``width`` bits; stage ``s`` computes in ``width + min(s + 1, log2 L)``
    bits and the outputs are signed ``width + log2 L`` bits (:attr:`out_width`), so a sum of any set
    of distinct input lanes is exact. A configuration that adds some input twice (a multiset, see
    :func:`symbolic_outputs`) wraps in two's complement; :func:`reduction_model` reproduces it.

    Parameters
    ----------
    lanes : int
        Number of lanes ``L``, a power of two from 4 to 1024.
    width : int
        Input width ``W`` in bits, from 2 to 48.

    Members
    -------
    i : ``In(stream.Signature(data.StructLayout({"data": data.ArrayLayout(signed(W), L), "config": config_layout}), always_ready=True))``
        Input vectors with their configuration.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(out_width), L), always_ready=True))``
        The output vectors, :attr:`latency` cycles later.
    """

    def __init__(self, *, lanes, width):
        _check_lanes(lanes)
        # Up to 48 bits, so that sums of up to 1024 lanes stay exact in the int64 model.
        if not isinstance(width, int) or isinstance(width, bool) or not 2 <= width <= 48:
            raise ValueError(f"Input width must be an integer from 2 to 48, not {width!r}")
        self._lanes = lanes
        self._width = width
        self._config_layout = _config_layout(lanes)
        layout = data.StructLayout({
            "data": data.ArrayLayout(signed(width), lanes),
            "config": self._config_layout,
        })
        super().__init__({
            "i": In(stream.Signature(layout, always_ready=True)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(self.out_width), lanes),
                                      always_ready=True)),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def width(self):
        return self._width

    @property
    def out_width(self):
        """Output width: ``width + log2(lanes)`` bits."""
        return self._width + self._lanes.bit_length() - 1

    @property
    def stages(self):
        return stage_count(self._lanes)

    @property
    def latency(self):
        """Cycles from a beat on ``i`` to its result on ``o``."""
        return self.stages

    @property
    def config_layout(self):
        """``data.ArrayLayout(data.ArrayLayout(SwitchMode, L / 2), stages)``: ``config[s][j]``."""
        return self._config_layout

    def pack_config(self, modes):
        """Return the integer value of :attr:`config_layout` for ``modes[s][j]``."""
        return pack_config(modes, self._lanes)

    def elaborate(self, platform):
        m = Module()
        lanes, half = self._lanes, self._lanes // 2
        widths = _stage_widths(lanes, self._width)
        gs = wiring_bits(lanes)
        row_bits = 2 * half
        wires = list(self.i.payload.data)
        config = self.i.payload.config.as_value()  # raw bits of this stage and the later ones
        valid = self.i.valid
        for s in range(self.stages):
            out = [Signal(signed(widths[s]), name=f"s{s}_out{p}", reset_less=True)
                   for p in range(lanes)]
            row = config[:row_bits]
            for j in range(half):
                lo, hi = wires[2 * j], wires[2 * j + 1]
                total = lo + hi
                with m.Switch(row[2 * j:2 * j + 2]):
                    with m.Case(SwitchMode.PASS):
                        m.d.sync += [out[2 * j].eq(lo), out[2 * j + 1].eq(hi)]
                    with m.Case(SwitchMode.SWAP):
                        m.d.sync += [out[2 * j].eq(hi), out[2 * j + 1].eq(lo)]
                    with m.Case(SwitchMode.ADD_TO_LO):
                        m.d.sync += [out[2 * j].eq(total), out[2 * j + 1].eq(hi)]
                    with m.Case(SwitchMode.ADD_TO_HI):
                        m.d.sync += [out[2 * j].eq(lo), out[2 * j + 1].eq(total)]
            if s < self.stages - 1:
                # The configuration of the later stages travels with the data.
                forward = Signal(len(config) - row_bits, name=f"s{s}_config", reset_less=True)
                m.d.sync += forward.eq(config[row_bits:])
                config = forward
            next_valid = Signal(name=f"s{s}_valid")
            m.d.sync += next_valid.eq(valid)
            valid = next_valid
            if s < self.stages - 1:
                # Input port p of the next stage is driven by output port reverse_bits(p, g).
                wires = [out[_reverse_low(p, gs[s])] for p in range(lanes)]
            else:
                wires = out
        m.d.comb += self.o.valid.eq(valid)
        m.d.comb += [self.o.payload[p].eq(wires[p]) for p in range(lanes)]
        return m
