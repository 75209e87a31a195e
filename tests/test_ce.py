import gc

import numpy as np
import pytest

from fetta.hw.ce import ContractionEngine, ce_model
from fetta.sim.rtl import RTLBuild

from sim_util import run_testbench


def _stimulus(rng, width, n):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1))
    a = rng.integers(lo, hi, n)
    b = rng.integers(lo, hi, n)
    first = rng.random(n) < 0.1
    first[0] = True
    return a, b, first


@pytest.mark.parametrize("width,acc_width", [(8, 16), (8, 24), (16, 32)])
def test_ce_matches_model(width, acc_width, seed):
    rng = np.random.default_rng(seed)
    a, b, first = _stimulus(rng, width, 300)
    # Push runs of extreme operands so that narrow accumulators saturate both ways.
    a[100:140] = b[100:140] = -(1 << (width - 1))
    a[200:240], b[200:240] = (1 << (width - 1)) - 1, -(1 << (width - 1))
    want_acc, want_flag = ce_model(a, b, first, acc_width=acc_width)
    dut = ContractionEngine(width=width, acc_width=acc_width)

    async def bench(ctx):
        # Back to back: after the tick of beat k the accumulator shows beat k - latency + 1.
        for k in range(len(a) + dut.latency - 1):
            if k < len(a):
                ctx.set(dut.i.payload, {"a": int(a[k]), "b": int(b[k]), "first": int(first[k])})
            ctx.set(dut.i.valid, k < len(a))
            await ctx.tick()
            shown = k - dut.latency + 1
            if shown >= 0:
                assert ctx.get(dut.acc) == want_acc[shown], shown
                assert ctx.get(dut.overflow) == want_flag[shown], shown
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert ctx.get(dut.overflow) == 0
        assert ctx.get(dut.acc) == want_acc[-1], "the accumulator holds without a valid beat"

    run_testbench(dut, bench)
    if acc_width == 2 * width:
        assert want_flag[-1], "the stimulus must drive the narrow accumulator into saturation"


def test_ce_model_against_numpy():
    rng = np.random.default_rng(1)
    a, b, _ = _stimulus(rng, 8, 64)
    acc, flag = ce_model(a, b, [True] + [False] * 63, acc_width=32)
    assert acc[-1] == int(np.dot(a, b)) and not flag[-1]


def test_ce_model_saturates_by_hand():
    """Values worked out by hand: (-128)**2 = 16384 twice overflows a 16-bit accumulator."""
    acc, flag = ce_model([-128, -128, 127, 3, -128, -128, -128], [-128, -128, -128, 5, 127, 127, 127],
                         [True, False, False, True, False, False, False], acc_width=16)
    assert list(acc) == [16384, 32767, 16511, 15, -16241, -32497, -32768]
    assert list(flag) == [False, True, True, True, True, True, True]


@pytest.mark.parametrize("kwargs,message", [
    ({"width": 1, "acc_width": 16}, "Operand width must be an integer from 2 to 32, not 1"),
    ({"width": 8, "acc_width": 15}, "at least 2 * width = 16, not 15"),
])
# A constructor that raises leaves an object behind that Amaranth would warn about.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_ce_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        ContractionEngine(**kwargs)
    gc.collect()    # while the warning filter holds


@pytest.mark.rtl
def test_ce_in_verilator(seed):
    """The toolchain end to end: Amaranth -> Verilog -> Verilator, driven by cocotb 2.x."""
    build = RTLBuild(name="ce", config={"width": 8, "acc_width": 20},
                     elaborate=lambda: ContractionEngine(width=8, acc_width=20))
    dut = ContractionEngine(width=8, acc_width=20)
    dut._MustUse__silence = True    # only its latency is read here
    assert build.test("bench_ce", params={"width": 8, "acc_width": 20, "seed": seed,
                                          "latency": dut.latency}) == 1
