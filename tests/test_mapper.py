import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fetta.hw.config import AcceleratorConfig
from fetta.search.layout import LayoutError, TensorLayout, natural_layout
from fetta.search.mapper import MapperError, choose_layouts, map_contraction, map_relayout
from fetta.sim.golden import requantize
from fetta.sim.model import Machine


def _run(program, config, inputs, out):
    """Execute ``program`` on the model with ``inputs`` = [(layout, array)]; return (C, result)."""
    machine = Machine(config)
    # Random junk everywhere first: the program must not depend on unwritten rows.
    rng = np.random.default_rng(1)
    machine.scratchpad[:] = rng.integers(config.word_min, config.word_max + 1,
                                         machine.scratchpad.shape)
    for layout, array in inputs:
        machine.write_rows(layout.region, layout.base, layout.pack(array))
    program.load(machine)
    result = machine.run()
    rows = machine.read_rows(out.region, out.base, out.rows_needed)
    return rows, result


def _expected(expr, A, B, shift, config):
    exact = np.einsum(expr, A.astype(np.int64), B.astype(np.int64))
    return requantize(exact, shift, config.width, acc_width=config.sum_width)[0]


def _check(a, b, c, config, A, B, shift=0):
    program = map_contraction(a, b, c, config, shift=shift)
    rows, result = _run(program, config, [(a, A), (b, B)], c)
    assert not result.error, (result.cause, program.text())
    expr = "".join(a.indices) + "," + "".join(b.indices) + "->" + "".join(c.indices)
    np.testing.assert_array_equal(c.unpack(rows), _expected(expr, A, B, shift, config))
    # Padding of the result (lanes of its rows that hold no element) is 0, so that the result
    # can be the next step's operand; rows between its rows (stride gaps) are not its own.
    own = np.unique(c.positions()[0])
    np.testing.assert_array_equal(c.pack(c.unpack(rows))[own], rows[own])
    assert result.counters.cycles == program.cycles + program.halt_cycles
    assert result.counters.macs == program.issued_macs
    return program


# Random contractions: batch, free and contracted indices (and an index summed over A alone) in
# any order, random layouts.

@st.composite
def contractions(draw):
    lanes = draw(st.sampled_from([4, 8, 16]))
    width = draw(st.sampled_from([8, 16]))
    names = iter("abcdefgh")
    roles = {}
    for role, most in (("batch", 1), ("free_a", 2), ("free_b", 2), ("contracted", 2),
                       ("summed_a", 1)):
        for _ in range(draw(st.integers(0, most))):
            roles[next(names)] = role
    if not roles:
        roles["a"] = "contracted"
    sizes = {x: draw(st.integers(1, 7)) for x in roles}
    # One lane factor per index (or none), and per tensor that factor or one in a chain of
    # multiples with it (the operands of a contracted index share theirs).
    factor = {x: draw(st.sampled_from([None] + list(range(1, min(sizes[x], lanes) + 1))))
              for x in roles}
    chain = {x: [f * m for m in (1, 2, 4) if f * m <= min(sizes[x], lanes)]
                + ([f // 2] if f % 2 == 0 else []) if f is not None else [None]
             for x, f in factor.items()}
    members = {
        "A": [x for x, r in roles.items() if r in ("batch", "free_a", "contracted", "summed_a")],
        "B": [x for x, r in roles.items() if r in ("batch", "free_b", "contracted")],
        "C": [x for x, r in roles.items() if r in ("batch", "free_a", "free_b")],
    }
    # A contracted index is on the lanes of both operands or of neither.
    contracted_on, room_k = set(), lanes
    for x, r in roles.items():
        if r == "contracted" and factor[x] is not None and factor[x] <= room_k and draw(st.booleans()):
            contracted_on.add(x)
            room_k //= factor[x]
    regions = draw(st.permutations(range(4)))[:3]
    layouts = []
    for (name, ix), region in zip(members.items(), regions):
        ix = draw(st.permutations(ix))
        mine = {x: factor[x] if roles[x] == "contracted" else draw(st.sampled_from(chain[x]))
                for x in ix}
        lane = [x for x in ix if x in contracted_on]
        room = lanes // int(np.prod([factor[x] for x in lane], dtype=int))
        for x in ix:
            if (roles[x] != "contracted" and mine[x] is not None and mine[x] <= room
                    and draw(st.integers(0, 3)) > 0):
                lane.append(x)
                room //= mine[x]
        lane = [(x, mine[x]) for x in draw(st.permutations(lane))]
        row_order = draw(st.permutations(ix))
        layout = natural_layout(name, ix, [sizes[x] for x in ix], lanes=lanes, lane_indices=lane,
                                row_order=row_order, region=region, base=draw(st.integers(0, 5)))
        # Spread the rows with a gap sometimes (strides need not be dense).
        if layout.row_strides and draw(st.booleans()):
            strides = {x: s * 2 for x, s in layout.row_strides}
            layout = TensorLayout(name=name, indices=layout.indices, sizes=layout.sizes, lanes=lanes,
                                  lane_indices=layout.lane_indices, row_strides=strides,
                                  region=region, base=layout.base)
        layouts.append(layout)
    shift = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    return lanes, width, layouts, shift, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contractions())
def test_random_contractions_match_golden_and_cycles(case):
    lanes, width, (a, b, c), shift, seed = case
    # acc_width 32 for W = 16: the reduction network takes at most 32-bit inputs.
    config = AcceleratorConfig(lanes=lanes, width=width, acc_width=32, depth=8192, prog_depth=4096,
                               dist_routes=256, red_routes=256)
    assume(all(t.base + t.rows_needed <= config.depth for t in (a, b, c)))
    rng = np.random.default_rng(seed)
    # Operands small enough that no accumulator saturates (at most 7 * 7 terms of 2**24 for W = 16).
    lo, hi = (config.word_min, config.word_max + 1) if width == 8 else (-(1 << 12), 1 << 12)
    A = rng.integers(lo, hi, a.shape)
    B = rng.integers(lo, hi, b.shape)
    program = _check(a, b, c, config, A, B, shift)
    assert program.relayouts == 0


def test_chosen_layouts_fill_the_lanes(seed):
    # k and j of 4 each on 16 lanes: the chosen layouts put contracted and free parts side by
    # side on the lanes (A multicast over j, B over i) instead of leaving lanes idle.
    config = AcceleratorConfig(lanes=16)
    a, b, c = choose_layouts(("ik", (256, 4)), ("kj", (4, 4)), ("ij", (256, 4)), config)
    rng = np.random.default_rng(seed)
    A, B = rng.integers(-128, 128, a.shape), rng.integers(-128, 128, b.shape)
    chosen = _check(a, b, c, config, A, B, 2)
    assert any(part.startswith("k") for part in chosen.spatial)
    assert chosen.issued_macs == chosen.macs == 256 * 4 * 4   # no idle lane in any beat
    # j alone on the lanes (A's k on rows, as a contracted index must be in both) leaves 3/4 idle.
    na = natural_layout("A", "ik", (256, 4), lanes=16, region=0, lane_indices=[])
    nb = natural_layout("B", "kj", (4, 4), lanes=16, region=1)
    nc = natural_layout("C", "ij", (256, 4), lanes=16, region=2)
    natural = _check(na, nb, nc, config, A, B, 2)
    assert natural.issued_macs == 4 * natural.macs
    assert chosen.utilization > 3 * natural.utilization


def test_output_layout_other_than_natural_in_one_pass(seed):
    config = AcceleratorConfig(lanes=8)
    sizes = {"b": 2, "i": 5, "k": 6, "j": 4}
    a, b, c = choose_layouts(("bik", (2, 5, 6)), ("bkj", (2, 6, 4)), ("bij", (2, 5, 4)), config)
    rng = np.random.default_rng(seed)
    A, B = rng.integers(-128, 128, a.shape), rng.integers(-128, 128, b.shape)
    natural = _check(a, b, c, config, A, B, 1)
    # Same lane parts in the reverse lane order, rows in another order: the reduction network
    # places the sums, the C strides reorder the rows.
    lanes = tuple(reversed(c.lane_indices))
    assert len(lanes) >= 2, c.describe()
    other = natural_layout("C", "jib", [sizes[x] for x in "jib"], lanes=8, lane_indices=lanes,
                           row_order="ijb", region=c.region)
    program = _check(a, b, other, config, A, B.copy(), 1)
    assert program.relayouts == 0
    assert program.steps == natural.steps == 1
    assert program.cycles == natural.cycles


def test_relayout_copies_through_the_networks(seed):
    config = AcceleratorConfig(lanes=4, prog_depth=1024)
    src = natural_layout("X", "ij", (5, 7), lanes=4, region=0)             # j on lanes
    dst = natural_layout("Y", "ji", (7, 5), lanes=4, region=3, base=9)     # i on lanes
    X = np.random.default_rng(seed).integers(-128, 128, (5, 7))
    program = map_relayout(src, dst, config)
    rows, result = _run(program, config, [(src, X)], dst)
    assert not result.error
    np.testing.assert_array_equal(dst.unpack(rows), X.T)
    np.testing.assert_array_equal(dst.pack(X.T), rows)
    assert program.relayouts == program.steps - program.fills > 0
    assert program.macs == 0 and result.counters.macs == 0
    assert result.counters.cycles == program.cycles + program.halt_cycles
    # A change of lane factor (2 to 8, with padding rows) and of row order.
    src = natural_layout("X", "ij", (5, 13), lanes=8, lane_indices=[("j", 2)], region=1)
    dst = natural_layout("Y", "ij", (5, 13), lanes=8, lane_indices=[("j", 8)], row_order="ji",
                         region=0, base=2)
    config = AcceleratorConfig(lanes=8, prog_depth=1024)
    X = np.random.default_rng(seed + 1).integers(-128, 128, (5, 13))
    program = map_relayout(src, dst, config)
    rows, result = _run(program, config, [(src, X)], dst)
    assert not result.error
    np.testing.assert_array_equal(dst.unpack(rows), X)
    own = np.unique(dst.positions()[0])
    np.testing.assert_array_equal(dst.pack(X)[own], rows[own])
    assert result.counters.cycles == program.cycles + program.halt_cycles


def test_pinned_split_edges_and_many_levels(seed):
    # C has i on lanes, A has it on rows: i is pinned per step, its last row is an edge;
    # loop_levels = 1 forces the output loops into separate steps.
    config = AcceleratorConfig(lanes=4, loop_levels=1, prog_depth=1024)
    a = natural_layout("A", "ik", (7, 3), lanes=4, region=1, lane_indices=[])
    b = natural_layout("B", "kj", (3, 2), lanes=4, region=2, lane_indices=[])
    c = natural_layout("C", "ji", (2, 7), lanes=4, region=0, base=3)
    rng = np.random.default_rng(seed)
    A, B = rng.integers(-128, 128, a.shape), rng.integers(-128, 128, b.shape)
    program = _check(a, b, c, config, A, B)
    assert "i0" in program.pinned


# The cases that also run on the RTL (tests/rtl/bench_mapper.py), for the default configuration.

def rtl_cases(config, seed):
    """``[(name, program, [(layout, array)], out layout, expected array)]``, expectations from numpy."""
    rng = np.random.default_rng(seed)
    L = config.lanes

    def words(shape):
        return rng.integers(config.word_min, config.word_max + 1, shape)

    def contraction(name, a, b, c, shift):
        A, B = words(a.shape), words(b.shape)
        expr = "".join(a.indices) + "," + "".join(b.indices) + "->" + "".join(c.indices)
        return (name, map_contraction(a, b, c, config, shift=shift), [(a, A), (b, B)], c,
                _expected(expr, A, B, shift, config))

    cases = []
    a, b, c = choose_layouts(("ik", (40, 4)), ("kj", (4, 4)), ("ij", (40, 4)), config)
    cases.append(contraction("chosen layouts", a, b, c, 2))
    a, b, c = choose_layouts(("bik", (2, 5, 6)), ("bkj", (2, 6, 4)), ("bij", (2, 5, 4)), config,
                             regions=(1, 3, 0), bases=(7, 0, 2))
    other = natural_layout("C", "jib", (4, 5, 2), lanes=L, lane_indices=c.lane_indices[::-1],
                           row_order="ijb", region=c.region, base=3)
    cases.append(contraction("reordered output", a, b, other, 1))
    a = natural_layout("A", "ik", (20, 5), lanes=L, region=2, lane_indices=[])
    b = natural_layout("B", "kj", (5, 6), lanes=L, region=0, base=4)
    c = natural_layout("C", "ji", (6, 20), lanes=L, region=3, lane_indices=[("i", 8)])
    cases.append(contraction("pinned output lanes", a, b, c, 3))
    src = natural_layout("X", "ij", (3, 6), lanes=L, region=1)
    dst = natural_layout("Y", "ji", (6, 3), lanes=L, region=2, base=11)
    X = words(src.shape)
    cases.append(("relayout", map_relayout(src, dst, config), [(src, X)], dst, X.T))
    for k in range(4):
        a, b, c, shift = _random_contraction(rng, config)
        name = f"random {k}: {''.join(a.indices)},{''.join(b.indices)}->{''.join(c.indices)}"
        cases.append(contraction(name, a, b, c, shift))
    return cases


def _random_contraction(rng, config):
    """Layouts of a random contraction: batch, free and contracted indices in random orders and
    sizes that are mostly not multiples of L, laid out by :func:`choose_layouts` or with a random
    lane index; regions and bases random."""
    roles = {}
    letters = iter("abcdefgh")
    for role, count in (("batch", rng.integers(0, 2)), ("free_a", rng.integers(1, 3)),
                        ("free_b", rng.integers(0, 2)), ("contracted", rng.integers(1, 3))):
        for _ in range(count):
            roles[next(letters)] = role
    sizes = {x: int(rng.integers(1, 7)) for x in roles}
    members = [[x for x, r in roles.items() if r in kinds] for kinds in
               (("batch", "free_a", "contracted"), ("batch", "free_b", "contracted"),
                ("batch", "free_a", "free_b"))]
    members = [[ix[i] for i in rng.permutation(len(ix))] for ix in members]
    regions = tuple(int(r) for r in rng.permutation(config.regions)[:3])
    bases = tuple(int(x) for x in rng.integers(0, 8, 3))
    shift = int(rng.integers(0, 6))
    specs = [(ix, [sizes[x] for x in ix]) for ix in members]
    if rng.random() < 0.5:
        # One output index on the lanes of every tensor that has it, the rest on rows, if that
        # fits the regions (a tensor without the lane index takes one row per element).
        lane_index = members[2][int(rng.integers(0, len(members[2])))]
        layouts = [natural_layout(name, ix, sz, lanes=config.lanes, region=region, base=base,
                                  lane_indices=[(lane_index, min(sizes[lane_index], config.lanes))]
                                  if lane_index in ix else [])
                   for name, (ix, sz), region, base in zip("ABC", specs, regions, bases)]
        if all(t.base + t.rows_needed <= config.depth for t in layouts):
            return (*layouts, shift)
    return (*choose_layouts(*specs, config, regions=regions, bases=bases), shift)


def test_rtl_cases_on_the_model(seed):
    config = AcceleratorConfig()
    for name, program, inputs, out, want in rtl_cases(config, seed):
        rows, result = _run(program, config, inputs, out)
        assert not result.error, name
        np.testing.assert_array_equal(out.unpack(rows), want, err_msg=name)
        assert result.counters.cycles == program.cycles + program.halt_cycles, name
        assert len(program.image()) <= config.prog_depth


@pytest.mark.rtl
def test_mapper_programs_on_rtl(seed):
    """The default configuration's system in Verilator runs the mapper's programs: results equal
    numpy's, cycles and MACs equal the mapper's prediction (one build, every case in one run)."""
    from fetta.hw.accelerator import AcceleratorSystem
    from fetta.sim.rtl import RTLBuild
    config = AcceleratorConfig()
    build = RTLBuild(name="accelerator_system", config=config.to_dict(),
                     elaborate=lambda: AcceleratorSystem(config))
    assert build.test("bench_mapper", params={"config": config.to_dict(), "seed": seed}) == 1


# Errors, by message.

def _abc(lanes=4, **kw):
    a = natural_layout("A", "ik", (3, 8), lanes=lanes, region=0)
    b = natural_layout("B", "kj", (8, 5), lanes=lanes, region=1, lane_indices=[])
    c = natural_layout("C", "ij", (3, 5), lanes=lanes, region=2, lane_indices=[])
    return a, b, c


def test_error_tensor_does_not_fit():
    a, b, c = _abc()
    config = AcceleratorConfig(lanes=4, depth=64)
    with pytest.raises(MapperError, match=r"tensor 'C' does not fit region 2: needs 15 rows from "
                                          r"row 60, depth is 64"):
        map_contraction(a, b, c.placed(base=60), config)


def test_error_index_in_neither_operand():
    a, b, _ = _abc()
    c = natural_layout("C", "iz", (3, 2), lanes=4, region=2)
    with pytest.raises(MapperError, match=r"index 'z' of C appears in neither operand"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4))


def test_error_extents_disagree():
    a, _, c = _abc()
    b = natural_layout("B", "kj", (7, 5), lanes=4, region=1, lane_indices=[])
    with pytest.raises(MapperError, match=r"index 'k' has extent 8 in A but 7 in B"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4))


def test_error_regions_not_distinct():
    a, b, c = _abc()
    with pytest.raises(MapperError, match=r"distinct regions \(A in 0, B in 1, C in 0\)"):
        map_contraction(a, b, c.placed(region=0), AcceleratorConfig(lanes=4))


def test_error_contracted_index_lanes_and_rows():
    a, b, c = _abc()   # k on the lanes of A, on the rows of B
    with pytest.raises(MapperError, match=r"contracted index 'k' is on the lanes of A but on the "
                                          r"rows of B; re-lay out one operand"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4))


def test_error_lane_factors_disagree():
    a = natural_layout("A", "ik", (3, 8), lanes=4, region=0, lane_indices=[("k", 3)])
    b = natural_layout("B", "kj", (8, 5), lanes=4, region=1, lane_indices=[("k", 2)])
    c = natural_layout("C", "ij", (3, 5), lanes=4, region=2)
    with pytest.raises(MapperError, match=r"index 'k' is split on the lanes with factors that do "
                                          r"not divide one another \(3 in A, 2 in B\)"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4))
    # Factors 4 and 2 nest, but then k's second part is on A's lanes and B's rows.
    a = natural_layout("A", "ik", (3, 8), lanes=4, region=0, lane_indices=[("k", 4)])
    with pytest.raises(MapperError, match=r"contracted index 'k' is on the lanes of A but on the "
                                          r"rows of B"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4))


def test_error_route_tables_and_program_too_small():
    a = natural_layout("A", "ik", (3, 8), lanes=4, region=0, lane_indices=[])
    b = natural_layout("B", "kj", (8, 5), lanes=4, region=1, lane_indices=[])
    c = natural_layout("C", "ij", (3, 5), lanes=4, region=2, lane_indices=["i"])  # i pinned
    with pytest.raises(MapperError, match=r"needs more than 2 reduction routes from entry 0; the "
                                          r"table has 2 entries"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4, red_routes=2))
    with pytest.raises(MapperError, match=r"needs \d+ instructions with HALT; prog_depth is 4"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=4, prog_depth=4))


def test_error_bad_arguments():
    a, b, c = _abc()
    config = AcceleratorConfig(lanes=4)
    with pytest.raises(MapperError, match=r"rounding must be one of .* not 'up'"):
        map_contraction(a, b, c, config, rounding="up")
    with pytest.raises(MapperError, match=r"shift must be an integer from 0 to 33, not 40"):
        map_contraction(a, b, c, config, shift=40)
    with pytest.raises(MapperError, match=r"operand B must be a TensorLayout, not 'B'"):
        map_contraction(a, "B", c, config)
    with pytest.raises(MapperError, match=r"layout has 4 lanes but the configuration has 8"):
        map_contraction(a, b, c, AcceleratorConfig(lanes=8))


# Layouts.

def test_layout_pack_unpack_round_trip(seed):
    rng = np.random.default_rng(seed)
    layout = natural_layout("T", "xyz", (3, 5, 6), lanes=8, lane_indices=[("z", 4), "x"],
                            row_order="zyx")
    T = rng.integers(-100, 100, layout.shape)
    rows = layout.pack(T)
    assert rows.shape == (layout.rows_needed, 8)
    np.testing.assert_array_equal(layout.unpack(rows), T)
    # A bare lane index takes the room left: x gets 8 // 4 = 2 lanes beside z's 4.
    assert layout.lane_indices == (("z", 4), ("x", 2))
    # Row parts z1 (2), y (5), x1 (2), row-major in that order.
    assert dict(layout.row_strides) == {"z": 5 * 2, "y": 2, "x": 1}
    x, y, z = 2, 3, 5
    assert rows[(z // 4) * 10 + y * 2 + x // 2, (z % 4) * 2 + x % 2] == T[x, y, z]
    # Everything else is padding and holds 0: z = 6, 7 on the last z rows, x = 3 on the last x rows.
    mask = np.zeros_like(rows, dtype=bool)
    mask[layout.positions()] = True
    assert not rows[~mask].any()
    assert mask.sum() == T.size


def test_layout_errors():
    with pytest.raises(LayoutError, match=r"T: lane index 'q' is not one of its indices"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4, lane_indices=["q"])
    with pytest.raises(LayoutError, match=r"span 6 lanes, more than the 4 of a row"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4, lane_indices=["i", "j"])
    with pytest.raises(LayoutError, match=r"index 'i' has 2 rows and needs a row stride"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4, lane_indices=["j"])
    with pytest.raises(LayoutError, match=r"put 6 rows of parts into 4 rows: some rows overlap"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4,
                     row_strides={"i": 1, "j": 1})
    with pytest.raises(LayoutError, match=r"row strides \{'i': 4, 'j': 2\} map two parts to the "
                                          r"same row"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4,
                     row_strides={"i": 4, "j": 2})
    with pytest.raises(LayoutError, match=r"factor of lane index 'j' must be from 1 to its "
                                          r"extent 3, not 5"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=8, lane_indices=[("j", 5)],
                     row_strides={"i": 1})
    with pytest.raises(LayoutError, match=r"index 'j' is entirely on the lanes and takes no row"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4, lane_indices=["j"],
                     row_strides={"i": 1, "j": 1})
    with pytest.raises(LayoutError, match=r"row stride of 'i' must be a positive integer, not 0"):
        TensorLayout(name="T", indices=("i", "j"), sizes=(2, 3), lanes=4, lane_indices=["j"],
                     row_strides={"i": 0})
    with pytest.raises(LayoutError, match=r"T: indices must be distinct"):
        TensorLayout(name="T", indices=("i", "i"), sizes=(2, 3), lanes=4)
    layout = natural_layout("T", "ij", (2, 3), lanes=4)
    with pytest.raises(LayoutError, match=r"array of shape \(3, 2\) does not match"):
        layout.pack(np.zeros((3, 2), dtype=int))


def test_utilization_table_checks_against_the_model():
    # The table of docs/mapper.md runs each program on the model and raises on any disagreement.
    from fetta.search.mapper import EXAMPLES, utilization_table
    small = [e for e in EXAMPLES if e[0].startswith(("small TT", "odd sizes"))]
    table = utilization_table(AcceleratorConfig(depth=8192), small)
    assert len(table.splitlines()) == 2 + len(small)


def test_map_subcommand(capsys):
    import argparse
    from fetta.search.mapper import register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["map", "ik,kj->ij", "--sizes", "i=37,k=23,j=19", "--asm"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("A[i,k] region 0 @0: lanes ")
    assert "utilization" in out and "step levels=" in out
    args = parser.parse_args(["map", "ik,kj->ij", "--sizes", "i=37,k=23"])
    with pytest.raises(MapperError, match=r"no size given for indices \['j'\]"):
        args.run(args)
    args = parser.parse_args(["map", "ik->ij"])
    with pytest.raises(MapperError, match=r"expression must look like 'ik,kj->ij', not 'ik->ij'"):
        args.run(args)


def test_chained_programs_and_stochastic_rounding(seed):
    # A contraction then a re-layout of its result, in one program with disjoint route entries.
    config = AcceleratorConfig(lanes=8, prog_depth=1024)
    a, b, c = choose_layouts(("ik", (24, 8)), ("kj", (8, 5)), ("ij", (24, 5)), config)
    first = map_contraction(a, b, c, config, shift=9, rounding="stochastic")
    dst = natural_layout("D", "ji", (5, 24), lanes=8, region=3, lane_indices=[("i", 2)])
    second = map_relayout(c, dst, config, dist_base=len(first.dist_routes),
                          red_base=len(first.red_routes))
    assert {e for e, _ in second.dist_routes}.isdisjoint(e for e, _ in first.dist_routes)
    rng = np.random.default_rng(seed)
    A, B = rng.integers(-128, 128, a.shape), rng.integers(-128, 128, b.shape)
    machine = Machine(config)
    machine.seed = int(rng.integers(1 << 32))
    for layout, array in ((a, A), (b, B)):
        machine.write_rows(layout.region, layout.base, layout.pack(array))
    machine.load_program(first.image(halt=False) + second.image())
    for program in (first, second):
        for entry, bits in program.dist_routes:
            machine.set_dist_route(entry, bits)
        for entry, bits in program.red_routes:
            machine.set_red_route(entry, bits)
    result = machine.run()
    assert not result.error
    assert result.counters.cycles == first.cycles + second.cycles + second.halt_cycles
    got = dst.unpack(machine.read_rows(dst.region, dst.base, dst.rows_needed)).T
    # Stochastic rounding gives the floor or the next integer of the exact quotient (saturated),
    # not always the nearest (each of 120 values differs with odds about 1/4: all equal, 1e-15).
    low = np.clip(np.floor_divide(A @ B, 512), -128, 127)
    high = np.clip(np.floor_divide(A @ B, 512) + 1, -128, 127)
    assert np.all((got == low) | (got == high))
    assert np.any(got != np.clip(np.rint((A @ B) / 512), -128, 127))
