"""cocotb bench: the distribution network's Verilog against its model, one pattern per beat."""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from fetta.hw.distribution import model, pack_config
from fetta.search.benes_router import (expand_pattern, replicate_pattern, route_multicast,
                                       route_permutation)


def _patterns(rng, lanes, count):
    """Permutations, multicasts of every fan-out, and the mapper's structured patterns."""
    patterns, routers = [], []
    groups = [1 << t for t in range(lanes.bit_length())]
    for k in range(count):
        kind = k % 4
        if kind == 0:
            sources, router = rng.permutation(lanes), route_permutation
        elif kind == 1:
            sources, router = rng.integers(0, rng.integers(1, lanes + 1), lanes), route_multicast
        else:
            base = (replicate_pattern if kind == 2 else expand_pattern)(lanes, int(rng.choice(groups)))
            sources, router = rng.permutation(lanes)[base][rng.permutation(lanes)], route_multicast
        patterns.append(sources)
        routers.append(router)
    return np.array(patterns), [r(p) for r, p in zip(routers, patterns)]


@cocotb.test()
async def distribution_matches_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    lanes, width, latency = p["lanes"], p["width"], p["latency"]
    rng = np.random.default_rng(p["seed"])
    patterns, configs = _patterns(rng, lanes, p["beats"])
    words = rng.integers(0, 1 << width, patterns.shape)
    want = model(np.array(configs), words)
    assert np.array_equal(want, np.take_along_axis(words, patterns, axis=1))
    payloads = [sum(int(w) << (width * q) for q, w in enumerate(row)) for row in words]
    payloads = [d | pack_config(c, lanes) << (lanes * width) for d, c in zip(payloads, configs)]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    issued = []                      # cycle at which each beat entered
    seen = 0
    cycle = 0
    mask = (1 << width) - 1
    while seen < len(payloads):
        await FallingEdge(dut.clk)
        # Back-to-back beats, with an idle cycle now and then.
        if len(issued) < len(payloads) and rng.random() < 0.9:
            dut.i__payload.value = payloads[len(issued)]
            dut.i__valid.value = 1
            issued.append(cycle)
        else:
            dut.i__valid.value = 0
        await RisingEdge(dut.clk)
        await ReadOnly()
        cycle += 1
        if int(dut.o__valid.value):
            assert seen < len(issued) and cycle - issued[seen] == latency, \
                f"beat {seen} arrived at cycle {cycle}, issued at {issued[seen:seen + 1]}"
            value = int(dut.o__payload.value)
            got = [(value >> (width * q)) & mask for q in range(lanes)]
            assert got == want[seen].tolist(), f"beat {seen}: pattern {patterns[seen].tolist()}"
            seen += 1
        else:
            assert not issued[seen:] or cycle - issued[seen] < latency, f"beat {seen} lost"
        assert cycle < 2 * len(payloads) + latency + 10, "the bench ran away"
