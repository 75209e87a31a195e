import dataclasses
import time

import numpy as np
import pytest

from fetta.hw import isa
from fetta.hw.accelerator import Datapath, Timing
from fetta.hw.config import AcceleratorConfig
from fetta.hw.distribution import pack_config as pack_dist
from fetta.hw.isa import Cause
from fetta.search.benes_router import route_permutation
from fetta.sim.golden import einsum_int, requantize
from fetta.sim.model import Machine

from accelerator_programs import CASES, build, load_model

CONFIGS = {
    "default": AcceleratorConfig(),
    "small": AcceleratorConfig(lanes=4, acc_width=16, depth=64, prog_depth=64, dist_routes=16,
                               red_routes=8),
    "wide": AcceleratorConfig(lanes=8, width=16, acc_width=32, depth=128),
}


def check(machine, case, result):
    assert result.done
    assert result.cause == case.cause
    assert result.error == (case.cause != Cause.NONE)
    if result.error:
        assert result.err_pc == case.err_pc
    for region, row, values in case.expect:
        got = machine.read_rows(region, row, len(values))
        np.testing.assert_array_equal(got, values, err_msg=f"{case.name}: region {region}")
    assert result.counters.cycles == case.cycles
    assert result.counters.macs == case.macs


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("name", list(CASES))
def test_case_on_model(name, config_name, seed):
    config = CONFIGS[config_name]
    case = build(name, config, seed)
    machine = Machine(config)
    load_model(machine, case)
    check(machine, case, machine.run())


def test_error_then_clear_then_next_program(seed):
    config = CONFIGS["small"]
    machine = Machine(config)
    for name in ("saturation", "illegal_opcode", "address_range"):
        bad = build(name, config, seed)
        load_model(machine, bad)
        result = machine.run()
        assert result.error and result.cause == bad.cause
        # START is refused while ERROR is set: nothing runs, the error stays.
        again = machine.run()
        assert again.error and again.counters == result.counters
        machine.clear()
        good = build("matmul_grouped", config, seed + 1)
        load_model(machine, good)
        check(machine, good, machine.run())


def test_counters_add_up(seed):
    config = CONFIGS["default"]
    t = Timing.from_config(config)
    case = build("batched_transposed", config, seed)
    machine = Machine(config)
    load_model(machine, case)
    k = machine.run().counters
    steps = sum(1 for w in case.program if isa.decode(w)[0] == isa.Opcode.STEP)
    assert k.busy * config.lanes == k.macs
    assert k.stalls == steps * (1 + t.drain)
    others = len(case.program) - steps
    assert k.cycles == k.busy + k.stalls + steps * (t.step_setup - 1) + others * t.instr


def long_step_program(counts):
    """LOOP each level, BASE, one STEP over all of them (everything reduced into one row), HALT."""
    O = isa.Opcode
    return ([isa.encode(O.LOOP, level=k, count=n) for k, n in enumerate(counts)]
            + [isa.encode(O.BASE, region_a=0, region_b=1, region_c=2),
               isa.encode(O.STEP, levels=len(counts), red=len(counts)), isa.encode(O.HALT)])


def test_narrow_counters_wrap():
    """16-bit counters keep the low 16 bits of what 64-bit ones count (from the timing)."""
    wide = AcceleratorConfig(lanes=4, acc_width=16, loop_levels=2)
    narrow = AcceleratorConfig(lanes=4, acc_width=16, loop_levels=2, counter_width=16)
    program = long_step_program([300, 220])
    t, n = Timing.from_config(narrow), 300 * 220
    cycles = 3 * t.instr + t.step_cycles(n) + t.instr
    expect = {"cycles": cycles, "busy": n, "macs": 4 * n, "stalls": t.step_stalls}
    assert cycles > 1 << 16 and n > 1 << 16     # they do wrap
    for config, mask in ((wide, (1 << 64) - 1), (narrow, 0xFFFF)):
        machine = Machine(config)
        machine.load_program(program)
        result = machine.run()
        assert not result.error
        got = dataclasses.asdict(result.counters)
        assert got == {name: value & mask for name, value in expect.items()}, config
        assert dataclasses.asdict(machine.counters) == got


def test_program_counter_past_memory():
    config = AcceleratorConfig(lanes=4, prog_depth=4)
    machine = Machine(config)
    machine.load_program(isa.assemble("nop\nnop\nnop\nnop"))
    result = machine.run()
    t = machine.timing
    assert (result.cause, result.err_pc, result.counters.cycles) == (Cause.ADDRESS, 4,
                                                                     4 * t.instr + t.fetch_fault)


def test_illegal_fields_stop_the_machine():
    config = CONFIGS["small"]
    for word in (isa.encode(isa.Opcode.LOOP, level=0, count=0),
                 isa.encode(isa.Opcode.BASE, region_a=1, region_b=1, region_c=2),
                 isa.encode(isa.Opcode.STEP, levels=1, route_c=config.red_routes)):
        machine = Machine(config)
        machine.load_program([word])
        assert machine.run().cause == Cause.ILLEGAL


def test_rows_written_later_win():
    """Two beats write the same C row (stride 0, no reduction): the later one stays."""
    config = CONFIGS["small"]
    L = config.lanes
    dp = Datapath(config)
    machine = Machine(config)
    machine.write_rows(0, 0, np.arange(3 * L).reshape(3, L) - 5)
    machine.load_program(isa.assemble("""
        loop level=0 count=3 stride_a=1 stride_b=0 stride_c=0
        step levels=1 red=0 b_one=1
        halt
    """, config))
    machine.set_dist_route(0, pack_dist(route_permutation(list(range(L))), L))
    from accelerator_programs import _identity_red
    machine.set_red_route(0, _identity_red(config, dp))
    assert not machine.run().error
    np.testing.assert_array_equal(machine.read_rows(2, 0, 1)[0], np.arange(2 * L, 3 * L) - 5)


def test_model_against_integer_golden_with_saturation(seed):
    """A long temporal reduction through a narrow accumulator, against golden.einsum_int."""
    config = AcceleratorConfig(lanes=4, acc_width=17, depth=512)
    L = config.lanes
    dp = Datapath(config)
    rng = np.random.default_rng(seed)
    K = 400
    A = rng.integers(-128, 128, (K, L))
    A[:200] = rng.integers(100, 128, (200, L))      # drive some lanes to saturate
    B = rng.integers(-128, 128, (K, L))
    B[:200] = 127
    machine = Machine(config)
    machine.write_rows(0, 0, A)
    machine.write_rows(1, 0, B)
    machine.set_dist_route(0, pack_dist(route_permutation(list(range(L))), L))
    from accelerator_programs import _identity_red
    machine.set_red_route(0, _identity_red(config, dp))
    machine.load_program(isa.assemble(f"""
        loop level=0 count={K} stride_a=1 stride_b=1
        step levels=1 red=1 shift={config.sum_width - config.width}
        halt
    """, config))
    result = machine.run()
    acc, overflow = einsum_int("kl,kl->l", A, B, width=8, acc_width=17)
    assert overflow and result.cause == Cause.SATURATION
    from fetta.sim.golden import requantize
    want, _ = requantize(acc[None, :], config.sum_width - config.width, 8, acc_width=config.sum_width)
    np.testing.assert_array_equal(machine.read_rows(2, 0, 1), want)


def test_model_is_fast_on_a_large_step():
    """About 2**28 MACs (16M beats) in one step: vectorized, seconds not hours."""
    config = AcceleratorConfig()
    L = config.lanes
    dp = Datapath(config)
    rng = np.random.default_rng(0)
    machine = Machine(config)
    machine.write_rows(0, 0, rng.integers(-128, 128, (1024, L)))
    machine.write_rows(1, 0, rng.integers(-128, 128, (1024, L)))
    machine.set_dist_route(0, pack_dist(route_permutation(list(range(L))), L))
    from accelerator_programs import _identity_red
    machine.set_red_route(0, _identity_red(config, dp))
    machine.load_program(isa.assemble("""
        loop level=0 count=1024 stride_a=1 stride_b=1
        loop level=1 count=16 stride_a=0 stride_b=0 stride_c=1
        loop level=2 count=1024 stride_a=0 stride_b=0 stride_c=0
        step levels=3 red=1 shift=8 rounding=stochastic
        halt
    """, config))
    start = time.perf_counter()
    result = machine.run()
    elapsed = time.perf_counter() - start
    assert result.counters.macs == 1 << 28 and not result.error
    print(f"model: {result.counters.macs / elapsed / 1e6:.0f} M MAC/s")
    assert elapsed < 60


def test_machine_and_datapath_reject_bad_arguments():
    config = CONFIGS["small"]
    dp = Datapath(config)
    machine = Machine(config)
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig, not 4"):
        Machine(4)
    with pytest.raises(ValueError, match=f"distribution entry must be an integer of {dp.dist_bits} bits, not -1"):
        machine.set_dist_route(0, -1)
    with pytest.raises(ValueError, match=f"reduction entry must be an integer of {dp.red_entry_bits} bits"):
        machine.set_red_route(0, 1 << dp.red_entry_bits)
    with pytest.raises(ValueError, match=r"keep lanes must be from 0 to 3, not \[4\]"):
        dp.pack_red_entry(0, keep=[4], write=[0])
    with pytest.raises(ValueError, match="write mask must be an integer of 4 bits, not 16"):
        dp.pack_red_entry(0, keep=0, write=16)
    with pytest.raises(ValueError, match="program of 65 words at 0 does not fit prog_depth = 64"):
        machine.load_program([0] * 65)
    with pytest.raises(ValueError, match=r"values must have shape \(rows, 4\), not \(2, 3\)"):
        machine.write_rows(0, 0, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="values must be signed 8-bit integers, not 128"):
        machine.write_rows(0, 0, np.full((1, 4), 128))
    with pytest.raises(ValueError, match="values must be signed 8-bit integers, not -129"):
        machine.write_rows(0, 0, [[0, 1, -129, 200]])
    with pytest.raises(ValueError, match="row must be an integer from 0 to 63, not -2"):
        machine.write_rows(0, -2, np.zeros((1, 4), int))
    with pytest.raises(ValueError, match="region must be an integer from 0 to 3, not 4"):
        machine.read_rows(4, 0, 1)
    with pytest.raises(ValueError, match="3 rows from row 62 do not fit depth = 64"):
        machine.write_rows(0, 62, np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="values must be integers, not an array of float64"):
        machine.write_rows(0, 0, np.full((1, 4), 1.5))
    with pytest.raises(ValueError, match="2 rows from row 63 do not fit depth = 64"):
        machine.read_rows(1, 63, 2)
    assert machine.read_rows(1, 62, 2).shape == (2, 4)


def test_model_refuses_a_reduction_that_adds_a_lane_twice():
    from fetta.hw.reduction import SwitchMode, pack_config, stage_count, symbolic_outputs
    config = CONFIGS["small"]
    L = config.lanes
    dp = Datapath(config)
    # Every switch of every stage adds into its low output: lanes are summed more than once.
    modes = [[SwitchMode.ADD_TO_LO] * (L // 2) for _ in range(stage_count(L))]
    assert None in symbolic_outputs(modes, L)
    with pytest.raises(ValueError, match="adds some lane twice"):
        dp.red_matrix(pack_config(modes, L))


@pytest.mark.parametrize("rows", [0, 1, 511, 512, 513, 5000])
def test_lane_prng_matches_golden(rows):
    """The model's fast generator stepping (jumps, side-by-side stretches) against golden.PRNG."""
    from fetta.sim.golden import PRNG
    from fetta.sim.model import _LanePRNG
    fast, slow = _LanePRNG(4), PRNG(77, 4)
    fast.reseed(77)
    np.testing.assert_array_equal(fast.draw(rows), slow.draw(rows))
    fast.advance(1000)
    slow.draw(1000)
    np.testing.assert_array_equal(fast.draw(3), slow.draw(3))


@pytest.mark.parametrize("lanes", [64, 128])
def test_wide_arrays_run_mapped_contractions(lanes, seed):
    """From 64 lanes on, the keep and write masks are wider than an int64."""
    from fetta.search.mapper import choose_layouts, map_contraction
    config = AcceleratorConfig(lanes=lanes, depth=1024)
    a, b, c = choose_layouts(("ik", (70, 50)), ("kj", (50, 33)), ("ij", (70, 33)), config)
    program = map_contraction(a, b, c, config, shift=3)
    rng = np.random.default_rng(seed)
    A = rng.integers(-128, 128, (70, 50))
    B = rng.integers(-128, 128, (50, 33))
    machine = Machine(config)
    machine.write_rows(a.region, a.base, a.pack(A))
    machine.write_rows(b.region, b.base, b.pack(B))
    program.load(machine)
    result = machine.run()
    assert not result.error
    want, _ = requantize(A @ B, 3, 8)
    got = c.unpack(machine.read_rows(c.region, c.base, c.rows_needed))
    np.testing.assert_array_equal(got, want)
    assert result.counters.cycles == program.cycles + program.halt_cycles
