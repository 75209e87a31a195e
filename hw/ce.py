"""A contraction engine (CE): one lane of the CE array, a saturating multiply-accumulate."""

import numpy as np
from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ContractionEngine", "ce_model"]


class ContractionEngine(wiring.Component):
    """Multiply two signed ``width``-bit operands and accumulate into a signed ``acc_width``-bit register.

    A beat with ``first`` set starts a new accumulation (``acc = a*b``), any other adds to it
    (``acc += a*b``). Latency: the accumulator shows a beat's result one cycle after it is accepted;
    throughput one beat per cycle. Overflow saturates the accumulator at its most positive or
    negative value and sets the sticky ``overflow`` flag until ``clear`` is asserted.

    Parameters
    ----------
    width : int
        Operand width in bits (2 to 32).
    acc_width : int
        Accumulator width in bits; at least ``2 * width``.

    Members
    -------
    i : ``In(stream.Signature(data.StructLayout({"a", "b", "first"}), always_ready=True))``
        Operand pairs.
    acc : ``Out(signed(acc_width))``
        The accumulator.
    overflow : ``Out(1)``
        Sticky saturation flag.
    clear : ``In(1)``
        Clears ``overflow``.
    """

    latency = 1

    def __init__(self, *, width, acc_width):
        if not isinstance(width, int) or not 2 <= width <= 32:
            raise ValueError(f"Operand width must be an integer from 2 to 32, not {width!r}")
        if not isinstance(acc_width, int) or acc_width < 2 * width:
            raise ValueError(f"Accumulator width must be an integer of at least 2 * width = "
                             f"{2 * width}, not {acc_width!r}")
        self._width = width
        self._acc_width = acc_width
        layout = data.StructLayout({"a": signed(width), "b": signed(width), "first": 1})
        super().__init__({
            "i": In(stream.Signature(layout, always_ready=True)),
            "acc": Out(signed(acc_width)),
            "overflow": Out(1),
            "clear": In(1),
        })

    @property
    def width(self):
        return self._width

    @property
    def acc_width(self):
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        hi = (1 << (self._acc_width - 1)) - 1
        lo = -(1 << (self._acc_width - 1))
        product = Signal(signed(2 * self._width))
        total = Signal(signed(self._acc_width + 1))
        m.d.comb += [
            product.eq(self.i.payload.a * self.i.payload.b),
            total.eq(Mux(self.i.payload.first, 0, self.acc) + product),
        ]
        with m.If(self.clear):
            m.d.sync += self.overflow.eq(0)
        with m.If(self.i.valid):
            with m.If(total > hi):
                m.d.sync += [self.acc.eq(hi), self.overflow.eq(1)]
            with m.Elif(total < lo):
                m.d.sync += [self.acc.eq(lo), self.overflow.eq(1)]
            with m.Else():
                m.d.sync += self.acc.eq(total)
        return m


def ce_model(a, b, first, *, acc_width):
    """Bit-exact model of :class:`ContractionEngine` for a sequence of valid beats.

    Returns ``(acc, overflow)``: the accumulator after each beat and the sticky flag after each beat.
    """
    hi = (1 << (acc_width - 1)) - 1
    lo = -(1 << (acc_width - 1))
    acc, flag = 0, False
    accs, flags = [], []
    for x, y, f in zip(np.asarray(a, np.int64), np.asarray(b, np.int64), first):
        total = (0 if f else acc) + int(x) * int(y)
        acc = min(max(total, lo), hi)
        flag = flag or acc != total
        accs.append(acc)
        flags.append(flag)
    return np.array(accs, dtype=object), np.array(flags)
