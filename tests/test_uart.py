import gc
import re

import numpy as np
import pytest

from fetta.hw.uart import UARTRx, UARTTx, uart_divisor, uart_frame

from sim_util import run_testbench


def _line(byte, period):
    """Line levels, one per clock cycle, of one frame sent with ``period`` cycles per bit."""
    return [level for level in uart_frame(byte) for _ in range(period)]


def test_uart_frame_is_lsb_first_8n1():
    assert uart_frame(0x01) == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert uart_frame(0xA0) == [0, 0, 0, 0, 0, 0, 1, 0, 1, 1]


@pytest.mark.parametrize("clk_freq,baud,divisor", [
    (25e6, 115200, 217), (12e6, 115200, 104), (50e6, 3_000_000, 17), (1e6, 250_000, 4)])
def test_uart_divisor(clk_freq, baud, divisor):
    assert uart_divisor(clk_freq=clk_freq, baud=baud) == divisor


@pytest.mark.parametrize("kwargs,message", [
    ({"clk_freq": 0, "baud": 9600}, "Clock frequency must be a positive number, not 0"),
    ({"clk_freq": 1e6, "baud": 9600.0}, "Baud rate must be a positive integer, not 9600.0"),
    ({"clk_freq": 1e6, "baud": 500_000}, "needs at least 4 clock cycles per bit at 1e+06 Hz, not 2"),
    ({"clk_freq": 1e6, "baud": 230_400}, "Baud rate 230400 is off by 8.5%"),
    ({"clk_freq": 1e6, "baud": 9600, "tolerance": 0.1}, "between 0 and 0.05, not 0.1"),
])
def test_uart_divisor_rejects(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        uart_divisor(**kwargs)


# A constructor that raises leaves an instance that is never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("cls", [UARTRx, UARTTx])
@pytest.mark.parametrize("divisor,message", [(3, "not 3"), (8.0, "not 8.0"), (True, "not True")])
def test_uart_rejects_divisor(cls, divisor, message):
    with pytest.raises(ValueError, match=f"Divisor must be an integer of at least 4, {message}") as info:
        cls(divisor=divisor)
    del info
    gc.collect()


def test_uart_frame_rejects_bad_byte():
    with pytest.raises(ValueError, match="from 0 to 255, not 256"):
        uart_frame(256)


@pytest.mark.parametrize("divisor", [4, 7])
def test_tx_waveform(divisor, seed):
    rng = np.random.default_rng(seed)
    data = [0x00, 0xFF, 0x55] + [int(x) for x in rng.integers(0, 256, 5)]
    dut = UARTTx(divisor=divisor)
    want = [level for byte in data for level in _line(byte, divisor)]

    async def bench(ctx):
        assert ctx.get(dut.tx) == 1
        seen, accepted = [], []
        k = 0
        for cycle in range(len(want) + 3 * divisor):
            if k < len(data):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, data[k])
            else:
                ctx.set(dut.i.valid, 0)
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                accepted.append(cycle)
                k += 1
            await ctx.tick()
            seen.append(ctx.get(dut.tx))
        # Back to back: a byte every frame, no idle cycles between frames, idle high after.
        assert np.diff(accepted).tolist() == [dut.cycles_per_byte] * (len(data) - 1)
        assert seen[:len(want)] == want
        assert set(seen[len(want):]) == {1}

    run_testbench(dut, bench)


async def _drive(ctx, dut, levels, received, *, ready=None):
    """Put ``levels`` on ``dut.rx`` one per cycle; collect bytes from ``dut.o`` with their cycle."""
    for cycle, level in enumerate(levels):
        ctx.set(dut.rx, level)
        take = ready(cycle) if ready else 1
        ctx.set(dut.o.ready, take)
        if take and ctx.get(dut.o.valid):
            received.append((cycle, ctx.get(dut.o.payload)))
        await ctx.tick()


@pytest.mark.parametrize("divisor", [4, 9, 16])
def test_rx_bytes_and_latency(divisor, seed):
    rng = np.random.default_rng(seed)
    data = [0x00, 0xFF] + [int(x) for x in rng.integers(0, 256, 10)]
    dut = UARTRx(divisor=divisor)
    levels, starts = [1] * 5, []
    for byte in data:
        starts.append(len(levels))
        levels += _line(byte, divisor) + [1] * int(rng.integers(0, 2 * divisor))
    levels += [1] * (3 * divisor)

    async def bench(ctx):
        received = []
        await _drive(ctx, dut, levels, received)
        assert [p.data for _, p in received] == data
        assert not any(p.frame_error or p.overrun for _, p in received)
        assert [c - s for (c, _), s in zip(received, starts)] == [dut.latency] * len(data)

    run_testbench(dut, bench)


def test_rx_ignores_glitch_and_flags_low_stop_bit():
    div = 8
    dut = UARTRx(divisor=div)
    # A low pulse shorter than half a bit is not a start bit.
    glitch = [1] * 4 + [0] * (div // 2 - 2) + [1] * (2 * div)
    # A break: the line stays low through the stop bit, then a good byte after it returns high.
    brk = [0] * (12 * div) + [1] * (2 * div)
    levels = glitch + _line(0x3C, div) + brk + _line(0xA5, div) + [1] * (2 * div)

    async def bench(ctx):
        received = []
        await _drive(ctx, dut, levels, received)
        got = [(p.data, p.frame_error) for _, p in received]
        assert got == [(0x3C, 0), (0x00, 1), (0xA5, 0)]

    run_testbench(dut, bench)


@pytest.mark.parametrize("period,flagged", [(19, False), (21, False), (23, True), (17, True)])
def test_rx_baud_mismatch(period, flagged):
    """A sender 5 % off is received intact; 15 % off the stop bit is sampled wrong and flagged."""
    div = 20
    dut = UARTRx(divisor=div)
    # 0x00 from a slow sender puts bit 7 (low) where the stop bit is sampled; 0xFF from a fast
    # sender puts the idle-high line there but shifts the data bits: either way one is caught.
    byte = 0x00 if period > div else 0x7F
    levels = [1] * 3 + _line(byte, period) + [1] * (3 * div)

    async def bench(ctx):
        received = []
        await _drive(ctx, dut, levels, received)
        assert len(received) == 1
        p = received[0][1]
        if flagged:
            assert p.frame_error or p.data != byte
        else:
            assert (p.data, p.frame_error) == (byte, 0)

    run_testbench(dut, bench)


def test_rx_overrun():
    div = 5
    dut = UARTRx(divisor=div)
    frame = 10 * div
    bytes_ = [0x11, 0x22, 0x33, 0x44]
    levels = [1] * 2 + [x for b in bytes_ for x in _line(b, div) + [1] * div] + [1] * (2 * div)
    # Hold the first byte until the third has completed; take everything after that.
    hold_until = 2 + 3 * (frame + div) + 3

    async def bench(ctx):
        received = []
        await _drive(ctx, dut, levels, received, ready=lambda c: c >= hold_until)
        assert [(p.data, p.overrun) for _, p in received] == [(0x11, 0), (0x44, 1)]

    run_testbench(dut, bench)


@pytest.mark.parametrize("divisor", [4, 11])
def test_tx_to_rx_loopback(divisor, seed):
    rng = np.random.default_rng(seed)
    data = [int(x) for x in rng.integers(0, 256, 16)]
    tx, rx = UARTTx(divisor=divisor), UARTRx(divisor=divisor)
    from amaranth import Module
    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx.eq(tx.tx)

    async def bench(ctx):
        k, got = 0, []
        ctx.set(rx.o.ready, 1)
        for _ in range((len(data) + 2) * tx.cycles_per_byte):
            ctx.set(tx.i.valid, k < len(data))
            ctx.set(tx.i.payload, data[k] if k < len(data) else 0)
            if k < len(data) and ctx.get(tx.i.ready):
                k += 1
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload.data))
            await ctx.tick()
        assert got == data

    run_testbench(m, bench)
