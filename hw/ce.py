"""A contraction engine (CE): one lane of the CE array, a saturating multiply-accumulate."""

import numpy as np
from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ContractionEngine", "ce_model"]


class ContractionEngine(wiring.Component):
    """Multiply two signed ``width``-bit operands and accumulate into a signed ``acc_width``-bit register.

    A beat with ``first`` set starts a new accumulation (``acc = a*b``), any other adds to it
    (``acc += a*b``). Two stages: the product is registered (in the DSP block's output register
    where the FPGA has one), then added to the accumulator and saturated. Latency: the
    accumulator shows a beat's result :attr:`latency` (2) cycles after it is accepted; throughput
    one beat per cycle. Overflow saturates the accumulator at its most positive or negative value
    and sets the sticky ``overflow`` flag (in the cycle the saturated value shows) until ``clear``
    is asserted; a saturation in the same cycle as ``clear`` wins.

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

    latency = 2

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
        A = self._acc_width
        hi = (1 << (A - 1)) - 1
        lo = -(1 << (A - 1))
        # Stage 1: the product.
        product = Signal(signed(2 * self._width), reset_less=True)
        first = Signal(reset_less=True)
        valid = Signal()
        m.d.sync += [
            product.eq(self.i.payload.a * self.i.payload.b),
            first.eq(self.i.payload.first),
            valid.eq(self.i.valid),
        ]
        # Stage 2: accumulate; one bit more than the accumulator shows an overflow as differing
        # top bits, so saturation needs no comparator after the adder.
        total = Signal(signed(A + 1))
        m.d.comb += total.eq(Mux(first, 0, self.acc) + product)
        with m.If(self.clear):
            m.d.sync += self.overflow.eq(0)
        with m.If(valid):
            with m.If(total[A] == total[A - 1]):
                m.d.sync += self.acc.eq(total)
            with m.Else():
                m.d.sync += [self.acc.eq(Mux(total[A], lo, hi)), self.overflow.eq(1)]
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
