"""UART receiver and transmitter: 8 data bits, no parity, one stop bit (8N1), LSB first."""

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["uart_divisor", "uart_frame", "RxByte", "UARTRx", "UARTTx"]

#: Bits in one 8N1 frame: start, eight data bits, stop.
FRAME_BITS = 10


def uart_divisor(*, clk_freq, baud, tolerance=0.02):
    """Return the clock cycles per bit for ``baud`` at ``clk_freq``.

    The divisor is ``clk_freq / baud`` rounded to the nearest integer. Raises :exc:`ValueError`
    if it is below 4 (the receiver samples mid-bit and needs a few cycles per bit) or if the
    resulting baud rate differs from ``baud`` by more than ``tolerance`` (relative).
    """
    if not isinstance(clk_freq, (int, float)) or isinstance(clk_freq, bool) or clk_freq <= 0:
        raise ValueError(f"Clock frequency must be a positive number, not {clk_freq!r}")
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
    if not isinstance(tolerance, (int, float)) or not 0 < tolerance < 0.05:
        raise ValueError(f"Tolerance must be a number between 0 and 0.05, not {tolerance!r}")
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"Baud rate {baud} needs at least 4 clock cycles per bit at "
                         f"{clk_freq:g} Hz, not {clk_freq / baud:g}")
    error = abs(clk_freq / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"Baud rate {baud} is off by {error:.1%} at {clk_freq:g} Hz "
                         f"(divisor {divisor}); the limit is {tolerance:.1%}, not {error:.1%}")
    return divisor


def uart_frame(byte):
    """Return the line levels of one 8N1 frame of ``byte``: start bit, data LSB first, stop bit."""
    if not isinstance(byte, int) or not 0 <= byte <= 0xFF:
        raise ValueError(f"A UART byte must be an integer from 0 to 255, not {byte!r}")
    return [0] + [(byte >> i) & 1 for i in range(8)] + [1]


def _check_divisor(divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
        raise ValueError(f"Divisor must be an integer of at least 4, not {divisor!r}")


#: A received byte with its error flags.
RxByte = data.StructLayout({
    "data": 8,
    # The stop bit was low: wrong baud rate, noise or a break.
    "frame_error": 1,
    # Bytes were lost before this one because the consumer did not take them in time.
    "overrun": 1,
})


class UARTRx(wiring.Component):
    """UART receiver (8N1).

    The line goes through a two-stage synchronizer, then a falling edge starts a frame. The start
    bit is checked at its middle (a shorter low pulse is ignored as a glitch); each data bit and
    the stop bit are sampled ``divisor`` cycles apart from there. A low stop bit sets
    ``frame_error`` on the byte, which is still delivered, and the receiver waits for the line to
    go high before it looks for the next start bit.

    Latency: a byte appears on ``o`` :attr:`latency` cycles after the falling edge of its start
    bit reaches ``rx`` (in the middle of the stop bit). Throughput: one byte per frame. The
    stream cannot stall the line: a byte that completes while the previous one still waits on
    ``o`` is dropped, and the next delivered byte carries ``overrun``.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4 (see :func:`uart_divisor`).

    Members
    -------
    rx : ``In(1, init=1)``
        The serial line (idle high); asynchronous to the clock.
    o : ``Out(stream.Signature(RxByte))``
        Received bytes with their error flags.
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(RxByte)),
        })

    @property
    def divisor(self):
        return self._divisor

    @property
    def latency(self):
        """Cycles from the start bit's falling edge on ``rx`` to ``o.valid``."""
        # Two synchronizer stages, half a bit to the middle of the start bit, nine bits more to
        # the middle of the stop bit, one cycle to register the byte.
        return 2 + self._divisor // 2 + 9 * self._divisor + 1

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(div))
        bit = Signal(range(9))
        shift = Signal(8)
        lost = Signal()

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM(name="rx"):
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), shift.eq((line << 7) | (shift >> 1)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += lost.eq(1)
                    with m.Else():
                        m.d.sync += [
                            self.o.valid.eq(1),
                            self.o.payload.data.eq(shift),
                            self.o.payload.frame_error.eq(~line),
                            self.o.payload.overrun.eq(lost),
                            lost.eq(0),
                        ]
                    with m.If(line):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter (8N1).

    A byte accepted on ``i`` starts its start bit on ``tx`` in the next cycle; every bit lasts
    ``divisor`` cycles. ``i.ready`` is high while idle and in the last cycle of a stop bit, so
    back-to-back bytes leave with no idle time between frames: throughput one byte per
    :attr:`cycles_per_byte` cycles.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4 (see :func:`uart_divisor`).

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send.
    tx : ``Out(1, init=1)``
        The serial line (idle high), driven from a register.
    """

    def __init__(self, *, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    @property
    def cycles_per_byte(self):
        return FRAME_BITS * self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        left = Signal(range(FRAME_BITS + 1))
        # Stop bit, data, start bit: the low bit goes out first.
        shift = Signal(FRAME_BITS - 1)

        last_cycle = (left == 1) & (timer == 0)
        m.d.comb += self.i.ready.eq((left == 0) | last_cycle)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [self.tx.eq(0), shift.eq(self.i.payload | (1 << 8)),
                         left.eq(FRAME_BITS), timer.eq(div - 1)]
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [timer.eq(div - 1), left.eq(left - 1),
                             self.tx.eq(shift[0] | (left == 1)), shift.eq(shift >> 1)]
        return m
