"""cocotb bench: the requantizer's Verilog against its cycle-exact model.

``stimulus`` is shared with the Amaranth-simulator test (tests/test_requantize.py).
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from fetta.hw.requantize import Requantizer, RequantizerModel, Rounding
from fetta.sim.golden import PRNG


def stimulus(rng, *, lanes, acc_width, width, cycles):
    """Random per-cycle inputs rich in edge cases: ties of both signs and parities, saturation at
    both ends, the most negative accumulator, shift 0, ``acc_width`` and beyond, idle cycles,
    ``clear`` pulses and seed loads (one of them in the same cycle as a beat)."""
    A, W = acc_width, width
    lo_a, hi_a = -(1 << (A - 1)), (1 << (A - 1)) - 1
    lo_w, hi_w = -(1 << (W - 1)), (1 << (W - 1)) - 1
    port_max = (1 << A.bit_length()) - 1
    cycles_out = []
    for t in range(cycles):
        pick = rng.random()
        if pick < 0.08:
            shift = 0
        elif pick < 0.16:
            shift = A
        elif pick < 0.20:
            shift = int(rng.integers(A, port_max + 1))
        else:
            shift = int(rng.integers(1, A))
        s = min(shift, A)
        acc = []
        for _ in range(lanes):
            kind = rng.integers(0, 5)
            if kind == 0:
                value = int(rng.integers(lo_a, hi_a, endpoint=True))
            elif kind == 1 and s >= 1:
                # Exactly half an LSB above an integer: a tie, of either sign and parity.
                value = (2 * int(rng.integers(-(1 << W), 1 << W)) + 1) << (s - 1)
            elif kind == 2:
                value = int(rng.choice([lo_a, hi_a, lo_a + 1, hi_a - 1, -1, 0, 1]))
            elif kind == 3:
                # Around the ends of the output range, scaled up by the shift.
                base = int(rng.choice([hi_w, hi_w + 1, lo_w, lo_w - 1]))
                spread = (1 << s) if s and rng.random() < 0.5 else 3
                value = (base << s) + int(rng.integers(-spread, spread))
            else:
                value = int(rng.integers(-(1 << (W + 1)), 1 << (W + 1))) << s
                value += int(rng.integers(-(1 << s), 1 << s)) if s else 0
            acc.append(min(max(value, lo_a), hi_a))
        seed_load = t == cycles // 3 or t == cycles // 2 or rng.random() < 0.01
        cycles_out.append({
            "valid": t == cycles // 2 or rng.random() < 0.8,
            "acc": acc,
            "shift": shift,
            "rounding": Rounding.STOCHASTIC if rng.random() < 0.5 else Rounding.NEAREST_EVEN,
            "clear": rng.random() < 0.03,
            "seed_load": seed_load,
            "seed": int(rng.choice([0, PRNG.lane_constant(0), int(rng.integers(0, 1 << 32))])),
        })
    # Drain the pipeline.
    idle = {"valid": False, "acc": [0] * lanes, "shift": 0, "rounding": Rounding.NEAREST_EVEN,
            "clear": False, "seed_load": False, "seed": 0}
    drain = RequantizerModel(lanes=lanes, acc_width=acc_width, width=width).latency + 1
    return cycles_out + [dict(idle) for _ in range(drain)]


def expected(cycles, *, lanes, acc_width, width, seed):
    """The model's outputs after each cycle: ``(o_valid, o_payload, overflow)``."""
    model = RequantizerModel(lanes=lanes, acc_width=acc_width, width=width, seed=seed)
    return [model.cycle(**c) for c in cycles]


def _signed(value, bits):
    return value - (1 << bits) if value >> (bits - 1) else value


@cocotb.test()
async def requantizer_matches_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    lanes, acc_width, width, seed = p["lanes"], p["acc_width"], p["width"], p["seed"]
    rng = np.random.default_rng(p["stimulus_seed"])
    cycles = stimulus(rng, lanes=lanes, acc_width=acc_width, width=width, cycles=p["cycles"])
    want = expected(cycles, lanes=lanes, acc_width=acc_width, width=width, seed=seed)
    layout = Requantizer(lanes=lanes, acc_width=acc_width, width=width,
                         seed=seed).signature.members["i"].signature.members["payload"].shape
    shift_at, rounding_at = layout["shift"].offset, layout["rounding"].offset
    mask = (1 << acc_width) - 1

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for name in ("i__valid", "clear", "seed_load"):
        getattr(dut, name).value = 0
    dut.seed.value = 0
    dut.i__payload.value = 0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    beats = 0
    for t, c in enumerate(cycles):
        await FallingEdge(dut.clk)
        payload = 0
        for k, v in enumerate(c["acc"]):
            payload |= (v & mask) << (k * acc_width)
        payload |= c["shift"] << shift_at
        payload |= c["rounding"].value << rounding_at
        dut.i__payload.value = payload
        dut.i__valid.value = int(c["valid"])
        dut.clear.value = int(c["clear"])
        dut.seed_load.value = int(c["seed_load"])
        dut.seed.value = c["seed"]
        await RisingEdge(dut.clk)
        await ReadOnly()
        o_valid, o_payload, overflow = want[t]
        assert int(dut.o__valid.value) == o_valid, f"cycle {t}"
        assert int(dut.overflow.value) == overflow, f"cycle {t}"
        if o_valid:
            raw = int(dut.o__payload.value)
            got = [_signed((raw >> (k * width)) & ((1 << width) - 1), width) for k in range(lanes)]
            assert got == [int(v) for v in o_payload], f"cycle {t}: {got} != {list(o_payload)}"
            beats += 1
    assert beats > len(cycles) // 2
    dut._log.info(f"{beats} beats matched the model")
