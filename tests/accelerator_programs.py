"""Hand-written microcode programs for the accelerator, with their expected results from numpy.

Each builder returns a :class:`Case`: the program, the route tables, the initial scratchpad rows,
and what must come out (rows computed here with numpy from the mathematics of the contraction and
the documented requantization, never by the model), plus the cycle count from the documented
timing and the program's own loop structure. The model tests, the Amaranth-simulator tests and the
cocotb bench all run these cases.
"""

import dataclasses

import numpy as np

from fetta.hw import isa
from fetta.hw.accelerator import Datapath, Timing
from fetta.hw.distribution import pack_config as pack_dist
from fetta.hw.isa import Cause
from fetta.search.benes_router import replicate_pattern, route_multicast, route_permutation
from fetta.search.reduction_router import route_reduction
from fetta.sim.golden import PRNG, requantize

__all__ = ["Case", "CASES", "build", "load_model"]


@dataclasses.dataclass
class Case:
    name: str
    program: list
    dist_routes: dict
    red_routes: dict
    init: list              # (region, row, int array (rows, L))
    expect: list            # (region, row, int array (rows, L))
    cycles: int
    macs: int
    cause: Cause = Cause.NONE
    err_pc: int = 0
    seed: int = 0

    def to_json(self):
        """A JSON-able form (for the cocotb bench)."""
        return {
            "name": self.name, "program": [int(w) for w in self.program],
            "dist_routes": {str(k): int(v) for k, v in self.dist_routes.items()},
            "red_routes": {str(k): int(v) for k, v in self.red_routes.items()},
            "init": [(r, a, np.asarray(x).tolist()) for r, a, x in self.init],
            "expect": [(r, a, np.asarray(x).tolist()) for r, a, x in self.expect],
            "cycles": self.cycles, "macs": self.macs, "cause": self.cause.value,
            "err_pc": self.err_pc, "seed": self.seed,
        }


def _identity_red(config, dp, keep=None, write=None):
    L = config.lanes
    route = route_reduction({p: {p} for p in range(L)}, L)
    return dp.pack_red_entry(route.config, keep=range(L) if keep is None else keep,
                             write=range(L) if write is None else write)


def _rand(rng, config, shape, terms=1):
    """Random words; with ``terms``, small enough that a sum of that many products cannot
    saturate the accumulator (the error cases saturate on purpose)."""
    hi = config.word_max
    while terms * hi * hi > config.acc_max:
        hi -= 1
    return rng.integers(max(config.word_min, -hi), hi + 1, shape)


def matmul_grouped(config, rng):
    """C[m, n] = sum_k A[m, k] B[k, n]: k split over g lanes (spatial, summed by the reduction
    network) and over rows (temporal), n0 over L/g lanes; A multicast by replication."""
    L, dp, t = config.lanes, Datapath(config), Timing.from_config(config)
    g = 4 if L >= 8 else 2
    ng = L // g
    M, KB, NB = 3, 5, 2
    K, N = KB * g, NB * ng
    A = _rand(rng, config, (M, K), KB)
    B = _rand(rng, config, (K, N), KB)
    a_rows = np.zeros((M * KB, L), dtype=np.int64)
    for m in range(M):
        for kb in range(KB):
            a_rows[m * KB + kb, :g] = A[m, kb * g:(kb + 1) * g]
    b_rows = np.zeros((KB * NB, L), dtype=np.int64)
    for kb in range(KB):
        for nb in range(NB):
            for n0 in range(ng):
                for k0 in range(g):
                    b_rows[kb * NB + nb, n0 * g + k0] = B[kb * g + k0, nb * ng + n0]
    shift = 5
    sums = A @ B
    q, _ = requantize(sums, shift, config.width, "nearest_even", acc_width=config.sum_width)
    c_rows = np.zeros((M * NB, L), dtype=np.int64)
    for m in range(M):
        for nb in range(NB):
            c_rows[m * NB + nb, :ng] = q[m, nb * ng:(nb + 1) * ng]
    red = route_reduction({n0: {n0 * g + k0 for k0 in range(g)} for n0 in range(ng)}, L)
    program = isa.assemble(f"""
        base region_a=0 region_b=1 region_c=2 base_a=0 base_b=0 base_c=0
        loop level=0 count={KB} stride_a=1 stride_b={NB} stride_c=0
        loop level=1 count={NB} stride_a=0 stride_b=1 stride_c=1
        loop level=2 count={M} stride_a={KB} stride_b=0 stride_c={NB}
        step levels=3 red=1 route_a=1 route_b=0 route_c=1 shift={shift} rounding=even
        halt
    """, config)
    beats = M * NB * KB
    return Case(
        name="matmul_grouped", program=program,
        dist_routes={0: pack_dist(route_permutation(list(range(L))), L),
                     1: pack_dist(route_multicast(replicate_pattern(L, g)), L)},
        red_routes={1: dp.pack_red_entry(red.config, keep=range(ng), write=range(L))},
        init=[(0, 0, a_rows), (1, 0, b_rows)], expect=[(2, 0, c_rows)],
        cycles=5 * t.instr + t.step_cycles(beats), macs=beats * L)


def batched_transposed(config, rng):
    """C[b1, b2, m, n] = sum_k A[b1, b2, m, k] B[b1, b2, k, n], written with n outermost and the
    batch indices swapped (rows n, b2, b1); one step per n broadcasts word n of B's rows onto
    every lane. Stochastic rounding."""
    L, dp, t = config.lanes, Datapath(config), Timing.from_config(config)
    B1, B2, K = 2, 3, 4
    M, N = L - 1, min(3, L)
    A = _rand(rng, config, (B1, B2, M, K), K)
    B = _rand(rng, config, (B1, B2, K, N), K)
    a_rows = np.zeros((B1 * B2 * K, L), dtype=np.int64)
    b_rows = np.zeros((B1 * B2 * K, L), dtype=np.int64)
    for b1 in range(B1):
        for b2 in range(B2):
            for k in range(K):
                row = (b1 * B2 + b2) * K + k
                a_rows[row, :M] = A[b1, b2, :, k]
                b_rows[row, :N] = B[b1, b2, k, :]
    sums = np.einsum("xymk,xykn->xymn", A, B)
    shift, seed = 3, 0x1234567
    prng = PRNG(seed, L)
    c_rows = np.zeros((N * B2 * B1, L), dtype=np.int64)
    # Rows are written in program order: n, then b1 (outer loop), then b2; the generators step
    # once per row.
    for n in range(N):
        for b1 in range(B1):
            for b2 in range(B2):
                acc = np.zeros(L, dtype=np.int64)
                acc[:M] = sums[b1, b2, :, n]
                q, _ = requantize(acc[None, :], shift, config.width, "stochastic", prng,
                                  acc_width=config.sum_width)
                c_rows[(n * B2 + b2) * B1 + b1, :M] = q[0, :M]
    lines = [
        "base region_a=1 region_b=3 region_c=0 base_a=0 base_b=0 base_c=0",
        f"loop level=0 count={K} stride_a=1 stride_b=1 stride_c=0",
        f"loop level=1 count={B2} stride_a={K} stride_b={K} stride_c={B1}",
        f"loop level=2 count={B1} stride_a={B2 * K} stride_b={B2 * K} stride_c=1",
    ]
    for n in range(N):
        lines.append(f"base region_a=1 region_b=3 region_c=0 base_a=0 base_b=0 base_c={n * B2 * B1}")
        lines.append(f"step levels=3 red=1 route_a=0 route_b={2 + n} route_c=0 shift={shift} "
                     f"rounding=stochastic")
    lines.append("halt")
    beats = B1 * B2 * K
    return Case(
        name="batched_transposed", program=isa.assemble("\n".join(lines), config),
        dist_routes={0: pack_dist(route_permutation(list(range(L))), L),
                     **{2 + n: pack_dist(route_multicast([n] * L), L) for n in range(N)}},
        red_routes={0: _identity_red(config, dp, keep=range(M))},
        init=[(1, 0, a_rows), (3, 0, b_rows)], expect=[(0, 0, c_rows)],
        cycles=(5 + N) * t.instr + N * t.step_cycles(beats), macs=N * beats * L, seed=seed)


def copy_relayout(config, rng):
    """Two copy passes (B = 1) through the networks: rows in reverse order (negative stride), lanes
    permuted; the first writes the low half of each row, the second the high half with some lanes
    zeroed; a third pass leaves lane 0 untouched."""
    L, dp, t = config.lanes, Datapath(config), Timing.from_config(config)
    R = 6
    A = _rand(rng, config, (R, L))
    perm = rng.permutation(L)
    old = _rand(rng, config, (R, L))
    low, high = range(L // 2), range(L // 2, L)
    keep_high = [l for l in high if l % 3 != 1]
    out = old.copy()
    for r in range(R):
        src = A[R - 1 - r, perm]
        out[r, :L // 2] = src[:L // 2]
        out[r, L // 2:] = [src[l] if l in keep_high else 0 for l in high]
    program = isa.assemble(f"""
        base region_a=2 region_b=0 region_c=1 base_a={R - 1} base_b=0 base_c=0
        loop level=0 count={R} stride_a=-1 stride_b=0 stride_c=1
        step levels=1 red=0 route_a=3 route_b=0 route_c=1 shift=0 b_one=1
        step levels=1 red=0 route_a=3 route_b=0 route_c=2 shift=0 b_one=1
        nop
        halt
    """, config)
    return Case(
        name="copy_relayout", program=program,
        dist_routes={3: pack_dist(route_permutation(perm.tolist()), L)},
        red_routes={1: _identity_red(config, dp, keep=low, write=low),
                    2: _identity_red(config, dp, keep=keep_high, write=high)},
        init=[(2, 0, A), (1, 0, old)], expect=[(1, 0, out)],
        cycles=4 * t.instr + 2 * t.step_cycles(R), macs=0)


def illegal_opcode(config, rng):
    """A LOOP, then an undefined opcode: ILLEGAL at its address; nothing else runs."""
    t = Timing.from_config(config)
    program = isa.assemble("loop level=0 count=2\nnop", config) + [0xF | 0x123 << 4]
    program += isa.assemble("halt", config)
    return Case(name="illegal_opcode", program=program, dist_routes={}, red_routes={}, init=[],
                expect=[], cycles=3 * t.instr, macs=0, cause=Cause.ILLEGAL, err_pc=2)


def address_range(config, rng):
    """A step whose last C row lies one past the region: ADDRESS, and nothing is written."""
    L, dp, t = config.lanes, Datapath(config), Timing.from_config(config)
    rows = _rand(rng, config, (4, L))
    program = isa.assemble(f"""
        base region_a=0 region_b=1 region_c=2 base_a=0 base_b=0 base_c={config.depth - 3}
        loop level=0 count=4 stride_a=1 stride_b=1 stride_c=1
        step levels=1 red=0 route_a=0 route_b=0 route_c=0
        halt
    """, config)
    return Case(
        name="address_range", program=program,
        dist_routes={0: pack_dist(route_permutation(list(range(L))), L)},
        red_routes={0: _identity_red(config, dp)},
        init=[(2, config.depth - 4, rows)], expect=[(2, config.depth - 4, rows)],
        cycles=2 * t.instr + t.step_setup, macs=0, cause=Cause.ADDRESS, err_pc=2)


def saturation(config, rng):
    """A sweep of -2**(W-1) * -2**(W-1) products one longer than the accumulator holds: the step
    completes, its row holds saturated values, and the machine stops with SATURATION."""
    L, dp, t = config.lanes, Datapath(config), Timing.from_config(config)
    big = 1 << (2 * config.width - 2)
    beats = config.acc_max // big + 1
    row = np.full((1, L), config.word_min, dtype=np.int64)
    shift = config.acc_width - config.width
    acc = np.full((1, L), config.acc_max, dtype=np.int64)
    q, _ = requantize(acc, shift, config.width, "nearest_even", acc_width=config.sum_width)
    # The count field holds at most 32767: spread the sweep over two levels.
    inner = min(beats, 1 << 14)
    outer = -(-beats // inner)
    program = isa.assemble(f"""
        base region_a=0 region_b=1 region_c=2 base_a=5 base_b=7 base_c=1
        loop level=0 count={inner} stride_a=0 stride_b=0 stride_c=0
        loop level=1 count={outer} stride_a=0 stride_b=0 stride_c=0
        step levels=2 red=2 route_a=0 route_b=0 route_c=0 shift={shift}
        halt
    """, config)
    return Case(
        name="saturation", program=program,
        dist_routes={0: pack_dist(route_permutation(list(range(L))), L)},
        red_routes={0: _identity_red(config, dp)},
        init=[(0, 5, row), (1, 7, row)], expect=[(2, 1, q)],
        cycles=3 * t.instr + t.step_cycles(inner * outer), macs=inner * outer * L,
        cause=Cause.SATURATION, err_pc=3)


CASES = {f.__name__: f for f in (matmul_grouped, batched_transposed, copy_relayout,
                                  illegal_opcode, address_range, saturation)}


def build(name, config, seed):
    """Build case ``name`` for ``config`` with random operands from ``seed``."""
    return CASES[name](config, np.random.default_rng(seed))


def load_model(machine, case):
    """Load ``case`` (program, route entries, initial rows, PRNG seed) into the model ``machine``."""
    machine.load_program(case.program)
    for entry, bits in case.dist_routes.items():
        machine.set_dist_route(entry, bits)
    for entry, bits in case.red_routes.items():
        machine.set_red_route(entry, bits)
    for region, row, values in case.init:
        machine.write_rows(region, row, values)
    machine.seed = case.seed


# Host-side driving, shared by the Amaranth-simulator tests and the cocotb bench: ``bus`` has
# ``async read(byte_address) -> int`` and ``async write(byte_address, value)``.

_MASK = 0xFFFF_FFFF


def _csr(name):
    return isa.CSR[name][0]


async def load_case(bus, config, case):
    dp = Datapath(config)
    base = isa.WINDOWS["PROGRAM"][0]
    for i, w in enumerate(case.program):
        await bus.write(base + 8 * i, w & _MASK)
        await bus.write(base + 8 * i + 4, w >> 32)
    for window, words, table in (("DIST_ROUTES", dp.dist_words, case.dist_routes),
                                 ("RED_ROUTES", dp.red_words, case.red_routes)):
        base = isa.WINDOWS[window][0]
        for entry, bits in table.items():
            for j in range(words):
                await bus.write(base + 4 * (entry * words + j), (bits >> (32 * j)) & _MASK)
    for region, row, values in case.init:
        await write_rows(bus, config, region, row, values)
    await bus.write(_csr("SEED"), case.seed)


def _spad_address(config, region, row, lane):
    return isa.WINDOWS["SCRATCHPAD"][0] + 4 * ((region * config.depth + row) * config.lanes + lane)


async def write_rows(bus, config, region, row, values):
    for r, values_row in enumerate(np.asarray(values)):
        for lane, v in enumerate(values_row):
            await bus.write(_spad_address(config, region, row + r, lane), int(v) & _MASK)


async def read_rows(bus, config, region, row, count):
    out = np.zeros((count, config.lanes), dtype=np.int64)
    for r in range(count):
        for lane in range(config.lanes):
            v = await bus.read(_spad_address(config, region, row + r, lane))
            out[r, lane] = v - (1 << 32) if v >> 31 else v
    return out


async def start_and_wait(bus, *, timeout=1 << 22):
    """START, poll STATUS until DONE; return a dict of the status CSRs and counters."""
    await bus.write(_csr("CTRL"), 1)
    for _ in range(timeout):
        status = await bus.read(_csr("STATUS"))
        if status & 2:
            break
    else:
        raise AssertionError("the accelerator did not finish")
    out = {"status": status}
    for name in ("CAUSE", "ERR_PC", "PC"):
        out[name.lower()] = await bus.read(_csr(name))
    for name in ("CYCLES", "BUSY", "MACS", "STALLS"):
        lo = await bus.read(_csr(f"{name}_LO"))
        hi = await bus.read(_csr(f"{name}_HI"))
        out[name.lower()] = lo | hi << 32
    return out


async def run_and_check(bus, config, case, machine):
    """Run ``case`` on the bus and on ``machine`` (the model, loaded with the case); compare the
    results with the case's expectations and the model's, and the counters with the model's.
    Returns the status dict."""
    result = machine.run()
    got = await start_and_wait(bus)
    assert got["status"] & 2, case.name
    assert bool(got["status"] & 4) == (case.cause != Cause.NONE), (case.name, got)
    assert got["cause"] == case.cause.value == result.cause.value, (case.name, got)
    if case.cause != Cause.NONE:
        assert got["err_pc"] == case.err_pc == result.err_pc, (case.name, got)
    assert bool(got["status"] & 8) == result.qsat, (case.name, got)
    model_counters = (result.counters.cycles, result.counters.busy, result.counters.macs,
                      result.counters.stalls)
    assert (got["cycles"], got["busy"], got["macs"], got["stalls"]) == model_counters, \
        (case.name, got, result.counters)
    assert got["cycles"] == case.cycles and got["macs"] == case.macs, (case.name, got)
    for region, row, values in case.expect:
        rows = await read_rows(bus, config, region, row, len(values))
        np.testing.assert_array_equal(rows, values, err_msg=f"{case.name}: region {region}")
        np.testing.assert_array_equal(rows, machine.read_rows(region, row, len(values)))
    return got


# Random programs: no numpy expectation of their own, they check that the RTL and the model agree
# on arbitrary loop nests, strides, regions, routes, masks, shifts and rounding modes.

def _random_reduction(config, rng):
    from fetta.search.reduction_router import Unroutable
    L = config.lanes
    lanes = rng.permutation(L)[:int(rng.integers(1, L + 1))]
    cuts = np.sort(rng.choice(np.arange(1, len(lanes)), size=min(len(lanes) - 1, int(rng.integers(0, 4))),
                              replace=False)) if len(lanes) > 1 else []
    groups = np.split(lanes, cuts)
    outputs = rng.permutation(L)[:len(groups)]
    try:
        route = route_reduction({int(o): {int(x) for x in g} for o, g in zip(outputs, groups)}, L)
    except Unroutable:
        route = route_reduction({p: {p} for p in range(L)}, L)
    return route.config


def random_case(config, rng, *, window=16, steps=3):
    """A random program of ``steps`` STEPs whose rows stay in ``[0, window)``; compare with the
    model (``expect`` lists the whole window of every region, filled in by the caller)."""
    L, N, dp = config.lanes, config.loop_levels, Datapath(config)
    window = min(window, config.depth)
    lines, dist, red = [], {}, {}
    for s in range(steps):
        levels = int(rng.integers(1, N + 1))
        red_levels = int(rng.integers(0, levels + 1))
        counts = [int(rng.integers(1, 4)) for _ in range(levels)]
        strides = rng.integers(-2, 3, (3, levels))
        bases = []
        for op in range(3):
            lv = range(red_levels, levels) if op == 2 else range(levels)
            ext = [(counts[k] - 1) * int(strides[op, k]) for k in lv]
            lo = sum(min(e, 0) for e in ext)
            hi = sum(max(e, 0) for e in ext)
            if hi - lo >= window:
                strides[op, :] = 0
                lo = hi = 0
            bases.append(int(rng.integers(-lo, window - hi)))
        ra, rb, rc = (int(x) for x in rng.permutation(config.regions)[:3])
        lines.append(f"base region_a={ra} region_b={rb} region_c={rc} base_a={bases[0]} "
                     f"base_b={bases[1]} base_c={bases[2]}")
        for k in range(levels):
            lines.append(f"loop level={k} count={counts[k]} stride_a={strides[0, k]} "
                         f"stride_b={strides[1, k]} stride_c={strides[2, k]}")
        da, db, rr = 2 * s, 2 * s + 1, s
        dist[da] = pack_dist(route_multicast(rng.integers(0, L, L).tolist()), L)
        dist[db] = pack_dist(route_multicast(rng.integers(0, L, L).tolist()), L)
        red[rr] = dp.pack_red_entry(_random_reduction(config, rng), keep=int(rng.integers(1 << L)),
                                    write=int(rng.integers(1 << L)))
        shift = int(rng.integers(0, 2 * config.width))
        rounding = "stochastic" if rng.random() < 0.5 else "even"
        b_one = int(rng.random() < 0.2)
        lines.append(f"step levels={levels} red={red_levels} route_a={da} route_b={db} route_c={rr} "
                     f"shift={shift} rounding={rounding} b_one={b_one}")
    lines.append("halt")
    small = rng.random() < 0.7
    init = [(r, 0, _rand(rng, config, (window, L), 8 if small else 1)) for r in range(config.regions)]
    return Case(name="random", program=isa.assemble("\n".join(lines), config), dist_routes=dist,
                red_routes=red, init=init, expect=[], cycles=-1, macs=-1,
                seed=int(rng.integers(1 << 32)))


async def run_and_compare(bus, config, case, machine, *, window=16):
    """Run ``case`` on the bus and on the model; compare status, counters and every row of the
    window of every region."""
    window = min(window, config.depth)
    result = machine.run()
    got = await start_and_wait(bus)
    assert got["cause"] == result.cause.value, (got, result)
    assert bool(got["status"] & 4) == result.error and bool(got["status"] & 8) == result.qsat
    k = result.counters
    assert (got["cycles"], got["busy"], got["macs"], got["stalls"]) == (k.cycles, k.busy, k.macs, k.stalls)
    if result.error:
        assert got["err_pc"] == result.err_pc
    for region in range(config.regions):
        rows = await read_rows(bus, config, region, 0, window)
        np.testing.assert_array_equal(rows, machine.scratchpad[region, :window], err_msg=f"region {region}")
    return got
