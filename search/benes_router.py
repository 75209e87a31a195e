"""Compile-time routes for the distribution network (:mod:`fetta.hw.distribution`).

A pattern is given as ``sources``: output lane ``o`` takes the word of input lane ``sources[o]``.
Any such mapping routes in one pass:

* :func:`route_permutation` routes a permutation through the final Benes network by the looping
  algorithm (the placement Benes and the copy network pass everything straight);
* :func:`route_multicast` routes any mapping: the copy network makes ``count(i)`` copies of every
  used input ``i`` (a recursive split that never blocks, below), the placement Benes puts each used
  input on the slot the copy network wants it on, and the final Benes permutes the copies onto the
  lanes that want them. Both Benes networks are routed by the looping algorithm.

The copy network (strides ``L/2, ..., 1``) is split by its first stage into two independent halves
of ``L/2`` lanes. Laying the demands end to end over ``[0, L)``, each half takes the demands that
fall into it; at most one source straddles the middle, and it is the only one that needs the first
stage's broadcast. Translating each half's own arrangement by an XOR of lane numbers (an
automorphism of a butterfly) puts the straddler on slot 0 of both halves, so its single input
word broadcasts into both; every other source lies in one half only. By induction every demand
vector summing to ``L`` routes.

:func:`route_broadcast_benes` is a reference search over a single Benes network with broadcast
switches (``2 log2 L - 1`` stages); it shows which multicasts that smaller network cannot route.
"""

from collections import Counter

import numpy as np

from ..hw.distribution import SwitchMode, compose_modes, network_strides, stage_pairs

__all__ = ["route_permutation", "route_multicast", "route_broadcast_benes", "broadcast_benes_strides",
           "replicate_pattern", "expand_pattern", "RouteError"]

_PASS, _SWAP = SwitchMode.PASS.value, SwitchMode.SWAP.value
_B_UP, _B_LOW = SwitchMode.BROADCAST_UPPER.value, SwitchMode.BROADCAST_LOWER.value
_MIRROR = {_PASS: _PASS, _SWAP: _SWAP, _B_UP: _B_LOW, _B_LOW: _B_UP}


class RouteError(ValueError):
    """A pattern that the router does not accept, with the reason."""


def _check_sources(sources, *, permutation):
    try:
        values = [int(v) for v in sources]
    except (TypeError, ValueError):
        raise RouteError(f"Sources must be a sequence of input lanes, not {sources!r}") from None
    lanes = len(values)
    if lanes < 2 or lanes & (lanes - 1):
        raise RouteError(f"The pattern must have a power-of-two number of lanes of at least 2, "
                         f"not {lanes} (pattern {values!r})")
    if any(v != s for v, s in zip(values, sources)) or not all(0 <= v < lanes for v in values):
        raise RouteError(f"Every source must be an input lane from 0 to {lanes - 1}: "
                         f"pattern {list(sources)!r}")
    if permutation and len(set(values)) != lanes:
        twice = sorted(v for v, c in Counter(values).items() if c > 1)
        raise RouteError(f"Pattern {values!r} is not a permutation (inputs {twice} are used more "
                         f"than once); route it with route_multicast")
    return values


# A stage is held as (stride, modes by lane) while routing: modes[p] is the mode of the switch
# whose upper lane is p; entries of lower lanes are unused.

def _benes_high_first(src):
    """Looping algorithm for a Benes network with strides m/2, ..., 1, ..., m/2."""
    m = len(src)
    if m == 2:
        return [(1, np.array([_SWAP if src[0] == 1 else _PASS, 0], dtype=np.uint8))]
    h = m // 2
    inv = [0] * m
    for o, i in enumerate(src):
        inv[i] = o
    side = [-1] * m                    # subnet of each input: 0 for lanes [0, h), 1 for [h, m)
    for start in range(m):
        o = start
        while side[src[o]] == -1:
            i = src[o]
            side[i], side[i ^ h] = 0, 1
            # The partner input's output leaves subnet 1, so its partner output takes subnet 0.
            o = inv[i ^ h] ^ h
    first = np.zeros(m, dtype=np.uint8)
    last = np.zeros(m, dtype=np.uint8)
    sub = ([0] * h, [0] * h)
    for k in range(h):
        first[k] = _PASS if side[k] == 0 else _SWAP
        last[k] = _PASS if side[src[k]] == 0 else _SWAP
        for o in (k, k + h):
            sub[side[src[o]]][k] = src[o] % h
    inner = [(stride, np.concatenate([a, b]))
             for (stride, a), (_, b) in zip(_benes_high_first(sub[0]), _benes_high_first(sub[1]))]
    return [(h, first)] + inner + [(h, last)]


def _bit_reverse(p, n):
    return int(format(p, f"0{n}b")[::-1], 2) if n else 0


def _benes_low_first(src):
    """Looping algorithm for a Benes network with strides 1, ..., m/2, ..., 1 (bit-reversed lanes)."""
    m = len(src)
    n = m.bit_length() - 1
    rev = [_bit_reverse(p, n) for p in range(m)]
    rsrc = [0] * m
    for o, i in enumerate(src):
        rsrc[rev[o]] = rev[i]
    stages = []
    for stride, modes in _benes_high_first(rsrc):
        out = np.zeros(m, dtype=np.uint8)
        for q in range(m):
            if not q & stride:
                out[rev[q]] = modes[q]
        stages.append((m // (2 * stride), out))
    return stages


def _translate(arrangement, stages, out, t):
    """Relabel lane ``q`` as ``q ^ t`` in a copy-network route (a butterfly automorphism)."""
    m = len(arrangement)
    moved = []
    for stride, modes in stages:
        new = np.zeros(m, dtype=np.uint8)
        for q in range(m):
            if not q & stride:
                mode = int(modes[(q ^ t) & ~stride])
                new[q] = _MIRROR[mode] if t & stride else mode
        moved.append((stride, new))
    return ([arrangement[q ^ t] for q in range(m)], moved, [out[q ^ t] for q in range(m)])


def _copy_route(items, m):
    """Route demands ``items`` = [(source, count)], counts summing to ``m``, through the copy network.

    Returns ``(arrangement, stages, out)``: the source each input slot must hold (None where the
    slot is unused), the stages, and the source each output lane then carries.
    """
    if m == 1:
        return [items[0][0]], [], [items[0][0]]
    h = m // 2
    low, high, straddler, acc = [], [], None, 0
    for source, count in items:
        if acc >= h:
            high.append((source, count))
        elif acc + count <= h:
            low.append((source, count))
        else:
            low.append((source, h - acc))
            high.append((source, acc + count - h))
            straddler = source
        acc += count
    halves = [_copy_route(low, h), _copy_route(high, h)]
    if straddler is not None:
        halves = [_translate(*half, half[0].index(straddler)) for half in halves]
    (a_low, s_low, o_low), (a_high, s_high, o_high) = halves
    first = np.zeros(m, dtype=np.uint8)
    arrangement = a_low + a_high
    if straddler is not None:
        first[0] = _B_UP
        arrangement[h] = None
    stages = [(h, first)] + [(stride, np.concatenate([a, b]))
                             for (stride, a), (_, b) in zip(s_low, s_high)]
    return arrangement, stages, o_low + o_high


def _assemble(lanes, parts):
    """Merge stage lists, composing adjacent stages of equal stride, into a (stages, L/2) array."""
    merged = []
    for stride, modes in (stage for part in parts for stage in part):
        if merged and merged[-1][0] == stride:
            before = merged[-1][1]
            upper, _ = stage_pairs(lanes, stride)
            both = before.copy()
            for p in upper.tolist():
                both[p] = compose_modes(before[p], modes[p]).value
            merged[-1] = (stride, both)
        else:
            merged.append((stride, modes))
    strides = tuple(stride for stride, _ in merged)
    assert strides == network_strides(lanes), (strides, network_strides(lanes))
    return np.array([modes[stage_pairs(lanes, stride)[0]] for stride, modes in merged],
                    dtype=np.uint8)


def _straight(lanes, strides):
    return [(stride, np.zeros(lanes, dtype=np.uint8)) for stride in strides]


def route_permutation(perm):
    """Route a permutation: output lane ``o`` takes input lane ``perm[o]``.

    Returns the switch modes, shape ``(stages, L/2)``, for
    :meth:`fetta.hw.distribution.BenesDistribution.pack_config` or the model. Raises
    :exc:`RouteError` if ``perm`` is not a permutation of ``range(L)``, L a power of two.
    """
    perm = _check_sources(perm, permutation=True)
    lanes = len(perm)
    n = lanes.bit_length() - 1
    down = [1 << t for t in reversed(range(n))]
    placement = _straight(lanes, down + down[::-1][1:])
    copy = _straight(lanes, down)
    return _assemble(lanes, [placement, copy, _benes_low_first(perm)])


def route_multicast(sources):
    """Route any mapping: output lane ``o`` takes input lane ``sources[o]`` (inputs may repeat).

    Every mapping routes in one pass. Returns the switch modes, shape ``(stages, L/2)``. Raises
    :exc:`RouteError` if ``sources`` has a length that is not a power of two or names a lane out
    of range.
    """
    sources = _check_sources(sources, permutation=False)
    lanes = len(sources)
    counts = Counter(sources)
    arrangement, copy, out = _copy_route(sorted(counts.items()), lanes)
    unused = iter(sorted(set(range(lanes)) - set(counts)))
    placement = [source if source is not None else next(unused) for source in arrangement]
    slots = {}
    for q, source in enumerate(out):
        slots.setdefault(source, []).append(q)
    final = [slots[source].pop() for source in sources]
    return _assemble(lanes, [_benes_high_first(placement), copy, _benes_low_first(final)])


def replicate_pattern(lanes, group):
    """Sources that replicate the first ``group`` words ``lanes/group`` times: lane o takes o mod group."""
    _check_group(lanes, group)
    return [o % group for o in range(lanes)]


def expand_pattern(lanes, group):
    """Sources that expand word w onto the ``group`` adjacent lanes ``w*group ...``: lane o takes o // group."""
    _check_group(lanes, group)
    return [o // group for o in range(lanes)]


def _check_group(lanes, group):
    if not isinstance(lanes, int) or lanes < 2 or lanes & (lanes - 1):
        raise RouteError(f"Lane count must be a power of two of at least 2, not {lanes!r}")
    if not isinstance(group, int) or group < 1 or lanes % group:
        raise RouteError(f"Group size must be a divisor of {lanes}, not {group!r}")


def broadcast_benes_strides(lanes):
    """Strides of a single Benes network (``2 log2 L - 1`` stages), high stride first."""
    n = lanes.bit_length() - 1
    down = [1 << t for t in reversed(range(n))]
    return tuple(down + down[::-1][1:])


def route_broadcast_benes(sources, *, strides=None):
    """Search a single Benes network with broadcast switches for a route of ``sources``.

    The network has the strides of :func:`broadcast_benes_strides` unless ``strides`` gives
    another stage sequence of the same switches. Returns the switch modes (shape
    ``(stages, L/2)``) or None if no configuration realizes the pattern. An exhaustive backward
    search (exponential in the worst case; meant for L <= 8).
    """
    sources = _check_sources(sources, permutation=False)
    lanes = len(sources)
    strides = broadcast_benes_strides(lanes) if strides is None else tuple(strides)
    pairs = [stage_pairs(lanes, s) for s in strides]
    # reach[s][w]: inputs that can be on lane w in front of stage s.
    reach = [[frozenset([w]) for w in range(lanes)]]
    for upper, lower in pairs:
        nxt = list(reach[-1])
        for u, d in zip(upper.tolist(), lower.tolist()):
            nxt[u] = nxt[d] = reach[-1][u] | reach[-1][d]
        reach.append(nxt)
    dead = set()
    chosen = [None] * len(strides)

    def options(want_u, want_d):
        # (mode, need on upper input, need on lower input); -1 is "any word".
        if want_u == -1 and want_d == -1:
            return [(_PASS, -1, -1)]
        if want_d == -1:
            return [(_PASS, want_u, -1), (_SWAP, -1, want_u)]
        if want_u == -1:
            return [(_PASS, -1, want_d), (_SWAP, want_d, -1)]
        if want_u == want_d:
            return [(_B_UP, want_u, -1), (_B_LOW, -1, want_u), (_PASS, want_u, want_u)]
        return [(_PASS, want_u, want_d), (_SWAP, want_d, want_u)]

    def solve(stage, want):
        if stage < 0:
            return all(v in (-1, w) for w, v in enumerate(want))
        key = (stage, want)
        if key in dead:
            return False
        upper, lower = pairs[stage]
        per_switch = []
        for u, d in zip(upper.tolist(), lower.tolist()):
            opts = [(mode, a, b) for mode, a, b in options(want[u], want[d])
                    if (a == -1 or a in reach[stage][u]) and (b == -1 or b in reach[stage][d])]
            if not opts:
                dead.add(key)
                return False
            per_switch.append((u, d, opts))

        def choose(j, need, modes):
            if j == len(per_switch):
                chosen[stage] = list(modes)
                return solve(stage - 1, tuple(need))
            u, d, opts = per_switch[j]
            for mode, a, b in opts:
                need[u], need[d] = a, b
                if choose(j + 1, need, modes + [mode]):
                    return True
            return False

        if choose(0, [-1] * lanes, []):
            return True
        dead.add(key)
        return False

    if not solve(len(strides) - 1, tuple(sources)):
        return None
    return np.array(chosen, dtype=np.uint8)


_LETTERS = {_PASS: "=", _SWAP: "x", _B_UP: "^", _B_LOW: "v"}


def register(sub):
    """Add the ``route`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``).

    ``fetta route S0 S1 ... S(L-1)`` routes the pattern (output lane ``o`` takes input ``S_o``) and
    prints the switch modes stage by stage and the packed configuration value.
    """
    parser = sub.add_parser("route", help="route a pattern through the distribution network",
                            description="Route a permutation or multicast: output lane o takes "
                                        "the input lane given as the o-th argument.")
    parser.add_argument("sources", type=int, nargs="+", help="input lane of each output lane")
    parser.set_defaults(run=_run_route)


def _run_route(args):
    from ..hw.distribution import model, pack_config
    modes = route_multicast(args.sources)
    lanes = len(args.sources)
    if model(modes, [list(range(lanes))])[0].tolist() != list(args.sources):
        raise RuntimeError(f"route of {args.sources} does not realize it in the model")
    print(f"{lanes} lanes, {len(modes)} stages; modes: = pass, x swap, ^ broadcast upper, "
          f"v broadcast lower")
    for stride, row in zip(network_strides(lanes), modes):
        print(f"stride {stride:>3}: {''.join(_LETTERS[int(m)] for m in row)}")
    print(f"config = {pack_config(modes, lanes):#x}")
    return 0
