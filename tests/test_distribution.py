# amaranth: UnusedElaboratable=no

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fetta.hw.distribution import (BenesDistribution, SwitchMode, compose_modes, model,
                                   network_strides, pack_config, stage_pairs, unpack_config)
from fetta.search.benes_router import (RouteError, broadcast_benes_strides, expand_pattern,
                                       replicate_pattern, route_broadcast_benes, route_multicast,
                                       route_permutation)
from fetta.sim.rtl import RTLBuild

from sim_util import run_testbench


def _gather(words, sources):
    """What any pattern must deliver: lane o holds the word of input sources[o] (numpy indexing)."""
    return np.asarray(words)[..., np.asarray(sources)]


def _check_routes(patterns, router, lanes):
    """Route every pattern, run the model on one batch, and compare with plain indexing."""
    patterns = np.asarray(patterns)
    configs = np.array([router(p) for p in patterns])
    words = np.broadcast_to(np.arange(lanes) + 100, patterns.shape)
    np.testing.assert_array_equal(model(configs, words), _gather(np.arange(lanes) + 100, patterns))
    return configs


# -- the switch and the topology ------------------------------------------------------------

def test_switch_modes_do_what_their_names_say():
    words = np.array([[10, 20]])
    want = {SwitchMode.PASS: [10, 20], SwitchMode.SWAP: [20, 10],
            SwitchMode.BROADCAST_UPPER: [10, 10], SwitchMode.BROADCAST_LOWER: [20, 20]}
    for mode, out in want.items():
        assert model([[mode.value]], words).tolist() == [out], mode


def test_compose_modes_is_sequential_application():
    for a, b in itertools.product(SwitchMode, repeat=2):
        once = model([[compose_modes(a, b).value]], [[1, 2]])
        twice = model([[a.value], [b.value]], [[1, 2]], strides=(1, 1))
        assert once.tolist() == twice.tolist(), (a, b)


@pytest.mark.parametrize("lanes", [2, 4, 8, 16, 32, 64, 128, 256])
def test_stage_count_is_five_log_lanes_minus_four(lanes):
    n = lanes.bit_length() - 1
    strides = network_strides(lanes)
    assert len(strides) == 5 * n - 4
    assert sorted(set(strides)) == [1 << t for t in range(n)]
    assert len(broadcast_benes_strides(lanes)) == 2 * n - 1
    upper, lower = stage_pairs(lanes, strides[0])
    assert sorted(upper.tolist() + lower.tolist()) == list(range(lanes))


# -- permutations: exhaustive at 4 and 8 ----------------------------------------------------

@pytest.mark.parametrize("lanes", [2, 4, 8])
def test_every_permutation_routes(lanes):
    perms = list(itertools.permutations(range(lanes)))
    assert len(perms) == [2, 24, 40320][lanes.bit_length() - 2]
    _check_routes(perms, route_permutation, lanes)


# -- multicast: exhaustive at 4, every copy demand at 8 -------------------------------------

def test_every_multicast_routes_at_four_lanes():
    patterns = list(itertools.product(range(4), repeat=4))
    assert len(patterns) == 256
    _check_routes(patterns, route_multicast, 4)


def test_every_copy_demand_routes_at_eight_lanes(seed):
    # A multicast is fixed by how many copies each input gets (the copy network's whole job) and
    # then by a permutation (the Benes networks, exhaustive above). All 6,435 demand vectors,
    # each with its outputs in sorted and in shuffled order.
    rng = np.random.default_rng(seed)
    patterns = []
    for cuts in itertools.combinations(range(15), 7):
        counts = np.diff([-1, *cuts, 15]) - 1          # compositions of 8 into 8 parts
        sources = np.repeat(np.arange(8), counts)
        patterns += [sources, rng.permutation(sources)]
    assert len(patterns) == 2 * 6435
    _check_routes(patterns, route_multicast, 8)


def test_single_benes_with_broadcast_is_not_enough():
    # At 4 lanes the search agrees with brute force over all 4,096 configurations: all 256 route.
    reached = {tuple(model(np.array(c).reshape(3, 2), [range(4)], strides=(2, 1, 2))[0])
               for c in itertools.product(range(4), repeat=6)}
    assert len(reached) == 256
    for sources in itertools.product(range(4), repeat=4):
        modes = route_broadcast_benes(sources)
        assert tuple(model(modes, [range(4)], strides=broadcast_benes_strides(4))[0]) == sources
    # At 8 lanes some multicasts do not route through one Benes network; the full network does.
    blocked = [3, 4, 3, 6, 2, 4, 6, 7]
    assert route_broadcast_benes(blocked) is None
    assert route_broadcast_benes(list(range(8))[::-1]) is not None
    _check_routes([blocked], route_multicast, 8)
    # The search takes other stage sequences: one more stage after the Benes network routes it.
    longer = broadcast_benes_strides(8) + (2,)
    modes = route_broadcast_benes(blocked, strides=longer)
    assert model(modes, [range(8)], strides=longer)[0].tolist() == blocked


# -- property tests up to 64 lanes ----------------------------------------------------------

lane_counts = st.sampled_from([2, 4, 8, 16, 32, 64])


@st.composite
def permutations(draw):
    lanes = draw(lane_counts)
    return draw(st.permutations(range(lanes)))


@st.composite
def multicasts(draw):
    lanes = draw(lane_counts)
    used = draw(st.integers(1, lanes))                 # few distinct sources make wide fan-out
    return draw(st.lists(st.integers(0, used - 1), min_size=lanes, max_size=lanes))


@st.composite
def structured(draw):
    """What a mapper asks for: replicate or expand groups, before and after permutations."""
    lanes = draw(lane_counts)
    group = 1 << draw(st.integers(0, lanes.bit_length() - 1))
    base = draw(st.sampled_from([replicate_pattern, expand_pattern]))(lanes, group)
    inputs = draw(st.permutations(range(lanes)))     # which bank words form the groups
    outputs = draw(st.permutations(range(lanes)))    # where the lanes of the result go
    if draw(st.booleans()):
        outputs = list(range(lanes))
    sources = [0] * lanes
    for o in range(lanes):
        sources[outputs[o]] = inputs[base[o]]
    return sources


@settings(max_examples=60, deadline=None)
@given(permutations())
def test_random_permutations_route(perm):
    _check_routes([perm], route_permutation, len(perm))
    _check_routes([perm], route_multicast, len(perm))


@settings(max_examples=100, deadline=None)
@given(multicasts())
def test_random_multicasts_route(sources):
    _check_routes([sources], route_multicast, len(sources))


@settings(max_examples=100, deadline=None)
@given(structured())
def test_structured_patterns_route(sources):
    _check_routes([sources], route_multicast, len(sources))


def test_structured_pattern_helpers():
    assert replicate_pattern(8, 2) == [0, 1, 0, 1, 0, 1, 0, 1]
    assert expand_pattern(8, 4) == [0, 0, 0, 0, 1, 1, 1, 1]


# -- configuration packing ------------------------------------------------------------------

@pytest.mark.parametrize("lanes", [2, 8])
def test_pack_config_matches_config_layout(lanes):
    dut = BenesDistribution(lanes=lanes, width=4)
    rng = np.random.default_rng(lanes)
    modes = rng.integers(0, 4, (len(dut.strides), lanes // 2))
    const = dut.config_layout.const([[SwitchMode(int(x)) for x in row] for row in modes])
    assert dut.pack_config(modes) == const.as_value().value
    np.testing.assert_array_equal(unpack_config(dut.pack_config(modes), lanes), modes)


# -- the Amaranth simulator against the model -----------------------------------------------

def _simulate(dut, configs, words):
    """Stream one beat per cycle (with a gap in the middle); return the output beats in order."""
    packed = [dut.pack_config(c) for c in configs]
    gap = len(packed) // 2
    out = []

    async def bench(ctx):
        beats = list(range(len(packed)))
        schedule = beats[:gap] + [None] * 3 + beats[gap:] + [None] * dut.latency
        for cycle, k in enumerate(schedule):
            if k is None:
                ctx.set(dut.i.valid, 0)
            else:
                ctx.set(dut.i.payload.data, [int(x) for x in words[k]])
                ctx.set(dut.i.payload.config.as_value(), packed[k])
                ctx.set(dut.i.valid, 1)
            await ctx.tick()
            if ctx.get(dut.o.valid):
                # The beat issued `latency` cycles ago arrives now.
                assert schedule[cycle + 1 - dut.latency] is not None
                out.append(list(ctx.get(dut.o.payload)))

    run_testbench(dut, bench)
    return np.array(out)


def test_simulator_every_permutation_at_four_lanes(seed):
    rng = np.random.default_rng(seed)
    perms = list(itertools.permutations(range(4)))
    configs = [route_permutation(p) for p in perms]
    words = rng.integers(0, 1 << 8, (len(perms), 4))
    dut = BenesDistribution(lanes=4, width=8)
    got = _simulate(dut, configs, words)
    np.testing.assert_array_equal(got, model(np.array(configs), words))
    np.testing.assert_array_equal(got, np.take_along_axis(words, np.array(perms), axis=1))


@pytest.mark.parametrize("register_every", [1, 3])
def test_simulator_permutations_back_to_back_at_eight_lanes(register_every, seed):
    rng = np.random.default_rng(seed)
    perms = np.array([rng.permutation(8) for _ in range(2000)])
    configs = np.array([route_permutation(p) for p in perms])
    words = rng.integers(0, 1 << 16, perms.shape)
    dut = BenesDistribution(lanes=8, width=16, register_every=register_every)
    assert dut.latency == -(-len(dut.strides) // register_every)
    got = _simulate(dut, configs, words)
    np.testing.assert_array_equal(got, model(configs, words))
    np.testing.assert_array_equal(got, np.take_along_axis(words, perms, axis=1))


@pytest.mark.parametrize("lanes", [16, 64])
def test_simulator_multicasts_and_structured(lanes, seed):
    rng = np.random.default_rng(seed)
    patterns = [rng.integers(0, rng.integers(1, lanes + 1), lanes) for _ in range(150)]
    for g in (1, 2, 4, lanes // 2, lanes):
        patterns += [replicate_pattern(lanes, g), expand_pattern(lanes, g)]
    patterns = np.array(patterns)
    configs = np.array([route_multicast(p) for p in patterns])
    words = rng.integers(0, 1 << 8, patterns.shape)
    dut = BenesDistribution(lanes=lanes, width=8, register_every=2)
    got = _simulate(dut, configs, words)
    np.testing.assert_array_equal(got, model(configs, words))
    np.testing.assert_array_equal(got, np.take_along_axis(words, patterns, axis=1))


@st.composite
def pattern_streams(draw):
    """A few beats of one lane count, each a permutation, a multicast or a structured pattern."""
    lanes = draw(st.sampled_from([4, 8, 16]))
    kinds = st.one_of(
        st.permutations(range(lanes)),
        st.lists(st.integers(0, lanes - 1), min_size=lanes, max_size=lanes),
        st.builds(lambda f, t, p: [p[s] for s in f(lanes, 1 << t)],
                  st.sampled_from([replicate_pattern, expand_pattern]),
                  st.integers(0, lanes.bit_length() - 1), st.permutations(range(lanes))))
    return lanes, draw(st.lists(kinds, min_size=1, max_size=12))


@settings(max_examples=8, deadline=None)
@given(pattern_streams(), st.integers(1, 4))
def test_simulator_on_drawn_patterns(stream, register_every):
    lanes, patterns = stream
    patterns = np.array(patterns)
    configs = np.array([route_multicast(p) for p in patterns])
    words = np.arange(patterns.size).reshape(patterns.shape) % 251
    dut = BenesDistribution(lanes=lanes, width=8, register_every=register_every)
    got = _simulate(dut, configs, words)
    np.testing.assert_array_equal(got, model(configs, words))
    np.testing.assert_array_equal(got, np.take_along_axis(words, patterns, axis=1))


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 6, "width": 8}, "Lane count must be a power of two from 2 to 256, not 6"),
    ({"lanes": 512, "width": 8}, "Lane count must be a power of two from 2 to 256, not 512"),
    ({"lanes": 8, "width": 0}, "Word width must be an integer from 1 to 64, not 0"),
    ({"lanes": 8, "width": 8, "register_every": 0},
     "Stages between registers must be an integer from 1 to 11, not 0"),
])
def test_distribution_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BenesDistribution(**kwargs)


@pytest.mark.parametrize("call,message", [
    (lambda: route_permutation([0, 1, 1, 3]),
     r"Pattern \[0, 1, 1, 3\] is not a permutation \(inputs \[1\] are used more than once\); "
     r"route it with route_multicast"),
    (lambda: route_multicast([0, 1, 2]), r"power-of-two number of lanes of at least 2, not 3"),
    (lambda: route_multicast([0, 4, 1, 2]),
     r"Every source must be an input lane from 0 to 3: pattern \[0, 4, 1, 2\]"),
    (lambda: route_multicast(None), r"Sources must be a sequence of input lanes, not None"),
    (lambda: replicate_pattern(8, 3), r"Group size must be a divisor of 8, not 3"),
    (lambda: expand_pattern(12, 3), r"Lane count must be a power of two of at least 2, not 12"),
    (lambda: network_strides(0), r"Lane count must be a power of two of at least 2, not 0"),
    (lambda: pack_config(np.zeros((3, 2)), 8), r"Switch modes must have shape \(\.\.\., 11, 4\), "
                                                r"not \(3, 2\)"),
    (lambda: pack_config(np.full((11, 4), 4), 8), r"Switch modes must be from 0 to 3, not 4\.\.4"),
    (lambda: unpack_config(-1, 2), r"Configuration must be an integer of 2 bits, not -1"),
    (lambda: model(np.zeros((1, 1, 1)), np.zeros((2, 2))),
     r"Configuration of shape \(1, 1, 1\) does not match 2 beats"),
    (lambda: model(np.zeros((1, 1)), np.zeros(2)), r"Words must have shape \(beats, lanes\), not \(2,\)"),
])
def test_router_and_model_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_route_error_is_a_value_error():
    assert issubclass(RouteError, ValueError)


# -- Verilator through cocotb on the generated Verilog --------------------------------------

@pytest.mark.rtl
@pytest.mark.parametrize("lanes,width,register_every,beats", [
    (8, 16, 1, 2000), (16, 8, 2, 1500), (32, 8, 3, 500),
])
def test_distribution_in_verilator(lanes, width, register_every, beats, seed):
    config = {"lanes": lanes, "width": width, "register_every": register_every}
    dut = BenesDistribution(**config)
    build = RTLBuild(name="distribution", config=config,
                     elaborate=lambda: BenesDistribution(**config))
    params = dict(config, latency=dut.latency, beats=beats, seed=seed)
    assert build.test("bench_distribution", params=params) == 1


# -- resources ------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes,width,register_every", [(4, 4, 1), (8, 3, 4)])
def test_yosys_cell_counts(lanes, width, register_every):
    from fetta.sim.resources import yosys_stats
    dut = BenesDistribution(lanes=lanes, width=width, register_every=register_every)
    cells = yosys_stats(dut)
    stages = 5 * (lanes.bit_length() - 1) - 4
    # Two 2:1 multiplexers of `width` bits per switch.
    assert cells["$_MUX_"] == stages * lanes // 2 * 2 * width
    # After each register group: the words, the modes of the stages still ahead, and valid.
    ends = [min(g + register_every, stages) for g in range(0, stages, register_every)]
    flops = sum(lanes * width + (stages - end) * lanes + 1 for end in ends)
    assert sum(count for kind, count in cells.items() if "DFF" in kind) == flops
    assert set(cells) <= {"$_MUX_", "$_DFF_P_", "$_SDFF_PP0_"}


def test_route_subcommand(capsys):
    import argparse
    from fetta.search import benes_router
    parser = argparse.ArgumentParser()
    benes_router.register(parser.add_subparsers())
    args = parser.parse_args(["route", "3", "4", "3", "6", "2", "4", "6", "7"])
    assert args.run(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("8 lanes, 11 stages")
    value = int(out[-1].split("= ")[1], 16)
    modes = unpack_config(value, 8)
    assert model(modes, [[10, 11, 12, 13, 14, 15, 16, 17]]).tolist() == [[13, 14, 13, 16, 12, 14, 16, 17]]
