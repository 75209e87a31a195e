import gc
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fetta.hw.requantize import Requantizer, RequantizerModel, Rounding, requantizer_model
from fetta.sim.golden import PRNG
from fetta.sim.rtl import RTLBuild

from sim_util import run_testbench

sys.path.insert(0, str(Path(__file__).parent / "rtl"))
from bench_requantize import expected, stimulus  # noqa: E402


def _run(dut, cycles, want):
    async def bench(ctx):
        beats = 0
        for t, c in enumerate(cycles):
            ctx.set(dut.i.payload, {"acc": c["acc"], "shift": c["shift"], "rounding": c["rounding"]})
            ctx.set(dut.i.valid, c["valid"])
            ctx.set(dut.clear, c["clear"])
            ctx.set(dut.seed_load, c["seed_load"])
            ctx.set(dut.seed, c["seed"])
            await ctx.tick()
            o_valid, o_payload, overflow = want[t]
            assert ctx.get(dut.o.valid) == o_valid, t
            assert ctx.get(dut.overflow) == overflow, t
            if o_valid:
                assert list(ctx.get(dut.o.payload)) == list(o_payload), t
                beats += 1
        assert beats > len(cycles) // 2

    run_testbench(dut, bench)


@pytest.mark.parametrize("lanes,acc_width,width", [(4, 24, 8), (2, 40, 16), (4, 16, 8), (1, 33, 32), (2, 32, 12)])
def test_requantizer_matches_model(lanes, acc_width, width, seed):
    """Random beats and edge cases, cycle for cycle: ties, saturation, shift 0 and max, seed loads."""
    rng = np.random.default_rng(seed)
    prng_seed = int(rng.integers(0, 1 << 32))
    cycles = stimulus(rng, lanes=lanes, acc_width=acc_width, width=width, cycles=400)
    want = expected(cycles, lanes=lanes, acc_width=acc_width, width=width, seed=prng_seed)
    dut = Requantizer(lanes=lanes, acc_width=acc_width, width=width, seed=prng_seed)
    _run(dut, cycles, want)
    # The stimulus must reach saturation, the sticky flag, stochastic rounding and clamped shifts.
    assert any(w[2] for w in want) and not all(w[2] for w in want)
    assert any(c["valid"] and c["shift"] > acc_width for c in cycles)
    assert any(c["valid"] and c["rounding"] == Rounding.STOCHASTIC for c in cycles)


def test_requantizer_hand_cases():
    """Results written down by hand, not taken from the model: 8-bit out of 16-bit accumulators."""
    A, W = 16, 8
    dut = Requantizer(lanes=4, acc_width=A, width=W)
    cases = [
        # (acc, shift, rounding, results)
        ([5, -5, 7, -7], 1, Rounding.NEAREST_EVEN, [2, -2, 4, -4]),          # ties to even
        ([6, -6, 3, -3], 2, Rounding.NEAREST_EVEN, [2, -2, 1, -1]),          # 1.5 -> 2, 0.75 -> 1
        ([2, -2, 10, -10], 2, Rounding.NEAREST_EVEN, [0, 0, 2, -2]),         # 0.5 -> 0, 2.5 -> 2
        ([127, -128, 128, -129], 0, Rounding.NEAREST_EVEN, [127, -128, 127, -128]),
        ([-32768, 32767, -32768, 32767], 16, Rounding.NEAREST_EVEN, [0, 0, 0, 0]),   # -0.5 -> 0
        ([-32768, 32767, 255, -257], 31, Rounding.NEAREST_EVEN, [0, 0, 0, 0]),      # shift > A = A
        ([-32768, 32767, 255, -257], 1, Rounding.NEAREST_EVEN, [-128, 127, 127, -128]),
        ([12, -12, 0, 1 << 14], 2, Rounding.STOCHASTIC, [3, -3, 0, 127]),    # exact: no randomness
    ]

    async def bench(ctx):
        for k, (acc, shift, rounding, results) in enumerate(cases):
            ctx.set(dut.i.payload, {"acc": acc, "shift": shift, "rounding": rounding})
            ctx.set(dut.i.valid, 1)
            await ctx.tick()
            if k >= dut.latency - 1:
                assert list(ctx.get(dut.o.payload)) == cases[k - dut.latency + 1][3]
        ctx.set(dut.i.valid, 0)
        for k in range(len(cases) - dut.latency + 1, len(cases)):
            await ctx.tick()
            assert list(ctx.get(dut.o.payload)) == cases[k][3]
        assert ctx.get(dut.overflow) == 1

    run_testbench(dut, bench)


@pytest.mark.parametrize("acc,shift,result,saturated", [
    # 8-bit results of 16-bit accumulators, by hand: every way of landing near both ends.
    (-257, 1, -128, False),     # -128.5 ties to -128
    (-258, 1, -128, True),      # -129
    (-259, 1, -128, True),      # -129.5 ties to -130
    (-255, 1, -128, False),     # -127.5 ties to -128
    (-256, 1, -128, False),
    (255, 1, 127, True),        # 127.5 ties to 128
    (254, 1, 127, False),
    (253, 1, 126, False),       # 126.5 ties to 126
    (256, 1, 127, True),
    (32767, 0, 127, True),
    (-32768, 0, -128, True),
    (-32768, 16, 0, False),     # -0.5 ties to 0
    (32767, 16, 0, False),
    (-32768, 15, -1, False),
    (32767, 8, 127, True),      # 127.996 rounds to 128
    (-32767, 8, -128, False),   # -127.996 rounds to -128
])
def test_requantizer_saturation_flag_per_beat(acc, shift, result, saturated):
    dut = Requantizer(lanes=1, acc_width=16, width=8)

    async def bench(ctx):
        ctx.set(dut.i.payload, {"acc": [acc], "shift": shift, "rounding": Rounding.NEAREST_EVEN})
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(dut.latency - 1):
            await ctx.tick()
        assert ctx.get(dut.o.valid) == 1
        assert list(ctx.get(dut.o.payload)) == [result]
        assert ctx.get(dut.overflow) == saturated

    run_testbench(dut, bench)
    values, flags = requantizer_model([[acc]], [shift], [Rounding.NEAREST_EVEN], width=8,
                                      acc_width=16, prng=PRNG(1, 1))
    assert values.tolist() == [[result]] and flags.tolist() == [saturated]


def test_requantizer_stochastic_uses_the_prng():
    """Stochastic beats use the lane's xorshift bits: r + (bits mod 2**s) >= 2**s rounds up."""
    lanes, A, seed = 3, 24, 0xC0FFEE
    dut = Requantizer(lanes=lanes, acc_width=A, width=8, seed=seed)
    accs = [[(k * 37 + 5 * j) % 256 - 128 for j in range(lanes)] for k in range(30)]
    shift = 3

    # Reference with Python ints: xorshift32 written out from its definition.
    def xorshift(x):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        return x

    states = [(seed ^ ((j + 1) * 0x9E3779B9)) & 0xFFFFFFFF for j in range(lanes)]
    want = []
    for acc in accs:
        states = [xorshift(x) for x in states]
        want.append([a // 8 + ((a % 8) + (x & 7) >= 8) for a, x in zip(acc, states)])
    assert any(w != [round(Fraction(a, 8)) for a in acc] for w, acc in zip(want, accs))

    async def bench(ctx):
        got = []
        for k, acc in enumerate(accs + [[0] * lanes] * dut.latency):
            ctx.set(dut.i.payload, {"acc": acc, "shift": shift, "rounding": Rounding.STOCHASTIC})
            ctx.set(dut.i.valid, k < len(accs))
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append(list(ctx.get(dut.o.payload)))
        assert got == want

    run_testbench(dut, bench)
    values, _ = requantizer_model(accs, [shift] * len(accs), [Rounding.STOCHASTIC] * len(accs),
                                  width=8, acc_width=A, prng=PRNG(seed, lanes))
    assert values.tolist() == want


def test_requantizer_seed_load_of_each_lane_constant():
    """A seed equal to a lane's constant gives that lane the state 0, which restarts from the
    constant: the hardware's shared seed step must not miss it in any lane."""
    lanes, A, W = 3, 20, 8
    rng = np.random.default_rng(5)
    cycles = []
    for k in range(lanes):
        cycles.append({"valid": False, "acc": [0] * lanes, "shift": 0,
                       "rounding": Rounding.NEAREST_EVEN, "clear": False, "seed_load": True,
                       "seed": PRNG.lane_constant(k)})
        for _ in range(6):
            cycles.append({"valid": True, "acc": [int(v) for v in rng.integers(-4000, 4000, lanes)],
                           "shift": 7, "rounding": Rounding.STOCHASTIC, "clear": True,
                           "seed_load": False, "seed": 0})
    idle = {"valid": False, "acc": [0] * lanes, "shift": 0, "rounding": Rounding.NEAREST_EVEN,
            "clear": False, "seed_load": False, "seed": 0}
    dut = Requantizer(lanes=lanes, acc_width=A, width=W, seed=99)
    cycles += [dict(idle) for _ in range(dut.latency)]
    want = expected(cycles, lanes=lanes, acc_width=A, width=W, seed=99)
    # The reloaded lane draws from its constant: its first bits are one step of it.
    first = PRNG(PRNG.lane_constant(1), lanes).next()
    assert int(first[1]) == PRNG.step(PRNG.lane_constant(1))
    _run(dut, cycles, want)


def test_requantizer_model_steps_prng_on_every_beat():
    """Nearest-even beats step the generators too, so a later stochastic beat depends on them."""
    acc = [[3, 5]]
    a = RequantizerModel(lanes=2, acc_width=16, width=8, seed=7)
    b = RequantizerModel(lanes=2, acc_width=16, width=8, seed=7)
    prng = PRNG(7, 2)
    prng.next()
    bits = prng.next()
    a.cycle(valid=True, acc=acc[0], shift=2, rounding=Rounding.NEAREST_EVEN)
    a.cycle(valid=True, acc=acc[0], shift=2, rounding=Rounding.STOCHASTIC)
    b.cycle(valid=False)
    b.cycle(valid=True, acc=acc[0], shift=2, rounding=Rounding.STOCHASTIC)
    # The stochastic beat, accepted last, shows latency - 1 cycles later.
    for _ in range(a.latency - 1):
        valid_a, out_a, _ = a.cycle()
        valid_b, out_b, _ = b.cycle()
    assert valid_a and valid_b
    assert out_a.tolist() == [v // 4 + ((v % 4) + (int(x) & 3) >= 4) for v, x in zip(acc[0], bits)]
    assert out_b.tolist() == [v // 4 + ((v % 4) + (int(x) & 3) >= 4)
                              for v, x in zip(acc[0], PRNG(7, 2).next())]


@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 0, "acc_width": 16, "width": 8}, "Lane count must be a positive integer, not 0"),
    ({"lanes": 2.0, "acc_width": 16, "width": 8}, "Lane count must be a positive integer, not 2.0"),
    ({"lanes": 2, "acc_width": 16, "width": 1}, "Result width must be an integer from 2 to 32, not 1"),
    ({"lanes": 2, "acc_width": 16, "width": 33}, "Result width must be an integer from 2 to 32, not 33"),
    ({"lanes": 2, "acc_width": 7, "width": 8},
     "Accumulator width must be an integer from width = 8 to 62, not 7"),
    ({"lanes": 2, "acc_width": 63, "width": 8},
     "Accumulator width must be an integer from width = 8 to 62, not 63"),
    ({"lanes": 2, "acc_width": 16, "width": 8, "seed": -1},
     r"Seed must be an integer from 0 to 2\*\*32 - 1, not -1"),
    ({"lanes": 2, "acc_width": 16, "width": 8, "seed": 1 << 32},
     r"Seed must be an integer from 0 to 2\*\*32 - 1, not 4294967296"),
])
# A constructor that raises leaves an object behind that Amaranth would warn about.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_requantizer_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Requantizer(**kwargs)
    gc.collect()    # while the warning filter holds


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_requantizer_properties():
    dut = Requantizer(lanes=8, acc_width=32, width=16, seed=9)
    assert (dut.lanes, dut.acc_width, dut.width, dut.seed_value) == (8, 32, 16, 9)
    assert dut.latency >= 1
    payload = dut.signature.members["i"].signature.members["payload"].shape
    assert payload["shift"].shape.width == 6 and payload["rounding"].shape is Rounding
    del dut, payload
    gc.collect()    # while the warning filter holds


@pytest.mark.rtl
def test_requantizer_in_verilator(seed):
    """One build, many vectors: the Verilog against the cycle-exact model through cocotb."""
    config = {"lanes": 4, "acc_width": 36, "width": 8, "seed": 0x2545F491}
    build = RTLBuild(name="requantizer", config=config, elaborate=lambda: Requantizer(**config))
    assert build.test("bench_requantize", params={**config, "stimulus_seed": seed, "cycles": 3000}) == 1
