"""cocotb bench: the reduction network's Verilog against its model, one new route per cycle."""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from fetta.hw.reduction import ReductionNetwork, pack_config, reduction_model
from fetta.search.reduction_router import plan_reduction


def _pattern(rng, lanes):
    """A random partition of a random subset of the lanes, on random output lanes."""
    order = rng.permutation(lanes)
    used = int(rng.integers(1, lanes + 1))
    cuts = sorted(rng.choice(np.arange(1, used), size=int(rng.integers(0, used)), replace=False)) \
        if used > 1 else []
    parts = np.split(order[:used], cuts)
    outs = rng.permutation(lanes)[:len(parts)]
    return {int(q): {int(v) for v in p} for q, p in zip(outs, parts)}


@cocotb.test()
async def reduction_matches_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    lanes, width, beats = p["lanes"], p["width"], p["beats"]
    rng = np.random.default_rng(p["seed"])
    net = ReductionNetwork(lanes=lanes, width=width)
    out_width, latency = net.out_width, net.latency
    xs = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (beats, lanes))
    xs[:4] = -(1 << (width - 1))  # extreme values: full sums reach the output range
    modes, configs = [], []
    for _ in range(beats):
        route = plan_reduction(_pattern(rng, lanes), lanes).route
        modes.append([[m.value for m in row] for row in route.modes])
        configs.append(pack_config(route.modes, lanes))
    valid = rng.random(beats) < 0.85
    want = reduction_model(xs, np.array(modes), width=width)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    mask = (1 << width) - 1
    checked = 0
    for t in range(beats + latency):
        await FallingEdge(dut.clk)
        if t < beats:
            # Payload bits: data lanes from bit 0, then the configuration (StructLayout order).
            payload = sum((int(v) & mask) << (k * width) for k, v in enumerate(xs[t]))
            dut.i__payload.value = payload | (configs[t] << (lanes * width))
            dut.i__valid.value = int(valid[t])
        else:
            dut.i__valid.value = 0
        await RisingEdge(dut.clk)
        await ReadOnly()
        beat = t + 1 - latency
        if 0 <= beat < beats:
            assert int(dut.o__valid.value) == valid[beat], f"beat {beat}"
            raw = int(dut.o__payload.value)
            for k in range(lanes):
                v = (raw >> (k * out_width)) & ((1 << out_width) - 1)
                v -= (1 << out_width) if v >> (out_width - 1) else 0
                assert v == want[beat, k], f"beat {beat} lane {k}: {v} != {want[beat, k]}"
            checked += 1
    assert checked == beats
