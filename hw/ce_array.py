"""The CE array: L contraction engines sharing one ``first`` flag."""

from amaranth import Cat, Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .ce import ContractionEngine

__all__ = ["CEArray"]


class CEArray(wiring.Component):
    """``lanes`` saturating multiply-accumulate lanes (:class:`~fetta.hw.ce.ContractionEngine`).

    Lane l multiplies ``a[l]`` by ``b[l]``; a beat with ``first`` set restarts every accumulator,
    any other adds to it. Latency :attr:`latency` (the CE's, 2 cycles) from a beat to the
    accumulators; throughput one beat per cycle. Each accumulator saturates on its own;
    ``overflow`` is the OR of the lanes' sticky flags, cleared by ``clear``.

    Parameters
    ----------
    lanes : int
        Number of lanes, at least 1.
    width : int
        Operand width in bits.
    acc_width : int
        Accumulator width in bits (at least ``2 * width``).

    Members
    -------
    i : ``In(stream.Signature(data.StructLayout({"a", "b", "first"}), always_ready=True))``
        ``a`` and ``b`` arrays of ``lanes`` signed words.
    acc : ``Out(data.ArrayLayout(signed(acc_width), lanes))``
    overflow : ``Out(1)``
    clear : ``In(1)``
    """

    def __init__(self, *, lanes, width, acc_width):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"Lane count must be a positive integer, not {lanes!r}")
        if not isinstance(width, int) or not 2 <= width <= 32:
            raise ValueError(f"Operand width must be an integer from 2 to 32, not {width!r}")
        if not isinstance(acc_width, int) or acc_width < 2 * width:
            raise ValueError(f"Accumulator width must be an integer of at least 2 * width = "
                             f"{2 * width}, not {acc_width!r}")
        self._lanes, self._width, self._acc_width = lanes, width, acc_width
        words = data.ArrayLayout(signed(width), lanes)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"a": words, "b": words, "first": 1}),
                                     always_ready=True)),
            "acc": Out(data.ArrayLayout(signed(acc_width), lanes)),
            "overflow": Out(1),
            "clear": In(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def latency(self):
        return ContractionEngine.latency

    def elaborate(self, platform):
        m = Module()
        flags = []
        for l in range(self._lanes):
            ce = ContractionEngine(width=self._width, acc_width=self._acc_width)
            m.submodules[f"ce_{l}"] = ce
            m.d.comb += [
                ce.i.valid.eq(self.i.valid),
                ce.i.payload.a.eq(self.i.payload.a[l]),
                ce.i.payload.b.eq(self.i.payload.b[l]),
                ce.i.payload.first.eq(self.i.payload.first),
                ce.clear.eq(self.clear),
                self.acc[l].eq(ce.acc),
            ]
            flags.append(ce.overflow)
        m.d.comb += self.overflow.eq(Cat(*flags).any())
        return m
