"""CSSE stage 2: hardware re-ranking, layouts along the chain, scratchpad allocation, tiling.

Stage 1 (:mod:`.csse`, :mod:`.training`) orders the pairwise steps of a training step by MACs.
Stage 2 prices each candidate on the configuration at hand with the mapper's exact cycle count
(:func:`fetta.search.mapper.map_contraction`, equal to what the model and the RTL count) and
decides everything the code generator needs:

* **Layouts along the DAG.** Every tensor is stored once, in one layout (which index parts sit on
  the lanes). Steps are visited from the most MACs to the fewest; each tries the fewest-beat
  lane assignments of its index space and the assignments implied by the layouts already fixed
  for its tensors, and keeps the one of fewest exact cycles. A fixed operand layout is read as it
  is, or, when no mapping reads it (a contracted index on the lanes of one operand and the rows
  of the other) or a copy is cheaper, copied by an explicit re-layout pass
  (:func:`fetta.search.mapper.map_relayout`), which is counted. A producer therefore writes each
  intermediate in the layout its biggest consumer reads, without a transpose pass.
* **Requantization.** Each step's shift is ``(W - 1) + ceil(log2(K) / 2)`` for a contraction of
  length ``K`` (the product of the summed extents, 1 for none), capped at ``sum_width - 1``:
  operands that use the W-bit range with random signs give sums that grow as ``sqrt(K)`` times a
  product, so typical results come back to the W-bit range with most of their precision.
  Saturation is flagged by the requantizer's sticky flag, not an error. Rounding is
  nearest-even (or stochastic).
* **Regions and rows.** Each step reads two regions and writes a third, so every step's tensors
  get three distinct regions (a graph colouring); every live tensor (forward intermediates kept
  for the backward steps) gets a base row by first fit over lifetimes. Tensors are kept to the
  end when everything fits (so every intermediate can be checked); else rows are reused after
  a tensor's last use.
* **Tiling.** When the step does not fit at the full token count, it is compiled for the
  largest tile of tokens that fits and run once per tile (x and dy padded with zero tokens, which
  add nothing): y and dx are per-token results, and the host sums the core gradients of the tiles
  (the accelerator has no accumulate-into step). If a single token does not fit,
  :exc:`CapacityError` names the tensor, the rows it needs and the rows free.

:func:`plan_training` runs all of it for a layer and an order (``"optimal"``: the K best forward
trees of stage 1 re-ranked by cycles; ``"flops"``: stage 1's MAC-optimal choice; ``"sequential"``:
the order written; ``"greedy"``: opt_einsum's greedy), with or without in-flight shaping.
"""

import dataclasses
import functools
import itertools
import math

from ..hw.config import AcceleratorConfig
from .csse import ContractionTree, greedy_tree, search, sequential_tree
from .layout import natural_layout
from .mapper import MapperError, map_contraction, map_relayout
from .training import plan_training_step, training_schedule

__all__ = ["CapacityError", "Stage2Error", "ORDERS", "PlannedOp", "TensorPlan", "Stage2Plan",
           "BENCH_CONFIG", "benchmark_stage2", "stage2_table", "print_stage2_benchmark",
           "choose_shift", "lane_choices", "plan_schedule", "plan_training"]

#: Contraction orders of :func:`plan_training`.
ORDERS = ("optimal", "flops", "sequential", "greedy")
_CHOICES = 8            # fewest-beat lane assignments tried per step
_COLOR_NODES = 20000    # backtracking budget of the region colouring


class Stage2Error(ValueError):
    """A training step that stage 2 cannot plan on this configuration, with the reason."""


class CapacityError(Stage2Error):
    """A tensor that does not fit the scratchpad: names it, the rows needed and the rows free."""

    def __init__(self, message, *, tensor, needed, available):
        super().__init__(message)
        self.tensor = tensor
        self.needed = needed
        self.available = available


def choose_shift(contracted, config):
    """The requantizer shift of a step whose contraction has ``contracted`` terms per result.

    ``(W - 1) + ceil(log2(K) / 2)``, at most ``sum_width - 1`` (see the module docstring).
    """
    if not isinstance(contracted, int) or contracted < 1:
        raise Stage2Error(f"contraction length must be a positive integer, not {contracted!r}")
    half = ((contracted - 1).bit_length() + 1) // 2
    return min(config.width - 1 + half, config.sum_width - 1)


def lane_choices(extents, lanes):
    """Every lane factor assignment of an index space, fewest beats first.

    Each index ``x`` of extent ``n`` gets 1, a power of two up to ``min(n, L)``, or ``n`` itself
    when ``n <= L``; the product of the factors is at most L. Sorted by beats
    ``prod(ceil(n / f))``, then padded lanes. Returns a list of ``{index: factor}`` (factors > 1).
    """
    names = list(extents)
    options = []
    for x in names:
        n = extents[x]
        opts = {1} | {1 << k for k in range(lanes.bit_length()) if 1 << k <= min(n, lanes)}
        if n <= lanes:
            opts.add(n)
        options.append(sorted(opts, reverse=True))
    found = []

    def walk(k, product, chosen):
        if k == len(names):
            found.append(dict(chosen))
            return
        for f in options[k]:
            if product * f <= lanes:
                if f > 1:
                    chosen[names[k]] = f
                walk(k + 1, product * f, chosen)
                chosen.pop(names[k], None)

    walk(0, 1, {})

    def score(choice):
        beats = math.prod(-(-extents[x] // choice.get(x, 1)) for x in names)
        padded = math.prod(-(-extents[x] // choice.get(x, 1)) * choice.get(x, 1) for x in names)
        return beats, padded, len(choice)
    found.sort(key=score)
    return found


@dataclasses.dataclass(frozen=True)
class PlannedOp:
    """One operation of the compiled training step, in execution order.

    ``kind`` is ``"forward"``, ``"backward"`` or ``"relayout"`` (a copy of ``a`` into ``c``;
    ``b`` is None). ``macs`` are useful MACs (0 for a copy), ``contracted`` the length of the
    contraction (product of the summed extents), ``shift`` the requantizer shift.
    """
    kind: str
    a: str
    b: object
    c: str
    macs: int
    contracted: int
    shift: int


@dataclasses.dataclass
class TensorPlan:
    """Where one tensor lives: its layout (``lanes``: ``(index, factor)`` pairs on the lanes), region,
    base row, rows, role and lifetime (``born``: the op that writes it, -1 for a host input;
    ``dies``: its last reader, ``len(ops)`` for a tensor kept to the end)."""
    name: str
    role: str
    indices: tuple
    sizes: tuple
    lanes: tuple
    region: int = 0
    base: int = 0
    born: int = -1
    dies: int = -1
    source: str = ""

    def layout(self, config, *, placed=True):
        """The :class:`fetta.search.layout.TensorLayout` (at region 0, base 0 unless ``placed``)."""
        return _layout(self.name, self.indices, self.sizes, self.lanes, config.lanes,
                       self.region if placed else 0, self.base if placed else 0)

    def rows(self, config):
        return self.layout(config, placed=False).rows_needed


def _layout(name, indices, sizes, lanes, L, region=0, base=0):
    return natural_layout(name, indices, sizes, lanes=L, lane_indices=list(lanes), region=region,
                          base=base)


def _sig(indices, choice):
    """The lane pairs of a tensor under a factor choice, in the tensor's index order."""
    return tuple((x, choice[x]) for x in indices if choice.get(x, 1) > 1)


@functools.lru_cache(maxsize=1 << 16)
def _rows_needed(indices, sizes, lanes, L):
    return _layout("T", indices, sizes, lanes, L).rows_needed


def _beats_bound(specs, config):
    """A lower bound on the cycles of a contraction: every (STEP, beat) pair covers at most the
    smallest lane factor of each index among the tensors that hold it, and a STEP costs its
    setup and drain."""
    smallest, extent = {}, {}
    for indices, sizes, lanes in specs:
        factors = dict(lanes)
        for x, n in zip(indices, sizes):
            extent[x] = n
            smallest[x] = min(smallest.get(x, n), factors.get(x, 1))
    beats = math.prod(-(-extent[x] // smallest[x]) for x in extent)
    return beats + _step_overhead(config)


@functools.lru_cache(maxsize=64)
def _step_overhead(config):
    from ..hw.accelerator import Timing
    return Timing.from_config(config).step_cycles(0)


@functools.lru_cache(maxsize=1 << 16)
def _contraction_cycles(config, a, b, c):
    """Cycles of one contraction (``a``, ``b``, ``c``: ``(indices, sizes, lanes)``), None if unmappable."""
    layouts = [_layout(n, *t, config.lanes, region=r) for n, t, r in zip("ABC", (a, b, c), range(3))]
    try:
        return map_contraction(*layouts, config).cycles
    except MapperError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _relayout_cycles(config, src, dst):
    layouts = [_layout(n, *t, config.lanes, region=r) for n, t, r in zip("XY", (src, dst), (0, 2))]
    try:
        return map_relayout(*layouts, config).cycles
    except MapperError:
        return None


class Stage2Plan:
    """A training step planned for one configuration: operations, tensors and their cost.

    Attributes
    ----------
    schedule : TrainingSchedule
        The pairwise steps from stage 1 (the forward tree they are built on).
    config : AcceleratorConfig
    ops : tuple of PlannedOp
        Execution order, re-layout copies included.
    tensors : dict of str to TensorPlan
    programs : tuple of Program
        One mapper program per op (placed at the tensors' regions and rows; route entries numbered
        from 0 in each program: :mod:`.codegen` merges them).
    tokens : int
        Tokens per tile (the ``b`` extent the program is compiled for).
    total_tokens : int
    tiles : int
        Runs of the program: ``ceil(total_tokens / tokens)``.
    shaping : bool
        Whether layouts were propagated along the chain (False: each step picks its own and the
        consumers re-lay out).
    rounding : str
    reuse : bool
        Whether rows of dead tensors are reused (then some intermediates are overwritten).
    """

    def __init__(self, schedule, config, ops, tensors, programs, *, tokens, total_tokens,
                 shaping, rounding, reuse):
        self.schedule = schedule
        self.config = config
        self.ops = tuple(ops)
        self.tensors = dict(tensors)
        self.programs = tuple(programs)
        self.tokens = tokens
        self.total_tokens = total_tokens
        self.tiles = -(-total_tokens // tokens)
        self.shaping = shaping
        self.rounding = rounding
        self.reuse = reuse
        self.candidates = []

    @property
    def cycles(self):
        """Predicted cycles of one run of the program (HALT included)."""
        return sum(p.cycles for p in self.programs) + self.config_halt

    @property
    def config_halt(self):
        return self.programs[0].halt_cycles if self.programs else 2

    @property
    def total_cycles(self):
        """Predicted cycles of every tile."""
        return self.cycles * self.tiles

    @property
    def macs(self):
        """Useful MACs of one run."""
        return sum(op.macs for op in self.ops)

    @property
    def relayouts(self):
        """Explicit re-layout passes (copies) in the program."""
        return sum(op.kind == "relayout" for op in self.ops)

    @property
    def utilization(self):
        return self.macs / (self.cycles * self.config.lanes) if self.cycles else 0.0

    def __repr__(self):
        return (f"Stage2Plan({len(self.ops)} ops, macs={self.macs:,}, cycles={self.cycles:,}, "
                f"relayouts={self.relayouts}, tiles={self.tiles})")


def _roles(schedule):
    tree = schedule.forward_tree
    roles = {}
    for t in tree.network.tensors:
        roles[t.name] = "input" if t.name == "x" else "core"
    roles[schedule.grad_output] = "grad_output"
    for s in schedule.steps:
        roles[s.result] = "intermediate" if s.kind == "forward" else "gradient"
    for key, name in schedule.outputs.items():
        if key == "y":
            roles[name] = "output"
        elif key == "dx":
            roles[name] = "input_grad"
        else:
            roles[name] = "core_grad"
    return roles


def _step_extents(step, sizes):
    names = dict.fromkeys(step.left_indices + step.right_indices + step.indices)
    return {x: sizes[x] for x in names}


def _choose_layouts(schedule, config, sizes, *, shaping):
    """Lane pairs of every tensor and the re-layout copies each step reads.

    Returns ``(sigs, reads, copies)``: ``sigs`` maps tensor names (copies included) to lane pairs,
    ``reads[k]`` the ``(a, b)`` names step ``k`` reads, ``copies`` maps a copy name to its source.
    """
    L = config.lanes
    indices = dict(schedule.indices)
    sigs = {}
    copies = {}          # copy name -> source
    copy_of = {}         # (source, sig) -> copy name
    reads = [None] * len(schedule.steps)

    def spec(name, sig):
        return (tuple(indices[name]), tuple(sizes[x] for x in indices[name]), sig)

    def fits(name, sig):
        return _rows_needed(*spec(name, sig), L) <= config.depth

    def copy_name(source, sig):
        key = (source, sig)
        if key not in copy_of:
            name = f"{source}~{len([k for k in copy_of if k[0] == source]) + 1}"
            copy_of[key] = name
            copies[name] = source
            indices[name] = indices[source]
            sigs[name] = sig
        return copy_of[key]

    def evaluate(step, want, fixed, bound):
        """Cheapest way to run ``step`` with lane pairs ``want`` for its free tensors: (cost, sigs
        of a, b, c as read, operands to copy); None if none is cheaper than ``bound``."""
        names = (step.left, step.right, step.result)
        options = []
        for copy_mask in itertools.product((False, True), repeat=2):
            cost, read, copied = 0, [], []
            ok = True
            for k, name in enumerate(names):
                if name in fixed and not (k < 2 and copy_mask[k]):
                    read.append(fixed[name])
                elif name in fixed:
                    if want[k] == fixed[name]:
                        ok = False
                        break
                    if (name, want[k]) not in copy_of:
                        extra = _relayout_cycles(config, spec(name, fixed[name]),
                                                 spec(name, want[k]))
                        if extra is None:
                            ok = False
                            break
                        cost += extra
                    read.append(want[k])
                    copied.append(k)
                else:
                    if not fits(name, want[k]):
                        rows = _rows_needed(*spec(name, want[k]), L)
                        if name not in too_big or rows < too_big[name]:
                            too_big[name] = rows
                        ok = False
                        break
                    read.append(want[k])
            if not ok:
                continue
            specs = [spec(n, s) for n, s in zip(names, read)]
            limit = min([o[0] for o in options] + ([] if bound is None else [bound]), default=None)
            if limit is not None and cost + _beats_bound(specs, config) >= limit:
                continue
            cycles = _contraction_cycles(config, *specs)
            if cycles is None:
                continue
            options.append((cost + cycles, tuple(read), tuple(copied)))
        return min(options, default=None)

    steps = list(enumerate(schedule.steps))
    if shaping:
        visit = sorted(steps, key=lambda item: (-item[1].macs, item[0]))
    else:
        visit = steps
    for k, step in visit:
        names = (step.left, step.right, step.result)
        extents = _step_extents(step, sizes)
        choices = lane_choices(extents, L)[:_CHOICES]
        if shaping:
            fixed = {n: sigs[n] for n in names if n in sigs}
            merged = {}
            for n in names:
                if n in fixed:
                    for x, f in fixed[n]:
                        merged.setdefault(x, f)
            extra = [merged] + [dict(fixed[n]) for n in names if n in fixed]
            for choice in extra:
                if math.prod(choice.values()) <= L and choice not in choices:
                    choices.append(choice)
        else:
            # No in-flight shaping: each step reads and writes its own best layouts.
            fixed = {}
        results = []
        too_big = {}
        for choice in choices:
            want = tuple(_sig(indices[n], choice) for n in names)
            # Without shaping every candidate is kept: the cheapest copyable one wins below.
            bound = min((r[0] for r in results), default=None) if shaping else None
            result = evaluate(step, want, fixed, bound)
            if result is not None:
                results.append(result)
        results.sort(key=lambda r: r[0])
        if not shaping:
            # Only layouts that the stored operands can be copied into.
            results = [r for r in results if all(
                names[j] not in sigs or sigs[names[j]] == r[1][j]
                or _relayout_cycles(config, spec(names[j], sigs[names[j]]),
                                    spec(names[j], r[1][j])) is not None for j in range(2))]
        best = results[0] if results else None
        if best is None and too_big:
            name = min(too_big, key=too_big.get)
            raise CapacityError(f"tensor {name!r} needs at least {too_big[name]} rows in any "
                                f"layout step {step.result} = {step.left} * {step.right} can use, "
                                f"more than the {config.depth} rows of a region", tensor=name,
                                needed=too_big[name], available=config.depth)
        if best is None:
            raise Stage2Error(f"no mapping of step {step.result} = {step.left} * {step.right} "
                              f"fits the configuration (lanes {L}, depth {config.depth})")
        _, read, copied = best
        if not shaping:
            # The result is stored as its producer writes it; inputs as their first reader reads.
            for n, s in zip(names, read):
                sigs.setdefault(n, s)
            copied = tuple(j for j in range(2) if sigs[names[j]] != read[j])
        for n, s in zip(names, read):
            if n not in sigs:
                sigs[n] = s
        operands = [step.left, step.right]
        for j in copied:
            operands[j] = copy_name(names[j], read[j])
        reads[k] = tuple(operands)
    return sigs, reads, copies


def _color(names, groups, regions, weight, capacity=None):
    """Regions such that the tensors of each group differ and, with ``capacity``, the weights in
    each region add up to at most it; None if the search finds no such colouring."""
    adj = {n: set() for n in names}
    for group in groups:
        for p, q in itertools.combinations(group, 2):
            adj[p].add(q)
            adj[q].add(p)
    color = {}
    load = [0] * regions
    budget = [_COLOR_NODES]

    def pick():
        # DSatur: the most constrained tensor first, then the most neighbours, then the largest.
        free = [n for n in names if n not in color]
        return max(free, key=lambda n: (len({color[m] for m in adj[n] if m in color}),
                                        len(adj[n]), weight[n], -names.index(n)))

    def solve():
        if len(color) == len(names):
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return False
        n = pick()
        used = {color[m] for m in adj[n] if m in color}
        for r in sorted(range(regions), key=lambda r: (load[r], r)):
            if r in used or (capacity is not None and load[r] + weight[n] > capacity):
                continue
            color[n] = r
            load[r] += weight[n]
            if solve():
                return True
            load[r] -= weight[n]
            del color[n]
        return False

    return dict(color) if solve() else None


def _allocate_rows(tensors, rows, config, *, reuse):
    """Base rows by first fit; ``reuse`` lets tensors whose lifetimes do not overlap share rows."""
    placed = []
    order = sorted(tensors.values(), key=lambda t: (t.born, -rows[t.name], t.name))
    for t in order:
        born, dies = (t.born, t.dies) if reuse else (-1, 1 << 30)
        busy = sorted((u.base, u.base + rows[u.name]) for u in placed
                      if u.region == t.region and (not reuse or not (u.dies < born or dies < u.born)))
        base, need = 0, rows[t.name]
        for lo, hi in busy:
            if lo >= base + need:
                break
            base = max(base, hi)
        if base + need > config.depth:
            used = sum(hi - lo for lo, hi in busy)
            raise CapacityError(
                f"tensor {t.name!r} ({t.role}) needs {need} rows in region {t.region}, but only "
                f"{max(0, config.depth - used)} of its {config.depth} rows are free while it is live",
                tensor=t.name, needed=need, available=max(0, config.depth - used))
        t.base = base
        placed.append(t)


def plan_schedule(schedule, config=None, *, shaping=True, rounding="nearest_even",
                  total_tokens=None):
    """Plan one :class:`fetta.search.training.TrainingSchedule` on ``config``.

    Chooses layouts along the chain (or, with ``shaping=False``, each step's own layouts and a
    re-layout copy wherever a reader wants another), shifts, regions and rows, and maps every op.

    Raises
    ------
    CapacityError
        If a tensor does not fit its region while it is live.
    Stage2Error
        If no step mapping fits, or the steps cannot be given distinct regions.
    """
    config = AcceleratorConfig() if config is None else config
    if not isinstance(config, AcceleratorConfig):
        raise Stage2Error(f"config must be an AcceleratorConfig, not {config!r}")
    if rounding not in ("nearest_even", "stochastic"):
        raise Stage2Error(f"rounding must be 'nearest_even' or 'stochastic', not {rounding!r}")
    sizes = dict(schedule.forward_tree.network.sizes)
    tokens = sizes.get("b", 1)
    total_tokens = tokens if total_tokens is None else total_tokens
    # With shaping, propagated layouts compete with each step's own layouts plus copies (the
    # propagation is greedy, so it can lose on a rare chain); without, only the latter exist.
    best, error = None, None
    for propagate in ((True, False) if shaping else (False,)):
        layouts = _choose_layouts(schedule, config, sizes, shaping=propagate)
        try:
            plan = _finish(schedule, config, sizes, *layouts, tokens=tokens,
                           total_tokens=total_tokens, shaping=shaping, rounding=rounding)
        except CapacityError as e:
            error = e
            continue
        if best is None or plan.cycles < best.cycles:
            best = plan
    if best is None:
        raise error
    return best


def _finish(schedule, config, sizes, sigs, reads, copies, *, tokens, total_tokens, shaping,
            rounding):
    """Ops, regions, rows and programs of a layout assignment."""
    roles = _roles(schedule)
    indices = dict(schedule.indices)
    for name, source in copies.items():
        indices[name] = indices[source]
        roles[name] = "copy"

    ops = []
    made = set(schedule.inputs)
    for step, (a, b) in zip(schedule.steps, reads):
        for operand in (a, b):
            if operand in copies and operand not in made:
                ops.append(PlannedOp("relayout", copies[operand], None, operand, 0, 1, 0))
                made.add(operand)
        summed = [x for x in dict.fromkeys(step.left_indices + step.right_indices)
                  if x not in step.indices]
        contracted = math.prod(sizes[x] for x in summed)
        ops.append(PlannedOp(step.kind, a, b, step.result, step.macs, contracted,
                             choose_shift(contracted, config)))
        made.add(step.result)

    tensors = {}
    for name in list(schedule.inputs) + [op.c for op in ops]:
        tensors[name] = TensorPlan(
            name=name, role=roles[name], indices=tuple(indices[name]),
            sizes=tuple(sizes[x] for x in indices[name]), lanes=sigs[name],
            source=copies.get(name, ""))
    end = len(ops)
    for k, op in enumerate(ops):
        tensors[op.c].born = k
        for n in (op.a, op.b):
            if n is not None:
                tensors[n].dies = k
    for name, t in tensors.items():
        if t.role in ("output", "input_grad", "core_grad") or t.dies < t.born:
            t.dies = end
    rows = {n: t.rows(config) for n, t in tensors.items()}
    for n, t in tensors.items():
        if rows[n] > config.depth:
            raise CapacityError(f"tensor {n!r} ({t.role}) needs {rows[n]} rows, more than the "
                                f"{config.depth} rows of a region", tensor=n, needed=rows[n],
                                available=config.depth)
    names = list(tensors)
    groups = [tuple(n for n in (op.a, op.b, op.c) if n is not None) for op in ops]
    # First every tensor kept to the end (regions filled at most to their depth), else rows
    # reused after each tensor's last read.
    regions = _color(names, groups, config.regions, rows, capacity=config.depth)
    if regions is not None:
        for n, r in regions.items():
            tensors[n].region = r
        _allocate_rows(tensors, rows, config, reuse=False)
        reuse = False
    else:
        # Rows are reused; a region may then hold more than its depth over the whole step.
        reuse, error = True, None
        for factor in (2, 3, 4, 6, None):
            regions = _color(names, groups, config.regions, rows,
                             capacity=None if factor is None else factor * config.depth)
            if regions is None:
                continue
            for n, r in regions.items():
                tensors[n].region = r
            try:
                _allocate_rows(tensors, rows, config, reuse=True)
                error = None
                break
            except CapacityError as e:
                error = e
        if regions is None:
            raise Stage2Error(f"the steps' operands and results cannot be given distinct regions "
                              f"among {config.regions}")
        if error is not None:
            raise error

    programs = []
    for op in ops:
        la = tensors[op.a].layout(config)
        lc = tensors[op.c].layout(config)
        if op.kind == "relayout":
            programs.append(map_relayout(la, lc, config))
        else:
            lb = tensors[op.b].layout(config)
            programs.append(map_contraction(la, lb, lc, config, shift=op.shift, rounding=rounding))
    return Stage2Plan(schedule, config, ops, tensors, programs, tokens=tokens,
                      total_tokens=total_tokens, shaping=shaping, rounding=rounding, reuse=reuse)


def _trees(layer, tokens, order, k):
    """Candidate forward trees of ``order`` at ``tokens`` tokens: ``[(label, nested pairs)]``."""
    net = layer.forward_network(tokens)
    if order == "optimal":
        # The K best trees by MACs, and the written and greedy orders when they are not among
        # them: on small steps fixed costs per step can outweigh MACs.
        trees = [(f"rank {r}", tree) for r, tree in enumerate(search(net, k))]
        for label, tree in (("sequential", sequential_tree(net)), ("greedy", greedy_tree(net))):
            if all(tree != other for _, other in trees):
                trees.append((label, tree))
        return [(label, tree.nested) for label, tree in trees]
    if order == "flops":
        return [("flops", plan_training_step(layer, tokens=tokens, k=k).forward_tree.nested)]
    if order == "sequential":
        return [("sequential", sequential_tree(net).nested)]
    if order == "greedy":
        return [("greedy", greedy_tree(net).nested)]
    raise Stage2Error(f"order must be one of {', '.join(map(repr, ORDERS))}, not {order!r}")


def _candidates_then_tiles(candidates, best, layer, order, k, total, seen):
    """The candidates, then, if the best of them needs tiles, the best trees of a single token
    (they suit small tiles)."""
    yield from candidates
    plan = best()
    if order == "optimal" and total > 1 and (plan is None or plan.tiles > 1):
        for label, nested in _trees(layer, 1, order, k):
            if label.startswith("rank") and _canonical_key(nested) not in seen:
                seen.add(_canonical_key(nested))
                yield f"{label} at 1 token", nested


def _canonical_key(nested):
    if isinstance(nested, str):
        return nested
    a, b = _canonical_key(nested[0]), _canonical_key(nested[1])
    return (a, b) if repr(a) <= repr(b) else (b, a)


def _plan_tree(layer, config, nested, tokens, total, shaping, rounding):
    if callable(nested):
        nested = nested(tokens)
    schedule = training_schedule(ContractionTree(layer.forward_network(tokens), nested))
    return plan_schedule(schedule, config, shaping=shaping, rounding=rounding, total_tokens=total)


def _fit_tree(layer, config, nested, total, shaping, rounding, tile):
    """The plan of one tree for all tokens, or for the largest tile of tokens that fits.

    ``nested`` is a tree, or a function of the token count that returns one (stage 1's choice
    for a tile of that many tokens).
    """
    try:
        return _plan_tree(layer, config, nested, total, total, shaping, rounding)
    except CapacityError:
        if not tile or total == 1:
            raise
    # Bisection (rows grow with the tokens).
    lo, hi, best, error = 1, total - 1, None, None
    while lo <= hi:
        mid = (lo + hi) // 2
        try:
            best = _plan_tree(layer, config, nested, mid, total, shaping, rounding)
            lo = mid + 1
        except CapacityError as e:
            error = e
            hi = mid - 1
    if best is None:
        raise CapacityError(f"even one token does not fit: {error}", tensor=error.tensor,
                            needed=error.needed, available=error.available)
    # As few padding tokens as the number of tiles allows.
    even = -(-total // best.tiles)
    if even < best.tokens:
        try:
            best = _plan_tree(layer, config, nested, even, total, shaping, rounding)
        except CapacityError:
            pass
    return best


def plan_training(layer, config=None, *, tokens=None, order="optimal", k=8, shaping=True,
                  rounding="nearest_even", tile=True):
    """Stage 2 for a layer's training step: the plan of fewest cycles on ``config``.

    Every candidate tree is planned for all tokens or, when that does not fit and ``tile`` is
    set, for the largest tile of tokens that fits; the fewest cycles over all tiles win, then the
    fewest MACs.

    Parameters
    ----------
    layer : TNNLayer
    config : AcceleratorConfig
    tokens : int, optional
        Tokens of the step (the layer's own by default).
    order : str
        ``"optimal"`` (the ``k`` best forward trees of stage 1, and the written and greedy orders,
        re-ranked by cycles), ``"flops"`` (stage 1's MAC-optimal schedule, no re-ranking),
        ``"sequential"`` or ``"greedy"``.
    k : int
        Forward trees considered by ``"optimal"`` and ``"flops"``.
    shaping : bool
        False for the baseline without in-flight shaping (explicit re-layout passes).
    rounding : str
        ``"nearest_even"`` or ``"stochastic"``.
    tile : bool
        Tile over tokens when the whole step does not fit (else raise).

    Returns
    -------
    Stage2Plan
        With ``candidates``: one row per candidate tree (``candidate``, ``macs`` for all tokens,
        ``cycles`` over all tiles or None if it does not fit, ``tiles``).

    Raises
    ------
    CapacityError
        If no candidate fits, even for one token when tiling.
    Stage2Error
        For a bad order, ``k`` or token count, or a step no mapping fits.
    """
    config = AcceleratorConfig() if config is None else config
    if order not in ORDERS:
        raise Stage2Error(f"order must be one of {', '.join(map(repr, ORDERS))}, not {order!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise Stage2Error(f"k must be a positive integer, not {k!r}")
    total = layer.tokens if tokens is None else tokens
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise Stage2Error(f"tokens must be a positive integer, not {total!r}")
    if order == "flops":
        # Stage 1 alone: the MAC-optimal schedule for the token count of a tile.
        candidates = [("flops", lambda n: plan_training_step(layer, tokens=n, k=k).forward_tree.nested)]
    else:
        candidates = _trees(layer, total, order, k)
    best, table, error = None, [], None
    seen = {_canonical_key(n) for _, n in candidates if not callable(n)}
    for label, nested in _candidates_then_tiles(candidates, lambda: best, layer, order, k, total,
                                                 seen):
        tree = nested(total) if callable(nested) else nested
        macs = training_schedule(ContractionTree(layer.forward_network(total), tree)).macs
        try:
            plan = _fit_tree(layer, config, nested, total, shaping, rounding, tile)
        except CapacityError as e:
            error = e
            table.append({"candidate": label, "macs": macs, "cycles": None, "tiles": None})
            continue
        table.append({"candidate": label, "macs": macs, "cycles": plan.total_cycles,
                      "tiles": plan.tiles})
        if best is None or (plan.total_cycles, plan.macs * plan.tiles) < \
                (best.total_cycles, best.macs * best.tiles):
            best = plan
    if best is None:
        raise error
    best.candidates = table
    return best


#: The configuration of :func:`benchmark_stage2`: the default datapath with the deepest regions
#: the ISA addresses and tables large enough for any mapping of the full-size layers.
BENCH_CONFIG = AcceleratorConfig(depth=8192, regions=8, prog_depth=1 << 16, dist_routes=1024,
                                 red_routes=1024)


def benchmark_stage2(layers=None, config=BENCH_CONFIG, *, tokens=32, k=4, quick=False):
    """Stage 2's gain per benchmark layer: cycles of the chosen schedule against stage 1's
    FLOP-optimal schedule without re-ranking (both with in-flight shaping), and the baselines.

    Returns one dict per layer: ``layer``, ``format``, ``tokens`` (per tile), ``tiles``,
    ``flops_macs``, ``flops_cycles``, ``chosen_macs``, ``chosen_cycles``, ``gain``
    (flops / chosen cycles), ``utilization`` (chosen), ``relayouts`` (chosen),
    ``no_shaping_cycles`` (the FLOP-optimal order with explicit re-layout passes),
    ``sequential_cycles`` (the order written), ``seconds`` (stage 2 of the chosen schedule). A
    layer whose chosen schedule does not fit even one token gets a row of ``layer``, ``format``,
    ``tokens``, ``error`` (the :exc:`CapacityError` message) and ``seconds`` only.
    ``quick`` takes every layer scaled down (modes up to 4, ranks up to 8, 16 tokens) and ``k = 2``.
    """
    import time
    from .layers import load_layers
    layers = load_layers() if layers is None else layers
    if quick:
        layers = [x.scaled(tokens=16, max_mode=2 if len(x.in_modes) > 4 else 4, max_rank=8,
                           id=x.id) for x in layers]
        k, tokens = 2, 16
    rows = []
    for layer in layers:
        n = min(tokens, layer.tokens)
        start = time.perf_counter()
        try:
            chosen = plan_training(layer, config, tokens=n, k=k)
        except CapacityError as error:
            # Nothing else plans either: the row says why, and the table goes on.
            rows.append({"layer": layer.id, "format": layer.format, "tokens": n,
                         "error": str(error), "seconds": time.perf_counter() - start})
            continue
        seconds = time.perf_counter() - start
        others = []
        for kwargs in ({"k": k, "order": "flops"}, {"k": k, "order": "flops", "shaping": False},
                       {"order": "sequential"}):
            try:
                others.append(plan_training(layer, config, tokens=n, **kwargs))
            except CapacityError:
                others.append(None)   # e.g. a reconstruction of the weight larger than a region
        flops, plain, written = others
        rows.append({
            "layer": layer.id, "format": layer.format, "tokens": chosen.tokens,
            "tiles": chosen.tiles,
            "flops_macs": None if flops is None else flops.macs * flops.tiles,
            "flops_cycles": None if flops is None else flops.total_cycles,
            "chosen_macs": chosen.macs * chosen.tiles, "chosen_cycles": chosen.total_cycles,
            "gain": None if flops is None else flops.total_cycles / chosen.total_cycles,
            "utilization": chosen.utilization, "relayouts": chosen.relayouts,
            "no_shaping_cycles": None if plain is None else plain.total_cycles,
            "sequential_cycles": None if written is None else written.total_cycles,
            "seconds": seconds})
    return rows


def stage2_table(rows):
    """:func:`benchmark_stage2` rows as a Markdown table."""
    lines = ["| layer | format | tokens | FLOP-optimal: MACs | cycles | chosen: MACs | cycles | "
             "gain | util. | copies | no shaping: cycles | written order: cycles | stage 2 s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def num(value):
        return "does not fit" if value is None else f"{value:,}"
    notes = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['layer']} | {r['format']} | {r['tokens']} | "
                         + "does not fit | " * 9 + f"{r['seconds']:.1f} |")
            notes.append(f"{r['layer']}: {r['error']}")
            continue
        tokens = f"{r['tokens']}" if r["tiles"] == 1 else f"{r['tiles']} x {r['tokens']}"
        gain = "-" if r["gain"] is None else f"{r['gain']:.2f}x"
        lines.append(
            f"| {r['layer']} | {r['format']} | {tokens} | {num(r['flops_macs'])} | "
            f"{num(r['flops_cycles'])} | {r['chosen_macs']:,} | {r['chosen_cycles']:,} | "
            f"{gain} | {r['utilization']:.1%} | {r['relayouts']} | "
            f"{num(r['no_shaping_cycles'])} | {num(r['sequential_cycles'])} | {r['seconds']:.1f} |")
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def print_stage2_benchmark(rows=None, *, file=None):
    """Print :func:`benchmark_stage2` rows (computed if not given) as a Markdown table."""
    import sys
    rows = benchmark_stage2() if rows is None else rows
    print(stage2_table(rows), file=sys.stdout if file is None else file)
    return rows


if __name__ == "__main__":
    import sys
    from .layers import load_layers
    ids = sys.argv[1:]
    print_stage2_benchmark(benchmark_stage2([x for x in load_layers() if not ids or x.id in ids]))
