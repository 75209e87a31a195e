"""The distribution network: any permutation and any multicast of L bank words onto L lanes.

The network is a generalized connection network built from 2x2 switches that can pass, swap or
broadcast either input. It is three parts in series, each a multistage network in butterfly form
(stage ``s`` pairs lanes ``p`` and ``p + stride`` for every ``p`` whose ``stride`` bit is clear):

1. a Benes network with strides ``L/2, ..., 2, 1, 2, ..., L/2`` that places every used source on
   a slot of the copy network (a permutation, routed by the looping algorithm);
2. a copy network with strides ``L/2, ..., 2, 1`` whose broadcasts make exactly as many copies of
   each source as the pattern needs (in an order the router chooses);
3. a Benes network with strides ``1, 2, ..., L/2, ..., 2, 1`` that permutes the copies onto the lanes
   that want them.

Two adjacent stages with the same stride compose into one (a 2x2 switch with these four modes is
every map from its two outputs to its two inputs), so the whole network has ``5 log2 L - 4``
stages of ``L/2`` switches; docs/networks.md explains the construction and its cost, and why a single
Benes network with broadcast switches is not enough. Routes come from
:mod:`fetta.search.benes_router`.
"""

import math

import numpy as np
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SwitchMode", "network_strides", "stage_pairs", "compose_modes", "pack_config",
           "unpack_config", "model", "BenesDistribution"]


class SwitchMode(enum.Enum, shape=unsigned(2)):
    """What a 2x2 switch does with its inputs.

    The *upper* port of a switch is its lower-numbered lane ``p``, the *lower* port is
    ``p + stride``. Bit 0 set: the upper output takes the lower input; bit 1 set: the lower output
    takes the upper input.
    """
    #: Each output takes the input of the same port.
    PASS = 0b00
    #: Both outputs take the lower-port input.
    BROADCAST_LOWER = 0b01
    #: Both outputs take the upper-port input.
    BROADCAST_UPPER = 0b10
    #: Each output takes the input of the other port.
    SWAP = 0b11


def _check_lanes(lanes):
    if (not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 2
            or lanes & (lanes - 1)):
        raise ValueError(f"Lane count must be a power of two of at least 2, not {lanes!r}")
    return lanes.bit_length() - 1


def network_strides(lanes):
    """Return the stride of every switch stage of the network for ``lanes`` lanes, in order.

    The stages are the placement Benes, the copy network and the permuting Benes, with the two
    junctions (stride ``L/2`` and stride 1) merged: ``5 log2 L - 4`` stages.
    """
    n = _check_lanes(lanes)
    down = [1 << t for t in reversed(range(n))]           # L/2, ..., 1
    up = [1 << t for t in range(n)]                         # 1, ..., L/2
    place = down + up[1:]                                   # Benes, high stride first
    copy = down                                             # copy network
    permute = up + down[1:]                                 # Benes, stride 1 first
    return tuple(place + copy[1:] + permute[1:])


def stage_pairs(lanes, stride):
    """Return the lane pairs ``(upper, lower)`` of the switches of a stage, by switch index."""
    upper = np.array([p for p in range(lanes) if not p & stride], dtype=np.intp)
    return upper, upper + stride


def compose_modes(first, then):
    """Return the mode of one switch that does what ``first`` then ``then`` do on the same pair."""
    def selects(mode):
        mode = SwitchMode(mode if isinstance(mode, SwitchMode) else int(mode)).value
        return (mode & 1, 1 - ((mode >> 1) & 1))           # input port each output takes
    f, t = selects(first), selects(then)
    lo, hi = f[t[0]], f[t[1]]
    return SwitchMode(lo | (1 - hi) << 1)


def _modes_array(modes, lanes, n_stages):
    modes = np.asarray(modes)
    if modes.shape[-2:] != (n_stages, lanes // 2):
        raise ValueError(f"Switch modes must have shape (..., {n_stages}, {lanes // 2}), "
                         f"not {modes.shape!r}")
    if modes.size and (modes.min() < 0 or modes.max() > 3):
        raise ValueError(f"Switch modes must be from 0 to 3, not {modes.min()}..{modes.max()}")
    return modes.astype(np.uint8)


def pack_config(modes, lanes):
    """Pack switch modes (shape ``(stages, L/2)``) into the integer value of ``config_layout``.

    Stage ``s``, switch ``j`` occupies bits ``2 (s L/2 + j)`` and up.
    """
    strides = network_strides(lanes)
    modes = _modes_array(modes, lanes, len(strides))
    if modes.ndim != 2:
        raise ValueError(f"pack_config takes the modes of one configuration, not shape "
                         f"{modes.shape!r}")
    value = 0
    for k, mode in enumerate(modes.reshape(-1).tolist()):
        value |= mode << (2 * k)
    return value


def unpack_config(value, lanes):
    """Inverse of :func:`pack_config`: the switch modes of a configuration value."""
    strides = network_strides(lanes)
    count = len(strides) * (lanes // 2)
    if not isinstance(value, int) or not 0 <= value < 1 << (2 * count):
        raise ValueError(f"Configuration must be an integer of {2 * count} bits, not {value!r}")
    modes = [(value >> (2 * k)) & 3 for k in range(count)]
    return np.array(modes, dtype=np.uint8).reshape(len(strides), lanes // 2)


def model(config, words, *, strides=None):
    """Bit-exact model of :class:`BenesDistribution`, vectorized over beats.

    Parameters
    ----------
    config : array of int, shape ``(beats, stages, L/2)`` or ``(stages, L/2)``
        Switch modes (:class:`SwitchMode` values) of each beat; one configuration applies to every
        beat.
    words : array of int, shape ``(beats, L)``
        Input words of each beat.
    strides : sequence of int, optional
        Stride of each stage; by default :func:`network_strides` (another sequence models
        another multistage network of the same switches).

    Returns
    -------
    numpy.ndarray, shape ``(beats, L)``
        Output words; output lane ``o`` of a beat holds one of that beat's input words.
    """
    words = np.asarray(words)
    if words.ndim != 2:
        raise ValueError(f"Words must have shape (beats, lanes), not {words.shape!r}")
    lanes = words.shape[1]
    strides = network_strides(lanes) if strides is None else tuple(strides)
    modes = _modes_array(config, lanes, len(strides))
    if modes.ndim == 2:
        modes = np.broadcast_to(modes, (words.shape[0],) + modes.shape)
    if modes.ndim != 3 or modes.shape[0] != words.shape[0]:
        raise ValueError(f"Configuration of shape {modes.shape!r} does not match "
                         f"{words.shape[0]} beats")
    x = words.copy()
    for s, stride in enumerate(strides):
        upper, lower = stage_pairs(lanes, stride)
        mode = modes[:, s, :]
        up_in, low_in = x[:, upper], x[:, lower]
        x[:, upper] = np.where(mode & 1, low_in, up_in)
        x[:, lower] = np.where(mode & 2, up_in, low_in)
    return x


class BenesDistribution(wiring.Component):
    """Distribute ``lanes`` words of ``width`` bits onto ``lanes`` lanes: any permutation, any multicast.

    Every output lane takes one input word; which one is set per beat by a configuration that
    travels with the data through the pipeline, each stage consuming its switch modes, so the
    pattern can change every cycle. A configuration comes from
    :func:`fetta.search.benes_router.route_multicast` or ``route_permutation`` and is packed with
    :meth:`pack_config`. The network has ``5 log2 lanes - 4`` stages of ``lanes/2`` switches
    (see the module docstring).

    Latency: ``latency`` cycles (a register after every ``register_every`` stages, rounded up);
    throughput one beat per cycle. ``o.valid`` follows ``i.valid`` delayed by ``latency``. Words
    are moved, never changed, so nothing can overflow; every configuration value is legal.

    Parameters
    ----------
    lanes : int
        Number of input words and output lanes, a power of two from 2 to 256.
    width : int
        Word width in bits, from 1 to 64.
    register_every : int
        Switch stages between pipeline registers (1 by default: every stage is registered).

    Members
    -------
    i : ``In(stream.Signature(data.StructLayout({"data": ..., "config": config_layout}), always_ready=True))``
        Input words and the configuration of the beat.
    o : ``Out(stream.Signature(data.ArrayLayout(unsigned(width), lanes), always_ready=True))``
        Output words.
    """

    def __init__(self, *, lanes, width, register_every=1):
        if (not isinstance(lanes, int) or isinstance(lanes, bool) or not 2 <= lanes <= 256
                or lanes & (lanes - 1)):
            raise ValueError(f"Lane count must be a power of two from 2 to 256, not {lanes!r}")
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 64:
            raise ValueError(f"Word width must be an integer from 1 to 64, not {width!r}")
        self._strides = network_strides(lanes)
        if (not isinstance(register_every, int) or isinstance(register_every, bool)
                or not 1 <= register_every <= len(self._strides)):
            raise ValueError(f"Stages between registers must be an integer from 1 to "
                             f"{len(self._strides)}, not {register_every!r}")
        self._lanes = lanes
        self._width = width
        self._register_every = register_every
        self._config_layout = data.ArrayLayout(data.ArrayLayout(SwitchMode, lanes // 2),
                                               len(self._strides))
        words = data.ArrayLayout(unsigned(width), lanes)
        payload = data.StructLayout({"data": words, "config": self._config_layout})
        super().__init__({
            "i": In(stream.Signature(payload, always_ready=True)),
            "o": Out(stream.Signature(words, always_ready=True)),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def width(self):
        return self._width

    @property
    def register_every(self):
        return self._register_every

    @property
    def strides(self):
        """Stride of each switch stage, in order."""
        return self._strides

    @property
    def switches(self):
        """Number of 2x2 switches."""
        return len(self._strides) * (self._lanes // 2)

    @property
    def config_layout(self):
        """Layout of a configuration: stage by stage, switch by switch, a :class:`SwitchMode`."""
        return self._config_layout

    @property
    def latency(self):
        """Cycles from a beat at ``i`` to its words at ``o``."""
        return math.ceil(len(self._strides) / self._register_every)

    def pack_config(self, modes):
        """Pack switch modes of shape ``(stages, lanes/2)`` into a ``config_layout`` value (int)."""
        return pack_config(modes, self._lanes)

    def elaborate(self, platform):
        m = Module()
        lanes, half = self._lanes, self._lanes // 2
        stage_bits = 2 * half
        words = [self.i.payload.data[p] for p in range(lanes)]
        config = self.i.payload.config.as_value()
        valid = self.i.valid
        for first in range(0, len(self._strides), self._register_every):
            last = min(first + self._register_every, len(self._strides))
            for s in range(first, last):
                modes = config[(s - first) * stage_bits:(s - first + 1) * stage_bits]
                upper, lower = stage_pairs(lanes, self._strides[s])
                out = list(words)
                for j, (u, d) in enumerate(zip(upper.tolist(), lower.tolist())):
                    out[u] = Mux(modes[2 * j], words[d], words[u])
                    out[d] = Mux(modes[2 * j + 1], words[u], words[d])
                words = out
            group = first // self._register_every
            reg = Signal(data.ArrayLayout(unsigned(self._width), lanes),
                         name=f"words_{group}", reset_less=True)
            for p in range(lanes):
                m.d.sync += reg[p].eq(words[p])
            words = [reg[p] for p in range(lanes)]
            rest = (len(self._strides) - last) * stage_bits
            if rest:
                config_reg = Signal(rest, name=f"config_{group}", reset_less=True)
                m.d.sync += config_reg.eq(config[(last - first) * stage_bits:])
                config = config_reg
            valid_reg = Signal(name=f"valid_{group}")
            m.d.sync += valid_reg.eq(valid)
            valid = valid_reg
        m.d.comb += self.o.valid.eq(valid)
        for p in range(lanes):
            m.d.comb += self.o.payload[p].eq(words[p])
        return m


def resource_table(lanes=(8, 16, 32, 64), widths=(8, 16), register_every=(1,)):
    """Return a Markdown table of Yosys cell counts (builtin Yosys, single-bit cells)."""
    from ..sim.resources import yosys_stats
    rows = ["| lanes | width | registers every | stages | switches | latency | `$_MUX_` "
            "| flip-flops (data + config + valid) |",
            "|---|---|---|---|---|---|---|---|"]
    for k in register_every:
        for lane_count in lanes:
            for width in widths:
                dut = BenesDistribution(lanes=lane_count, width=width, register_every=k)
                cells = yosys_stats(dut)
                flops = sum(count for kind, count in cells.items() if "DFF" in kind)
                rows.append(f"| {lane_count} | {width} | {k} | {len(dut.strides)} | {dut.switches} "
                            f"| {dut.latency} | {cells['$_MUX_']:,} | {flops:,} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="Resource table of the distribution network")
    parser.add_argument("--lanes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--register-every", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    print(resource_table(args.lanes, args.widths, args.register_every))
