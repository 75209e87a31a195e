"""Routes for the reduction network (:mod:`fetta.hw.reduction`): which switch sums what, and where.

A *pattern* maps output lanes to the disjoint sets of input lanes whose sum each must carry
(``{out_lane: {in_lane, ...}}``); input lanes in no set are don't-care inputs and output lanes not
in the pattern are don't-care outputs.

The router works on coordinates (:func:`fetta.hw.reduction.port_coordinates`). The first ``log2 L``
stages pair values along coordinate bits ``0, 1, ..., log2 L - 1``, so the lanes of a group can be
summed there along a binary tree whose partial sums all sit at the same offset inside their aligned
blocks. A route is then fully described by one coordinate ``m[G]`` per group: the position of its
sum after stage ``log2 L - 1``; bit ``i`` of ``m[G]`` is the side its partial sums take at stage
``i``, and the remaining stages move the sum from ``m[G]`` to its output's coordinate, fixing one
bit per stage. A choice of ``m`` is valid if no two partial sums (or sums) ever share a wire. The
router chooses ``m`` bit group by bit group, following the recursive structure of the network
(outer bits first: their stages enclose the stages of the inner bits, and groups that differ in an
outer bit never meet again), with a backtracking search and most-constrained-first ordering.

A group may also be finished in the later stages: it is split into two items, each summed in the
first half, whose sums meet when the later stages visit some bit ``d`` again (their coordinates
must then differ in bit ``d`` only); see :func:`_split_choices` for the order in which splits are
tried. At 8 lanes this finds every reachable pattern of pairs (exhaustive comparison with
:func:`reachable_placements`, docs/reduction.md). For permutations the search is exact at any size.

Every route is checked with :func:`fetta.hw.reduction.symbolic_outputs` before it is returned.
When no route is found the router raises :exc:`Unroutable`, and :func:`plan_reduction` regroups the
inputs (a permutation for the upstream distribution network) so that a route exists.
"""

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from fetta.hw.reduction import (SwitchMode, pack_config, port_coordinates, stage_count, stage_dims,
                                symbolic_outputs)

__all__ = ["Unroutable", "ReductionRoute", "ReductionPlan", "route_reduction", "plan_reduction",
           "check_route", "reachable_placements"]

_BUDGET = 200_000


class Unroutable(ValueError):
    """A pattern that the router cannot route through the reduction network in one pass.

    Attributes
    ----------
    groups : dict
        The pattern, ``{out_lane: frozenset(in_lanes)}``.
    lanes : int
        Lane count of the network.
    """

    def __init__(self, groups, lanes, reason):
        self.groups = groups
        self.lanes = lanes
        shown = {q: sorted(g) for q, g in sorted(groups.items())}
        super().__init__(
            f"cannot route pattern {shown} on {lanes} lanes in one pass: {reason}; use "
            f"plan_reduction() to regroup the inputs through the distribution network first")


@dataclass(frozen=True)
class ReductionRoute:
    """Switch settings for one pattern.

    Attributes
    ----------
    lanes : int
    groups : dict
        The pattern routed, ``{out_lane: frozenset(in_lanes)}``.
    modes : tuple of tuple of SwitchMode
        ``modes[s][j]``: mode of switch ``j`` of stage ``s``.
    """
    lanes: int
    groups: dict
    modes: tuple

    @property
    def config(self):
        """The configuration as the integer value of ``ReductionNetwork.config_layout``."""
        return pack_config(self.modes, self.lanes)


@dataclass(frozen=True)
class ReductionPlan:
    """A way to reduce a pattern in one pass through distribution and reduction networks.

    Attributes
    ----------
    permutation : tuple of int or None
        ``None`` if the pattern routes directly. Otherwise the upstream network must deliver
        original lane ``permutation[k]`` on lane ``k`` (``regrouped = original[permutation]``).
    route : ReductionRoute
        The route of the (regrouped) pattern.
    """
    permutation: tuple
    route: ReductionRoute


def _normalize(groups, lanes):
    if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 4 or lanes & (lanes - 1):
        raise ValueError(f"Lane count must be a power of two of at least 4, not {lanes!r}")
    if not isinstance(groups, dict):
        raise TypeError(f"Groups must be a dict of output lane to input lanes, not {groups!r}")
    out, seen = {}, {}
    for q, members in groups.items():
        if not isinstance(q, (int, np.integer)) or not 0 <= q < lanes:
            raise ValueError(f"Output lane must be an integer from 0 to {lanes - 1}, not {q!r}")
        members = frozenset(int(x) for x in members)
        if not members:
            raise ValueError(f"Group of output lane {q} must not be empty")
        for x in members:
            if not 0 <= x < lanes:
                raise ValueError(f"Input lane must be an integer from 0 to {lanes - 1}, not {x!r}")
            if x in seen:
                raise ValueError(f"Input lane {x} is in the groups of output lanes {seen[x]} "
                                 f"and {q}; groups must be disjoint")
            seen[x] = q
        out[int(q)] = members
    return out


def _levels(dims):
    """Split the bits into decision levels following the network's nesting (outer bits first)."""
    seq = list(dims)
    levels = []
    while seq:
        for k in range(1, len(seq) + 1):
            front, back = set(seq[:k]), set(seq[-k:])
            middle = seq[k:len(seq) - k] if 2 * k <= len(seq) else []
            if front == back and not front & set(middle):
                levels.append(sorted(front))
                seq = middle
                break
            if 2 * k >= len(seq):
                levels.extend([b] for b in sorted(set(seq)))
                seq = []
                break
    return levels


@functools.lru_cache(maxsize=None)
def _topology(lanes):
    coords = port_coordinates(lanes)
    inverse = [{c: p for p, c in enumerate(stage)} for stage in coords]
    dims = stage_dims(lanes)
    return coords, inverse, dims, _levels(dims)


def _split_bit(members):
    """The highest coordinate bit in which the lanes of a group differ (-1 for a single lane)."""
    first = min(members)
    diff = 0
    for x in members:
        diff |= x ^ first
    return diff.bit_length() - 1


class _Problem:
    """The search for one pattern.

    The unit of the search is an *item*: a set of lanes summed in the butterfly half, whose sum
    then travels to an output. A group is one item, or, if ``split`` maps its output lane to a bit
    ``d``, two items (its lanes with bit ``h`` clear and set, ``h`` its highest differing bit) whose
    sums meet and are added at the second visit of bit ``d``: the *secondary* item ends there, the
    *primary* one carries on.
    """

    def __init__(self, groups, lanes, split=None, counter=None):
        self.lanes = lanes
        self.n = n = lanes.bit_length() - 1
        self.coords, self.inverse, self.dims, self.levels = _topology(lanes)
        self.second = self.dims[n:]
        self.keys = list(groups)  # output lanes, one per group
        # Bits that are visited once (only L = 4: bit 1) are fixed to the output's bit.
        once = [d for d in range(n) if self.dims.count(d) == 1]
        self.forced = sum(1 << d for d in once)
        self.members, self.y, self.link = [], [], []
        for q in self.keys:
            y = self.coords[-1][q]
            h = _split_bit(groups[q]) if split and q in split else -1
            if h < 0 or self.forced >> split[q] & 1:
                self.members.append(groups[q])
                self.y.append(y)
                self.link.append(None)
                continue
            d = split[q]
            t = self.second.index(d)
            closed = sum(1 << d for d in self.second[:t])
            same = ~(closed | self.forced | (1 << d)) & (lanes - 1)  # open bits other than d
            primary = len(self.members)
            for part, role in ((frozenset(x for x in groups[q] if not x >> h & 1), "primary"),
                               (frozenset(x for x in groups[q] if x >> h & 1), "secondary")):
                self.members.append(part)
                self.y.append(y)
                partner = primary + 1 if role == "primary" else primary
                self.link.append((role, partner, t, d, same))
        level_of = {b: k for k, bits in enumerate(self.levels) for b in bits}
        # Boundaries: (level, kind, argument). 'F', i: before stage i (i = 1..n) of the first half,
        # partial sums of blocks of 2**i lanes at offset m mod 2**i. 'B', mask: after a stage of the
        # second half, bits in `mask` already equal the output's, the others are still m's.
        self.boundaries = [[] for _ in self.levels]
        for i in range(1, n + 1):
            self.boundaries[max(level_of[b] for b in range(i))].append(("F", i))
        closed, t = 0, 0
        for d in self.second[:-1]:
            closed |= 1 << d
            open_bits = [b for b in range(n) if not (closed | self.forced) >> b & 1]
            if open_bits:
                self.boundaries[max(level_of[b] for b in open_bits)].append(("B", closed, t))
            t += 1
        self.blocks = [{i: sorted({x >> i for x in g}) for i in range(1, n + 1)} for g in self.members]
        self.counter = counter if counter is not None else [0]

    def level_values(self, k, g):
        mask = sum(1 << b for b in self.levels[k])
        values = []
        for v in range(1 << len(self.levels[k])):
            bits = 0
            for t, b in enumerate(self.levels[k]):
                bits |= ((v >> t) & 1) << b
            if (bits ^ self.y[g]) & self.forced & mask:
                continue
            values.append(bits)
        return values

    def claims(self, k, g, m):
        """The (boundary, wire) pairs group ``g`` occupies at level ``k`` if its coordinate is ``m``."""
        out = []
        link = self.link[g]
        for t, (kind, arg, *stage) in enumerate(self.boundaries[k]):
            if kind == "F":
                low = m & ((1 << arg) - 1)
                out.extend((t, (a << arg) | low) for a in self.blocks[g][arg])
            elif link is None or link[0] == "primary" or stage[0] < link[2]:
                # A secondary item leaves the network when it is added to its primary.
                out.append((t, (self.y[g] & arg) | (m & ~arg)))
        return out

    def linked_ok(self, k, g, v, chosen):
        """Whether level-``k`` bits ``v`` of item ``g`` let it meet its partner (if chosen)."""
        link = self.link[g]
        if link is None or link[1] not in chosen:
            return True
        _role, partner, _t, d, same = link
        level = sum(1 << b for b in self.levels[k])
        diff = v ^ chosen[partner]
        if diff & same & level:
            return False
        return not (level >> d & 1) or bool(diff >> d & 1)

    def solve(self):
        m = [0] * len(self.members)
        if self._solve_level(0, list(range(len(self.members))), m):
            return m
        return None

    def _solve_level(self, k, gs, m):
        if k == len(self.levels) or not gs:
            return True
        below = sum(1 << b for bits in self.levels[:k] for b in bits)
        mask_so_far = below | sum(1 << b for b in self.levels[k])
        for g in gs:  # bits of this level and deeper ones may hold a failed attempt's values
            m[g] &= below
        for assignment in self._assign(k, gs, m):
            for g, v in assignment.items():
                m[g] = (m[g] & below) | v
            parts = {}
            for g in gs:
                parts.setdefault(m[g] & mask_so_far, []).append(g)
            if all(self._solve_level(k + 1, part, m) for part in parts.values()):
                return True
        return False

    def _assign(self, k, gs, m):
        """Yield assignments of level ``k`` bits to groups ``gs`` with no shared wire."""
        taken = {}
        chosen = {}
        options = {g: [(v, self.claims(k, g, m[g] | v)) for v in self.level_values(k, g)] for g in gs}

        def free(claims):
            return all(c not in taken for c in claims)

        def dfs():
            self.counter[0] += 1
            if self.counter[0] > _BUDGET:
                raise _BudgetExceeded
            if len(chosen) == len(gs):
                yield dict(chosen)
                return
            best, best_opts = None, None
            for g in gs:
                if g in chosen:
                    continue
                opts = [(v, c) for v, c in options[g] if free(c) and self.linked_ok(k, g, v, chosen)]
                if best is None or len(opts) < len(best_opts):
                    best, best_opts = g, opts
                    if len(opts) <= 1:
                        break
            for v, c in best_opts:
                chosen[best] = v
                for claim in c:
                    taken[claim] = best
                yield from dfs()
                for claim in c:
                    del taken[claim]
                del chosen[best]

        yield from dfs()

    def modes(self, m):
        lanes, n = self.lanes, self.n
        inv = self.inverse
        modes = [[None] * (lanes // 2) for _ in range(len(self.dims))]

        def put(s, src, dst, add):
            p_src, p_dst = inv[s][src], inv[s][dst]
            j = p_src // 2
            if add:
                mode = SwitchMode.ADD_TO_LO if p_dst % 2 == 0 else SwitchMode.ADD_TO_HI
            else:
                mode = SwitchMode.PASS if p_src == p_dst else SwitchMode.SWAP
            assert modes[s][j] in (None, mode), (s, j, modes[s][j], mode)
            modes[s][j] = mode

        for i in range(n):
            for g, members in enumerate(self.members):
                blocks = sorted({x >> i for x in members})
                bit = 1 << i
                for a in blocks:
                    src = (a << i) | (m[g] & (bit - 1))
                    dst = (src & ~bit) | (m[g] & bit)
                    put(i, src, dst, (a ^ 1) in blocks)
        closed = 0
        for t, d in enumerate(self.second):
            for g in range(len(self.members)):
                link = self.link[g]
                if link is not None and link[0] == "secondary" and t >= link[2]:
                    continue  # added to its primary at stage n + link[2]
                src = (self.y[g] & closed) | (m[g] & ~closed)
                dst = (src & ~(1 << d)) | (self.y[g] & (1 << d))
                put(n + t, src, dst, link is not None and t == link[2])
            closed |= 1 << d
        return tuple(tuple(SwitchMode.PASS if x is None else x for x in row) for row in modes)


class _BudgetExceeded(Exception):
    pass


def check_route(route, groups=None):
    """Raise :exc:`AssertionError` unless ``route`` realizes ``groups`` (default: its own pattern)."""
    groups = route.groups if groups is None else _normalize(groups, route.lanes)
    outputs = symbolic_outputs(route.modes, route.lanes)
    for q, members in groups.items():
        if outputs[q] != members:
            raise AssertionError(f"output lane {q} carries {outputs[q]!r}, not {sorted(members)!r}")


def route_reduction(groups, lanes):
    """Return a :class:`ReductionRoute` that sums each group onto its output lane.

    Parameters
    ----------
    groups : dict
        ``{out_lane: iterable of in_lanes}``, disjoint non-empty sets.
    lanes : int
        Lane count of the network.

    Raises
    ------
    ValueError
        For a malformed pattern (lanes out of range, groups not disjoint or empty).
    Unroutable
        If no route is found (or the search exceeds its budget of 200,000 nodes).
        :func:`plan_reduction` then regroups the inputs.
    """
    groups = _normalize(groups, lanes)
    stage_count(lanes)
    counter = [0]  # search nodes, shared by all attempts
    try:
        for split in _split_choices(groups, lanes):
            problem = _Problem(groups, lanes, split, counter)
            m = problem.solve()
            if m is not None:
                route = ReductionRoute(lanes=lanes, groups=groups, modes=problem.modes(m))
                check_route(route)
                return route
    except _BudgetExceeded:
        raise Unroutable(groups, lanes, f"search budget of {_BUDGET} nodes exhausted") from None
    raise Unroutable(groups, lanes, "no placement of the partial sums avoids a shared wire")


def _split_choices(groups, lanes):
    """Which groups to finish in the second half, and at which bit's second visit: none first;
    then at the last stage, where the two halves need only differ in that stage's bit (every
    subset of groups when there are at most four candidates, else each alone and all); then at
    the second visit of each group's highest differing bit."""
    candidates = sorted(q for q, g in groups.items() if len(g) > 1)
    last = stage_dims(lanes)[-1]
    yield {}
    if len(candidates) <= 4:
        subsets = [c for size in range(1, len(candidates) + 1)
                   for c in itertools.combinations(candidates, size)]
    else:
        subsets = [(q,) for q in candidates] + [tuple(candidates)]
    for subset in subsets:
        yield {q: last for q in subset}
    yield {q: _split_bit(groups[q]) for q in candidates}


def _aligned_regrouping(groups, lanes):
    """Place each group on an aligned block of lanes (largest first), or return ``None``."""
    order = sorted(groups, key=lambda q: (-len(groups[q]), q))
    sizes = {q: 1 << (len(groups[q]) - 1).bit_length() for q in order}
    if sum(sizes.values()) > lanes:
        return None
    base, placed = 0, {}
    for q in order:  # sizes decrease, so every base is aligned to its block
        placed[q] = range(base, base + len(groups[q]))
        base += sizes[q]
    return placed


def _packed_regrouping(groups, lanes):
    """Place the groups on consecutive lanes, largest first."""
    order = sorted(groups, key=lambda q: (-len(groups[q]), q))
    base, placed = 0, {}
    for q in order:
        placed[q] = range(base, base + len(groups[q]))
        base += len(groups[q])
    return placed


def _chunked_regrouping(groups, lanes):
    """Split each group into power-of-two chunks (its size in binary) and place the chunks on
    aligned blocks, largest first; the chunks of a group are then summed in the later stages."""
    chunks = []
    for q in sorted(groups):
        size = len(groups[q])
        chunks.extend((1 << b, q) for b in range(size.bit_length()) if size >> b & 1)
    chunks.sort(key=lambda c: (-c[0], c[1]))
    base, placed = 0, {q: [] for q in groups}
    for size, q in chunks:  # sizes decrease, so every base is aligned to its block
        placed[q].extend(range(base, base + size))
        base += size
    return placed


def _random_regrouping(seed):
    def regroup(groups, lanes):
        rng = np.random.default_rng(seed)
        order = [int(v) for v in rng.permutation(lanes)]
        placed, base = {}, 0
        for q in sorted(groups):
            placed[q] = order[base:base + len(groups[q])]
            base += len(groups[q])
        return placed
    return regroup


_REGROUPINGS = ((_aligned_regrouping, _chunked_regrouping, _packed_regrouping)
                + tuple(_random_regrouping(seed) for seed in range(32)))


def plan_reduction(groups, lanes):
    """Return a :class:`ReductionPlan`: a direct route, or a regrouping of the inputs and a route.

    The regrouping is a permutation of the lanes for the distribution network upstream, which
    routes any permutation; the output placement is kept. Candidates, in order: each group on an
    aligned block of lanes (when the sizes rounded up to powers of two fit), each group split into
    power-of-two chunks on aligned blocks, groups packed on consecutive lanes, then 32 seeded
    random placements.

    Raises
    ------
    Unroutable
        If neither the pattern nor any regrouping routes (not observed; see docs/reduction.md).
    """
    groups = _normalize(groups, lanes)
    try:
        return ReductionPlan(permutation=None, route=route_reduction(groups, lanes))
    except Unroutable:
        pass
    for regroup in _REGROUPINGS:
        placed = regroup(groups, lanes)
        if placed is None:
            continue
        perm = [None] * lanes
        for q, new_lanes in placed.items():
            for k, x in zip(new_lanes, sorted(groups[q])):
                perm[k] = x
        spare = iter(sorted(set(range(lanes)) - {x for x in perm if x is not None}))
        perm = tuple(next(spare) if x is None else x for x in perm)
        new_groups = {q: frozenset(placed[q]) for q in groups}
        try:
            route = route_reduction(new_groups, lanes)
        except Unroutable:
            continue
        return ReductionPlan(permutation=perm, route=route)
    raise Unroutable(groups, lanes, "no regrouping of the inputs routes either")


def reachable_placements(lanes, partition, *, stages=None):
    """Exhaustively compute where the sums of a partition of the inputs can go in one pass.

    Propagates the set of reachable wire states stage by stage, switch by switch, with
    deduplication (``lanes <= 8``). A wire holds the set of input lanes it sums; the non-sum output
    of an add is treated as junk, which loses no pattern of disjoint groups (an input that reaches
    its group's output along one path never needs a second copy). Only parts of the same group are
    added, and a state is dropped as soon as two parts of a group can no longer meet in the stages
    left (their coordinates differ in a bit that no remaining stage visits).

    Parameters
    ----------
    lanes : int
        4 or 8.
    partition : sequence of iterables
        Disjoint groups of input lanes covering every lane.
    stages : int, optional
        Use only the first ``stages`` stages (default: all).

    Returns
    -------
    set of tuple
        Each reachable placement as a tuple: ``placement[k]`` is the output lane of group ``k``.
    """
    from fetta.hw.reduction import _reverse_low, wiring_bits
    if lanes not in (4, 8):
        raise ValueError(f"Exhaustive search is limited to 4 or 8 lanes, not {lanes!r}")
    masks = [sum(1 << x for x in g) for g in partition]
    if sum(masks) != (1 << lanes) - 1 or sum(bin(v).count("1") for v in masks) != lanes:
        raise ValueError(f"Groups must partition the {lanes} lanes, not {partition!r}")
    stages = stage_count(lanes) if stages is None else stages
    gs = wiring_bits(lanes)
    coords = port_coordinates(lanes)
    dims = stage_dims(lanes)
    group_of = np.full(256, -1, dtype=np.int64)
    for k, mask in enumerate(masks):
        sub = mask
        while sub:  # every non-empty subset of the group belongs to it
            group_of[sub] = k
            sub = (sub - 1) & mask
    # A state is one uint64: byte p holds the bitmask of inputs summed on port p (0: junk).
    states = np.array([sum(1 << (9 * k) for k in range(lanes))], dtype=np.uint64)
    byte = np.uint64(0xFF)

    def field(values, p):
        return ((values >> np.uint64(8 * p)) & byte).astype(np.int64)

    for s in range(stages):
        for j in range(lanes // 2):
            lo_shift, hi_shift = np.uint64(16 * j), np.uint64(16 * j + 8)
            lo, hi = field(states, 2 * j), field(states, 2 * j + 1)
            rest = states & ~((byte << lo_shift) | (byte << hi_shift))
            lo, hi = lo.astype(np.uint64), hi.astype(np.uint64)
            swapped = rest | (hi << lo_shift) | (lo << hi_shift)
            ok = (lo != 0) & (hi != 0) & (group_of[(lo | hi).astype(np.int64)] >= 0)
            total = (lo | hi)[ok]
            to_lo = rest[ok] | (total << lo_shift)
            to_hi = rest[ok] | (total << hi_shift)
            states = np.unique(np.concatenate([states, swapped, to_lo, to_hi]))
        if s < stages - 1:
            moved = np.zeros_like(states)
            for p in range(lanes):
                moved |= field(states, _reverse_low(p, gs[s])).astype(np.uint64) << np.uint64(8 * p)
            states = moved
        # Prune: the parts of a group must agree on every bit that no later stage visits.
        fixed = ~sum(1 << d for d in set(dims[s + 1:stages])) & (lanes - 1)
        keep = np.ones(len(states), dtype=bool)
        where = coords[min(s + 1, len(coords) - 1)] if s < stages - 1 else coords[s]
        for k in range(len(masks)):
            lo_c = np.full(len(states), -1, dtype=np.int64)
            for p in range(lanes):
                holds = group_of[field(states, p)] == k
                c = where[p] & fixed
                keep &= ~holds | (lo_c < 0) | (lo_c == c)
                lo_c = np.where(holds & (lo_c < 0), c, lo_c)
        states = states[keep]
    placements = set()
    for row in np.stack([field(states, p) for p in range(lanes)], axis=1):
        out = [None] * len(masks)
        for p, v in enumerate(row):
            for k, mask in enumerate(masks):
                if v == mask:
                    out[k] = p
        if None not in out:
            placements.add(tuple(out))
    return placements
