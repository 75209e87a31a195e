"""Board tops: the serial host link and its target on a real FPGA board, with clocking and pins.

Two boards are supported through amaranth-boards: the ULX3S with an ECP5-85F (the main target,
clocked from a PLL) and the iCEBreaker with an iCE40UP5K (a small design at the board's 12 MHz).
"""

import dataclasses

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

from ..hw.uart import uart_divisor
from .top import LinkTop, make_target

__all__ = ["Board", "BOARDS", "BoardTop", "ICEBREAKER_CONFIG", "ecp5_pll"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Board:
    """What the build needs to know about one board.

    Attributes
    ----------
    name : str
        Name on the command line.
    platform : callable
        Returns the amaranth-boards platform instance.
    clk_freq : float
        Default frequency of the design's clock in Hz (the board clock, or the PLL output).
    pll : bool
        Whether the design clock comes from a PLL (else it is the board's oscillator).
    target : str
        Default design behind the host link (see :func:`~fetta.boards.top.make_target`).
    programmer : str
        openFPGALoader's board name, for ``--program``.
    config : dict
        The accelerator configuration the board carries by default (keyword arguments of
        :class:`~fetta.hw.config.AcceleratorConfig`).
    """

    name: str
    platform: object
    clk_freq: float
    pll: bool
    target: str
    programmer: str
    config: dict = dataclasses.field(default_factory=dict)


def _ulx3s():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


#: The iCEBreaker's reduced accelerator (keyword arguments of AcceleratorConfig), which fills
#: 99 % of the iCE40UP5K's logic cells (docs/fpga.md): the fewest lanes, regions, loop levels,
#: accumulator bits and route entries (a 4 x 12 by 12 x 4 matrix product maps onto one entry
#: each; tests/test_uart_link.py runs it through the board top); 256 instructions, as many as
#: the program memory's block RAMs hold anyway; 16 rows per region (each row-address bit costs
#: logic); a distribution register every third switch stage, enough at 12 MHz; 16-bit
#: performance counters (they wrap after 5.4 ms of a running program) instead of 64-bit ones.
ICEBREAKER_CONFIG = dict(lanes=4, acc_width=16, regions=3, depth=16, loop_levels=1,
                         prog_depth=256, dist_routes=1, red_routes=1, dist_register_every=3,
                         counter_width=16)

BOARDS = {
    # The default configuration: 16 lanes of 8-bit operands, 4 regions of 1024 rows.
    "ulx3s": Board(name="ulx3s", platform=_ulx3s, clk_freq=100e6, pll=True,
                   target="accelerator", programmer="ulx3s"),
    # The reduced configuration above; `--target example` builds the link alone.
    "icebreaker": Board(name="icebreaker", platform=_icebreaker, clk_freq=12e6, pll=False,
                        target="accelerator", programmer="icebreaker", config=ICEBREAKER_CONFIG),
}


def ecp5_pll(f_in, f_out):
    """Return EHXPLLL dividers for ``f_out`` from ``f_in`` (both in Hz) with feedback from CLKOP.

    Searches every divider combination inside the datasheet ranges (PFD 3.125-400 MHz, VCO
    400-800 MHz, output up to 400 MHz) for the smallest frequency error, preferring a VCO near
    600 MHz. Returns a dict with ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV``, ``CLKOP_CPHASE`` and
    the achieved ``f_out``. Raises :exc:`ValueError` if no combination is within 0.5 %.
    """
    if not isinstance(f_in, (int, float)) or not 8e6 <= f_in <= 400e6:
        raise ValueError(f"PLL input must be from 8 to 400 MHz, not {f_in!r}")
    if not isinstance(f_out, (int, float)) or not 10e6 <= f_out <= 400e6:
        raise ValueError(f"PLL output must be from 10 to 400 MHz, not {f_out!r}")
    best = None
    for in_div in range(1, 129):
        pfd = f_in / in_div
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for fb_div in range(1, 81):
            out = pfd * fb_div
            for op_div in range(1, 129):
                vco = out * op_div
                if not 400e6 <= vco <= 800e6:
                    continue
                key = (abs(out - f_out), abs(vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, in_div, fb_div, op_div, out)
    if best is None or best[0][0] > 0.005 * f_out:
        raise ValueError(f"No EHXPLLL setting reaches {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz "
                         f"within 0.5 %, not {best and best[4] / 1e6!r}")
    _, in_div, fb_div, op_div, out = best
    return {"CLKI_DIV": in_div, "CLKFB_DIV": fb_div, "CLKOP_DIV": op_div,
            "CLKOP_CPHASE": (op_div - 1) // 2, "f_out": out}


class BoardTop(Elaboratable):
    """A :class:`~fetta.boards.top.LinkTop` on a board's UART, with its clock and status LEDs.

    LED 0 blinks at about 1.5 Hz while the design clock runs; LED 1 shows the PLL lock (always on
    without a PLL); LEDs 2 and 3 light while the receive and transmit lines are low.

    Parameters
    ----------
    board : Board
    clk_freq : float or None
        Design clock in Hz; default ``board.clk_freq``. On a board without a PLL it must equal the
        oscillator's frequency.
    baud : int
        UART baud rate (validated against the clock by :func:`~fetta.hw.uart.uart_divisor`).
    target : str or None
        Design behind the link; default ``board.target``.
    config : AcceleratorConfig or None
        Configuration of the ``"accelerator"`` target; default ``board.config``.
    timeout : float
        The bridge's request timeout in seconds.
    """

    def __init__(self, *, board, clk_freq=None, baud=115200, target=None, config=None,
                 timeout=0.1):
        if not isinstance(board, Board):
            raise TypeError(f"Board must be a Board, not {board!r}")
        clk_freq = board.clk_freq if clk_freq is None else clk_freq
        if not board.pll and clk_freq != board.clk_freq:
            raise ValueError(f"Board {board.name} has no PLL: its clock is "
                             f"{board.clk_freq / 1e6:g} MHz, not {clk_freq!r}")
        self.board = board
        self.pll = ecp5_pll(25e6, clk_freq) if board.pll else None
        self.clk_freq = self.pll["f_out"] if self.pll else clk_freq
        self.baud = baud
        self.divisor = uart_divisor(clk_freq=self.clk_freq, baud=baud)
        self.target = board.target if target is None else target
        if not isinstance(timeout, (int, float)) or not 0.001 <= timeout <= 10:
            raise ValueError(f"Timeout must be from 0.001 to 10 seconds, not {timeout!r}")
        self.timeout = timeout
        if config is None:
            from ..hw.config import AcceleratorConfig
            config = AcceleratorConfig(**board.config)
        self.config = config
        self.link = LinkTop(divisor=self.divisor, timeout=round(timeout * self.clk_freq),
                            target=make_target(self.target, config=config))

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        if self.pll:
            m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", dir="-"))
            m.domains.sync = ClockDomain("sync")
            clk = Signal()
            p = self.pll
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI="25", a_FREQUENCY_PIN_CLKOP=f"{self.clk_freq / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                i_CLKI=clk25.i, i_CLKFB=clk, o_CLKOP=clk, o_LOCK=locked,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0)
            # nextpnr derives the output's constraint from the 25 MHz input and the dividers.
            m.d.comb += ClockSignal("sync").eq(clk)
            # Hold the design in reset until the PLL has locked, with a synchronous reset: the
            # flip-flops start as 1 after configuration and follow the lock flag on the PLL's
            # clock (asynchronous-reset flip-flops here stopped Yosys's ABC9 mapping on an
            # internal assertion: docs/fpga.md, "Board top").
            m.submodules.reset = FFSynchronizer(~locked, ResetSignal("sync"), init=1)
        else:
            m.d.comb += locked.eq(1)

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.submodules.link = link = self.link
        m.d.comb += [link.rx.eq(uart_rx.i), uart_tx.o.eq(link.tx)]

        half_period = max(int(self.clk_freq / 3), 2)
        beat = Signal(range(half_period))
        blink = Signal()
        m.d.sync += beat.eq(beat - 1)
        with m.If(beat == 0):
            m.d.sync += [beat.eq(half_period - 1), blink.eq(~blink)]
        shown = [blink, locked]
        if self.pll:
            shown += [~uart_rx.i, ~link.tx]
        for i, value in enumerate(shown):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(value)
        return m
