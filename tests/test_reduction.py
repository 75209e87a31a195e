import gc
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fetta.hw.reduction import (ReductionNetwork, SwitchMode, pack_config, port_coordinates,
                                reduction_model, stage_count, stage_dims, symbolic_outputs,
                                unpack_config, wiring_bits)
from fetta.search.reduction_router import (ReductionPlan, Unroutable, check_route,
                                           plan_reduction, reachable_placements, route_reduction)
from fetta.sim.rtl import RTLBuild

from sim_util import run_testbench


def _pairings(items):
    if not items:
        yield []
        return
    first = items[0]
    for other in items[1:]:
        rest = [x for x in items if x not in (first, other)]
        for tail in _pairings(rest):
            yield [(first, other)] + tail


def _quad_splits(lanes=8):
    for quad in itertools.combinations(range(1, lanes), 3):
        first = (0,) + quad
        yield [first, tuple(x for x in range(lanes) if x not in first)]


def _expected(x, groups):
    """Reference sums, straight from the pattern."""
    return {q: int(sum(int(x[k]) for k in members)) for q, members in groups.items()}


def _random_pattern(rng, lanes, max_size=None):
    """A random partition of a random subset of the lanes, placed on random outputs."""
    order = rng.permutation(lanes)
    used = rng.integers(1, lanes + 1)
    cuts = sorted(rng.choice(np.arange(1, used), size=rng.integers(0, used), replace=False)) \
        if used > 1 else []
    parts = np.split(order[:used], cuts)
    if max_size:
        parts = [p[i:i + max_size] for p in parts for i in range(0, len(p), max_size)]
    outs = rng.permutation(lanes)[:len(parts)]
    return {int(q): {int(v) for v in p} for q, p in zip(outs, parts)}


# --- topology -------------------------------------------------------------------------------------

@pytest.mark.parametrize("lanes,stages,switches", [(4, 3, 6), (8, 6, 24), (16, 8, 64), (32, 10, 160),
                                                   (64, 12, 384), (256, 16, 2048)])
def test_sizes_match_published_figures(lanes, stages, switches):
    dut_stages = stage_count(lanes)
    assert dut_stages == stages and dut_stages * lanes // 2 == switches
    # 2 bits per switch: the all-ones configuration fills exactly 2 * switches bits.
    assert pack_config([[3] * (lanes // 2)] * stages, lanes) == (1 << (2 * switches)) - 1


def test_wiring_reverses_low_bits():
    # g = min(2 + s, log2 N, 2 log2 N - s) for N = 16: 2, 3, 4, 4, 4, 3, 2.
    assert wiring_bits(16) == [2, 3, 4, 4, 4, 3, 2]
    coords = port_coordinates(8)
    # Stage 1 port p is driven by stage 0 port reverse_bits(p, 2): ports 1 and 2 trade places.
    assert coords[1] == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize("lanes", [8, 16, 32, 64])
def test_first_half_is_a_butterfly(lanes):
    n = lanes.bit_length() - 1
    dims = stage_dims(lanes)
    assert dims[:n] == list(range(n))
    assert sorted(dims[n:]) == list(range(n))


def test_reachable_permutations_need_all_stages():
    """Published measurement for N = 8: all 40,320 permutations need 6 stages; 5 reach 9,216."""
    singletons = [[k] for k in range(8)]
    assert len(reachable_placements(8, singletons)) == 40320
    assert len(reachable_placements(8, singletons, stages=5)) == 9216


# --- model and symbolic simulator ---------------------------------------------------------------

def test_switch_modes_in_model_and_symbolic():
    lanes, width = 4, 8
    x = np.array([[3, -5, 7, 11]])
    for mode, want_lo, want_hi in [(SwitchMode.PASS, 3, -5), (SwitchMode.SWAP, -5, 3),
                                   (SwitchMode.ADD_TO_LO, -2, -5), (SwitchMode.ADD_TO_HI, 3, -2)]:
        # Only switch 0 of stage 0 acts; the rest pass, so the stage-0 outputs reach lanes
        # through the fixed wiring: stage-0 port q ends on output lane of coordinate q.
        modes = [[mode, SwitchMode.PASS]] + [[SwitchMode.PASS] * 2] * 2
        out = reduction_model(x, modes, width=width)[0]
        where = {c: q for q, c in enumerate(port_coordinates(lanes)[-1])}
        assert (out[where[0]], out[where[1]]) == (want_lo, want_hi), mode
        sets = symbolic_outputs(modes, lanes)
        sums = {0: frozenset({0}), 1: frozenset({1})}
        if mode == SwitchMode.SWAP:
            sums = {0: frozenset({1}), 1: frozenset({0})}
        if mode == SwitchMode.ADD_TO_LO:
            sums = {0: frozenset({0, 1}), 1: frozenset({1})}
        if mode == SwitchMode.ADD_TO_HI:
            sums = {0: frozenset({0}), 1: frozenset({0, 1})}
        assert (sets[where[0]], sets[where[1]]) == (sums[0], sums[1])


def test_symbolic_reports_multisets_and_model_wraps():
    lanes, width = 4, 4
    add, keep = SwitchMode.ADD_TO_LO, SwitchMode.PASS
    # Stage 0 puts lanes {0, 1} on port 0 and keeps {1} on port 1; stage 1 forms {0, 1, 2} and
    # {1, 3}; stage 2 adds those two: output lane 0 counts lane 1 twice.
    modes = [[add, keep], [add, add], [add, keep]]
    sets = symbolic_outputs(modes, lanes)
    assert sets[0] is None and sets[1] == frozenset({1, 3})
    out = reduction_model(np.full((1, 4), -8), modes, width=width)[0]
    # -8 * 5 = -40 does not fit in the 6 output bits and wraps to -40 + 64.
    assert out[0] == 24 and out[1] == -16


def test_model_agrees_with_symbolic_on_random_configurations(seed):
    """For any configuration, every output the symbolic simulator reports as a set carries
    exactly the sum of those inputs."""
    rng = np.random.default_rng(seed)
    for lanes in (4, 8, 16, 32):
        beats = 50
        modes = rng.integers(0, 4, (beats, stage_count(lanes), lanes // 2))
        x = rng.integers(-128, 128, (beats, lanes))
        out = reduction_model(x, modes, width=8)
        checked = 0
        for b in range(beats):
            for q, members in enumerate(symbolic_outputs(modes[b], lanes)):
                if members is not None:
                    assert out[b, q] == sum(int(x[b, k]) for k in members)
                    checked += 1
        assert checked > beats * lanes // 4


def test_model_widths_hold_full_sums():
    """The sum of all lanes at the most negative input fits in W + log2 L bits."""
    for lanes, width in ((4, 8), (8, 8), (16, 8), (16, 48)):
        route = route_reduction({lanes - 1: set(range(lanes))}, lanes)
        x = np.full((2, lanes), -(1 << (width - 1)))
        x[1] = (1 << (width - 1)) - 1
        out = reduction_model(x, route.modes, width=width)
        assert list(out[:, lanes - 1]) == [lanes * -(1 << (width - 1)),
                                           lanes * ((1 << (width - 1)) - 1)]


def test_pack_and_unpack_config():
    rng = np.random.default_rng(5)
    modes = rng.integers(0, 4, (stage_count(16), 8))
    value = pack_config(modes, 16)
    assert unpack_config(value, 16) == [[SwitchMode(int(v)) for v in row] for row in modes]
    # Switch j of stage s sits at bits 2 (s * L/2 + j).
    assert pack_config([[0] * 8] * 7 + [[0] * 7 + [3]], 16) == 3 << (2 * (7 * 8 + 7))


# --- router: exhaustive at 4 and 8 lanes ----------------------------------------------------------

def _check_permutations(perms, lanes, rng):
    routes = [route_reduction({q: {p[q]} for q in range(lanes)}, lanes) for p in perms]
    x = rng.integers(-128, 128, (len(perms), lanes))
    out = reduction_model(x, np.array([[[m.value for m in row] for row in r.modes] for r in routes]),
                          width=8)
    want = np.take_along_axis(x, np.array(perms), axis=1)
    np.testing.assert_array_equal(out, want)


def test_all_permutations_route_at_4_lanes(seed):
    _check_permutations(list(itertools.permutations(range(4))), 4, np.random.default_rng(seed))


@pytest.mark.parametrize("chunk", range(4))
def test_all_permutations_route_at_8_lanes(chunk, seed):
    perms = list(itertools.permutations(range(8)))[chunk::4]
    _check_permutations(perms, 8, np.random.default_rng(seed))


def test_groupings_at_4_lanes_all_reachable_and_routed():
    for partition in ([[0, 1], [2, 3]], [[0, 2], [1, 3]], [[0, 3], [1, 2]], [[0, 1, 2, 3]]):
        reach = reachable_placements(4, partition)
        assert len(reach) == len(list(itertools.permutations(range(4), len(partition))))
        for place in reach:
            groups = {place[k]: set(g) for k, g in enumerate(partition)}
            check_route(route_reduction(groups, 4), groups)


def test_pair_groupings_at_8_lanes_ground_truth():
    """All 105 pairings x 1,680 placements: which are reachable in one pass (exhaustive)."""
    counts = {}
    unreachable = []
    reachable = {}
    for pairing in _pairings(list(range(8))):
        reach = reachable[tuple(pairing)] = reachable_placements(8, pairing)
        counts[len(reach)] = counts.get(len(reach), 0) + 1
        unreachable.extend((pairing, place) for place in itertools.permutations(range(8), 4)
                           if place not in reach)
    # Structured pairings (contiguous, stride 2, stride 4) reach every placement.
    for pairing in ([(0, 1), (2, 3), (4, 5), (6, 7)], [(0, 2), (1, 3), (4, 6), (5, 7)],
                    [(0, 4), (1, 5), (2, 6), (3, 7)]):
        assert len(reachable_placements(8, pairing)) == 1680
    assert counts == {1680: 25, 1632: 48, 1536: 32}
    assert len(unreachable) == 6912
    # The router finds the reachable patterns (a sample of each pairing)...
    rng = np.random.default_rng(0)
    for pairing, reach in reachable.items():
        reach = sorted(reach)
        for k in rng.choice(len(reach), 6, replace=False):
            groups = {reach[k][i]: set(pair) for i, pair in enumerate(pairing)}
            check_route(route_reduction(groups, 8), groups)
    # ...never claims an unreachable one, and the fallback handles those.
    for k in rng.choice(len(unreachable), 40, replace=False):
        pairing, place = unreachable[k]
        groups = {place[i]: set(pair) for i, pair in enumerate(pairing)}
        with pytest.raises(Unroutable, match="use plan_reduction"):
            route_reduction(groups, 8)
        _check_plan(plan_reduction(groups, 8), groups, rng)


def test_quad_groupings_at_8_lanes_all_routed():
    """All 35 splits into two quads x 56 placements route: each route is a witness checked by the
    symbolic simulator, so all 1,960 patterns are reachable (the exhaustive search agrees on the
    sample below; over all of them it takes minutes)."""
    routed = 0
    for split in _quad_splits():
        for place in itertools.permutations(range(8), 2):
            groups = {place[k]: set(g) for k, g in enumerate(split)}
            check_route(route_reduction(groups, 8), groups)
            routed += 1
    assert routed == 1960
    assert len(reachable_placements(8, [[0, 3, 5, 6], [1, 2, 4, 7]])) == 56


def test_ground_truth_pruning_is_exact():
    """The pruned search agrees with brute force over all 4**24 configurations' effects, for a
    small network: at 4 lanes every configuration is enumerated directly."""
    for partition in ([[0, 1], [2, 3]], [[0, 2], [1, 3]], [[0], [1], [2], [3]]):
        brute = set()
        for code in range(4 ** 6):
            modes = [[(code >> (2 * (2 * s + j))) & 3 for j in range(2)] for s in range(3)]
            sets = symbolic_outputs(modes, 4)
            place = tuple(sets.index(frozenset(g)) if frozenset(g) in sets else None
                          for g in partition)
            if None not in place:
                brute.add(place)
        assert reachable_placements(4, partition) == brute


# --- fallback ------------------------------------------------------------------------------------

def _check_plan(plan, groups, rng, width=8):
    assert isinstance(plan, ReductionPlan)
    lanes = plan.route.lanes
    x = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (3, lanes))
    regrouped = x if plan.permutation is None else x[:, list(plan.permutation)]
    if plan.permutation is not None:
        assert sorted(plan.permutation) == list(range(lanes))
    out = reduction_model(regrouped, [[m.value for m in row] for row in plan.route.modes], width=width)
    for b in range(len(x)):
        for q, total in _expected(x[b], groups).items():
            assert out[b, q] == total, (q, groups)


def _permutation_routable(perm):
    """Independent check: plain depth-first search over each input's path through the stages.

    Every bit is visited by exactly two stages, so a value's path is fixed by its coordinate
    between the two visits of each bit; the switches force all values onto distinct wires at
    every stage boundary.
    """
    lanes = len(perm)
    n = lanes.bit_length() - 1
    dims = stage_dims(lanes)
    out_coord = port_coordinates(lanes)[-1]

    def path(x, y, m):
        seen, coords = {}, []
        for d in dims:
            seen[d] = seen.get(d, 0) + 1
            coords.append(sum((x if b not in seen else m if seen[b] == 1 else y) & (1 << b)
                              for b in range(n)))
        return coords

    paths = [[path(perm[q], out_coord[q], m) for m in range(lanes)] for q in range(lanes)]
    used = [set() for _ in dims]

    def dfs(k):
        if k == lanes:
            return True
        for p in paths[k]:
            if all(c not in used[s] for s, c in enumerate(p)):
                for s, c in enumerate(p):
                    used[s].add(c)
                if dfs(k + 1):
                    return True
                for s, c in enumerate(p):
                    used[s].discard(c)
        return False

    return dfs(0)


def test_unroutable_permutation_at_16_lanes_and_fallback(seed):
    """Not every permutation of 16 lanes routes in one pass; the fallback regroups the lanes
    through the distribution network."""
    perm = [2, 3, 11, 10, 8, 1, 5, 4, 7, 15, 9, 12, 6, 13, 14, 0]
    assert not _permutation_routable(perm)
    assert _permutation_routable(list(range(16))[::-1])  # the check can succeed
    groups = {q: {perm[q]} for q in range(16)}
    with pytest.raises(Unroutable, match=r"cannot route pattern \{0: \[2\], 1: \[3\]"):
        route_reduction(groups, 16)
    plan = plan_reduction(groups, 16)
    assert plan.permutation is not None
    _check_plan(plan, groups, np.random.default_rng(seed))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 8, 16, 32, 64]), st.integers(0, 2 ** 32 - 1))
def test_random_patterns_plan_and_model(lanes, pattern_seed):
    rng = np.random.default_rng(pattern_seed)
    groups = _random_pattern(rng, lanes)
    plan = plan_reduction(groups, lanes)
    check_route(plan.route)
    _check_plan(plan, groups, rng)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([8, 16, 32, 64]), st.sampled_from([2, 4, 8]), st.integers(0, 2 ** 32 - 1))
def test_aligned_blocks_route_directly(lanes, size, pattern_seed):
    """Groups on aligned blocks of lanes, their sums on any outputs: a direct route."""
    rng = np.random.default_rng(pattern_seed)
    blocks = [set(range(b, b + size)) for b in range(0, lanes, size)]
    outs = rng.permutation(lanes)[:len(blocks)]
    groups = {int(q): g for q, g in zip(outs, blocks)}
    route = route_reduction(groups, lanes)
    _check_plan(ReductionPlan(permutation=None, route=route), groups, rng)


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 6, "width": 8}, "Lane count must be a power of two from 4 to 1024, not 6"),
    ({"lanes": 2, "width": 8}, "Lane count must be a power of two from 4 to 1024, not 2"),
    ({"lanes": 8, "width": 1}, "Input width must be an integer from 2 to 48, not 1"),
    ({"lanes": 8, "width": "8"}, "Input width must be an integer from 2 to 48, not '8'"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_network_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReductionNetwork(**kwargs)
    gc.collect()  # the rejected component warns when collected: here, under the filter


@pytest.mark.parametrize("groups,lanes,message", [
    ({0: {1}}, 12, "Lane count must be a power of two of at least 4, not 12"),
    ({8: {1}}, 8, "Output lane must be an integer from 0 to 7, not 8"),
    ({0: {9}}, 8, "Input lane must be an integer from 0 to 7, not 9"),
    ({0: set()}, 8, "Group of output lane 0 must not be empty"),
    ({0: {1, 2}, 3: {2}}, 8, "Input lane 2 is in the groups of output lanes 0 and 3"),
])
def test_router_rejects_bad_patterns(groups, lanes, message):
    with pytest.raises(ValueError, match=message):
        route_reduction(groups, lanes)


def test_router_rejects_non_dict():
    with pytest.raises(TypeError, match=r"Groups must be a dict of output lane to input lanes, not \[1\]"):
        route_reduction([1], 8)


def test_helpers_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"Modes must be 3 stages of 2 switches, not \[2, 2\]"):
        pack_config([[0, 0], [0, 0]], 4)
    with pytest.raises(ValueError, match=r"Modes must have shape \(1, 3, 2\), not \(1, 2, 2\)"):
        reduction_model(np.zeros((1, 4)), np.zeros((1, 2, 2)), width=8)
    with pytest.raises(ValueError, match="Inputs must be signed 4-bit integers"):
        reduction_model(np.full((1, 4), 8), np.zeros((3, 2)), width=4)
    with pytest.raises(ValueError, match="Exhaustive search is limited to 4 or 8 lanes, not 16"):
        reachable_placements(16, [[k] for k in range(16)])


# --- Amaranth simulation ---------------------------------------------------------------------------

def _stream(lanes, n, rng, width=8):
    """``n`` beats of random inputs, each with its own route (a random pattern, planned)."""
    xs = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (n, lanes))
    modes = np.zeros((n, stage_count(lanes), lanes // 2), dtype=np.int64)
    for b in range(n):
        plan = plan_reduction(_random_pattern(rng, lanes), lanes)
        modes[b] = [[m.value for m in row] for row in plan.route.modes]
    return width, xs, modes


def _payload(x, modes, width):
    lanes = len(x)
    value = 0
    for k, v in enumerate(x):
        value |= (int(v) & ((1 << width) - 1)) << (k * width)
    return value | pack_config(modes, lanes) << (lanes * width)


@pytest.mark.parametrize("lanes,width", [(4, 8), (8, 8), (16, 8), (32, 8), (64, 8), (8, 48)])
def test_network_matches_model_in_simulation(lanes, width, seed):
    rng = np.random.default_rng(seed)
    n = 40
    width, xs, modes = _stream(lanes, n, rng, width)
    valid = rng.random(n) < 0.8
    want = reduction_model(xs, modes, width=width)
    dut = ReductionNetwork(lanes=lanes, width=width)
    out_width = dut.out_width
    assert dut.config_layout.size == 2 * dut.stages * lanes // 2

    async def bench(ctx):
        seen = []
        for t in range(n + dut.latency):
            if t < n:
                ctx.set(dut.i.payload.as_value(), _payload(xs[t], modes[t], width))
                ctx.set(dut.i.valid, int(valid[t]))
            else:
                ctx.set(dut.i.valid, 0)
            await ctx.tick()
            beat = t + 1 - dut.latency
            if 0 <= beat < n:
                assert ctx.get(dut.o.valid) == valid[beat], beat
                raw = ctx.get(dut.o.payload.as_value())
                got = [(raw >> (k * out_width)) & ((1 << out_width) - 1) for k in range(lanes)]
                got = [v - (1 << out_width) if v >> (out_width - 1) else v for v in got]
                assert got == list(want[beat]), beat
                seen.append(beat)
        assert len(seen) == n

    run_testbench(dut, bench)


# --- Verilator ------------------------------------------------------------------------------------

@pytest.mark.rtl
@pytest.mark.parametrize("lanes", [8, 16, 32, 64])
def test_network_in_verilator(lanes, seed):
    width = 8
    build = RTLBuild(name="reduction", config={"lanes": lanes, "width": width},
                     elaborate=lambda: ReductionNetwork(lanes=lanes, width=width))
    assert build.test("bench_reduction", params={"lanes": lanes, "width": width, "seed": seed,
                                                  "beats": 300}) == 1
