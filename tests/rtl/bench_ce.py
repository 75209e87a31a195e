"""cocotb bench: the contraction engine's Verilog against its model."""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from fetta.hw.ce import ce_model


@cocotb.test()
async def ce_matches_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    width, acc_width = p["width"], p["acc_width"]
    rng = np.random.default_rng(p["seed"])
    n = 500
    a = rng.integers(-(1 << (width - 1)), 1 << (width - 1), n)
    b = rng.integers(-(1 << (width - 1)), 1 << (width - 1), n)
    first = rng.random(n) < 0.05
    first[0] = True
    # A run of products of the most negative operand, long enough to saturate the accumulator.
    run = (1 << (acc_width - 1)) // (1 << (2 * width - 2)) + 2
    a[50:50 + run] = b[50:50 + run] = -(1 << (width - 1))
    first[50], first[51:50 + run] = True, False
    want_acc, want_flag = ce_model(a, b, first, acc_width=acc_width)
    assert want_flag[-1], "the stimulus must drive the accumulator into saturation"

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.clear.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    latency = p["latency"]
    for k in range(n + latency - 1):
        await FallingEdge(dut.clk)
        # Payload bits: a in the low bits, then b, then first (data.StructLayout order).
        mask = (1 << width) - 1
        if k < n:
            dut.i__payload.value = ((int(a[k]) & mask) | ((int(b[k]) & mask) << width)
                                    | (int(first[k]) << 2 * width))
        dut.i__valid.value = int(k < n)
        await RisingEdge(dut.clk)
        await ReadOnly()
        shown = k - latency + 1       # back to back: the beat whose result shows now
        if shown >= 0:
            assert dut.acc.value.to_signed() == want_acc[shown], f"beat {shown}"
            assert int(dut.overflow.value) == want_flag[shown], f"beat {shown}"
