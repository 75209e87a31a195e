"""The mapper: one pairwise contraction ``C = sum A * B`` to microcode, routes and a cycle count.

Given the layouts of A, B and C in the scratchpad (:class:`fetta.search.layout.TensorLayout`; index
names say which index is which), :func:`map_contraction` decides

* **space**: which index parts run across the CE lanes. A part can be spatial only where it sits on
  the lanes of every tensor that has it; operands that lack it are multicast over it, and
  contracted spatial parts are summed by the reduction network, whose route also places each sum on
  the lane the result's layout wants (so C's lane order is free);
* **pinned parts**: an output part on the lanes of some tensors but on the rows of another is fixed
  per STEP (one step per value; the routes pick that value's word and the write mask that value's
  lanes). So are spatial parts that do not fit L lanes together, fewest steps first;
* **time**: every other part is a loop level, contracted parts innermost (the temporal reduction),
  output parts outside, with one row stride per operand; adjacent levels merge when their strides
  allow, levels beyond ``loop_levels`` become several STEPs;
* the **routes**: distribution entries from :func:`fetta.search.benes_router.route_multicast`,
  reduction entries from :func:`fetta.search.reduction_router.plan_reduction` (with its fallback,
  a regrouping folded into the distribution routes), with ``keep``/``write`` masks for padding.

A contracted index must sit on the lanes of both operands or on the rows of both: the temporal
reduction cannot cross STEPs. The lane factors an index has in different tensors must divide one
another (the index is cut into parts at each of them).
Otherwise :exc:`MapperError` names the index; :func:`map_relayout` compiles an explicit re-layout
(copy) pass that fixes the layout, and :func:`choose_layouts` picks layouts that never need one.

Operands must hold 0 in their padding (as :meth:`TensorLayout.pack` writes them); the mapper keeps
that true of the results it writes, so results can be the next step's operands.
"""

import dataclasses
import functools
import itertools

import numpy as np

from ..hw import isa
from ..hw.accelerator import Datapath, Timing
from ..hw.config import AcceleratorConfig
from ..hw.distribution import pack_config as pack_dist_config
from ..hw.isa import Opcode, Rounding
from .benes_router import route_multicast
from .layout import LayoutError, TensorLayout, natural_layout
from .reduction_router import plan_reduction

__all__ = ["MapperError", "Program", "map_contraction", "map_relayout", "choose_layouts",
           "natural_layout", "TensorLayout"]

_MAX_COUNT = (1 << 15) - 1
_CANDIDATES = 16   # layouts of fewest beats compiled by choose_layouts to compare exact cycles
_STRIDE_LIMIT = 1 << 13
_ROUNDING = {"nearest_even": Rounding.NEAREST_EVEN, "stochastic": Rounding.STOCHASTIC}


class MapperError(ValueError):
    """A contraction the mapper cannot compile, with the reason."""


@dataclasses.dataclass(frozen=True)
class Program:
    """Microcode and route-table entries of one contraction (or re-layout), with its cost.

    Attributes
    ----------
    words : tuple of int
        64-bit instructions, without a final HALT (programs can be chained).
    dist_routes : tuple of (int, int)
        ``(entry, configuration bits)`` of the distribution route table.
    red_routes : tuple of (int, int)
        ``(entry, packed bits)`` of the reduction route table (configuration, keep, write).
    cycles : int
        Cycles of ``words`` from :class:`fetta.hw.accelerator.Timing` (no HALT).
    halt_cycles : int
        Cycles of the HALT that :meth:`image` appends.
    macs : int
        Useful multiply-accumulates: the product of all index extents (0 for a re-layout).
    issued_macs : int
        L per beat of the multiplying steps (the ``MACS`` counter).
    steps : int
        STEP instructions.
    copies : int
        STEPs that copy a tensor (``b_one``, the whole of :func:`map_relayout`).
    fills : int
        ``b_one`` STEPs that only write 0 into padding lanes of the result (keep mask empty).
    lanes : int
    spatial, pinned, temporal : tuple of str
        The index parts in each role, for reports (``"k"`` whole index, ``"k0"`` lane part,
        ``"k1"`` row part of a split index).
    """
    words: tuple
    dist_routes: tuple
    red_routes: tuple
    cycles: int
    halt_cycles: int
    macs: int
    issued_macs: int
    steps: int
    lanes: int
    copies: int = 0
    fills: int = 0
    spatial: tuple = ()
    pinned: tuple = ()
    temporal: tuple = ()

    @property
    def utilization(self):
        """Useful MACs per lane-cycle: ``macs / (cycles * L)``."""
        return self.macs / (self.cycles * self.lanes) if self.cycles else 0.0

    @property
    def relayouts(self):
        """STEPs that copy a tensor (``b_one`` set, not zero-filling padding)."""
        return self.copies

    def image(self, *, halt=True):
        """The instruction words, with a HALT appended unless ``halt`` is False."""
        return list(self.words) + ([isa.encode(Opcode.HALT)] if halt else [])

    def text(self):
        """The microcode as assembly."""
        return isa.disassemble(self.words)

    def load(self, machine, *, at=0):
        """Write the program (with HALT) and the route entries into ``machine`` (a model or driver
        with ``load_program``, ``set_dist_route`` and ``set_red_route``)."""
        machine.load_program(self.image(), at=at)
        for entry, bits in self.dist_routes:
            machine.set_dist_route(entry, bits)
        for entry, bits in self.red_routes:
            machine.set_red_route(entry, bits)


@dataclasses.dataclass
class _Part:
    """One part of an index: the whole index, its lane part (x0) or its row part (x1)."""
    index: str
    label: str
    size: int
    scale: int          # index value = sum of part value * scale
    homes: dict         # tensor key -> ("lane", weight) or ("row", stride)
    contracted: bool


def _parts(tensors, extents, c_key):
    """Cut every index into parts common to all tensors (at every lane factor used for it).

    With lane factors ``f1 | f2 | ...`` the index is ``x = p0 + f1 p1 + f2 p2 + ...``; part ``pk``
    sits on the lanes of a tensor whose factor exceeds its scale and on the rows of the others.
    """
    parts = []
    for index, n in extents.items():
        having = [(key, lay) for key, lay in tensors.items() if index in lay.indices]
        contracted = index not in tensors[c_key].indices
        factors = {key: lay.factor(index) for key, lay in having if lay.factor(index) is not None}
        cuts = sorted(set(factors.values()) - {1})
        if any(hi % lo for lo, hi in zip(cuts, cuts[1:])):
            shown = ", ".join(f"{f} in {tensors[k].name}" for k, f in factors.items())
            raise MapperError(f"index {index!r} is split on the lanes with factors that do not divide "
                              f"one another ({shown}); re-lay out one tensor (map_relayout) to a "
                              f"common factor")
        scales = [1] + cuts
        sizes = [hi // lo for lo, hi in zip(scales, scales[1:])] + [-(-n // scales[-1])]
        kept = [(s, z) for s, z in zip(scales, sizes) if z > 1]
        for k, (scale, size) in enumerate(kept):
            homes = {}
            for key, lay in having:
                f = factors.get(key)
                if f is not None and scale < f:
                    homes[key] = ("lane", lay.lane_weight(index) * scale)
                else:
                    homes[key] = ("row", lay.stride(index) * (scale // (f or 1)))
            label = index if len(kept) == 1 else f"{index}{k}"
            parts.append(_Part(index, label, size, scale, homes, contracted))
    return parts


def _row_limit(layout, index):
    """Values of ``index`` that ``layout`` stores rows for (its extent, rounded up to its factor)."""
    n = layout.extents[index]
    f = layout.factor(index) or 1
    return -(-n // f) * f


def _check_tensors(a, b, c, config):
    tensors = {"a": a, "c": c} if b is None else {"a": a, "b": b, "c": c}
    for key, lay in tensors.items():
        if not isinstance(lay, TensorLayout):
            raise MapperError(f"operand {key.upper()} must be a TensorLayout, not {lay!r}")
        try:
            lay.check_fits(config)
        except LayoutError as e:
            raise MapperError(str(e)) from None
    regions = [lay.region for lay in tensors.values()]
    if len(set(regions)) != len(regions):
        names = ", ".join(f"{lay.name} in {lay.region}" for lay in tensors.values())
        raise MapperError(f"operands and result must be in distinct regions ({names})")
    extents = {}
    for lay in tensors.values():
        for index, size in zip(lay.indices, lay.sizes):
            if extents.setdefault(index, (size, lay.name))[0] != size:
                raise MapperError(f"index {index!r} has extent {extents[index][0]} in "
                                  f"{extents[index][1]} but {size} in {lay.name}")
    operands = set(a.indices) | (set() if b is None else set(b.indices))
    for index in c.indices:
        if index not in operands:
            raise MapperError(f"index {index!r} of {c.name} appears in neither operand")
    if b is None and set(a.indices) != set(c.indices):
        raise MapperError(f"a re-layout needs the same indices in {a.name} {a.indices!r} and "
                          f"{c.name} {c.indices!r}")
    return tensors, {x: s for x, (s, _) in extents.items()}


class _Emitter:
    """Turns loop nests into LOOP/BASE/STEP words, tracking register state and cycles."""

    def __init__(self, config, timing):
        self.config = config
        self.timing = timing
        self.words = []
        self.cycles = 0
        self.steps = 0
        self.beats_mult = 0
        self.counts = {"copy": 0, "fill": 0}
        self.loops = [None] * config.loop_levels
        self.base = None

    def _word(self, opcode, **fields):
        try:
            word = isa.encode(opcode, **fields)
            isa.check(*isa.decode(word), self.config)
        except isa.IsaError as e:
            raise MapperError(f"instruction out of range: {e}") from None
        self.words.append(word)

    def nest(self, levels, red, bases, regions, routes, *, shift, rounding, b_one, kind=None):
        """Emit a nest; ``levels`` inner to outer as ``(count, stride_a, stride_b, stride_c)``."""
        kept, red_kept = [], 0
        for k, level in enumerate(levels):
            if level[0] > 1:
                kept.append(list(level))
                red_kept += k < red
        merged, merged_red = [], 0
        for k, level in enumerate(kept):
            is_red = k < red_kept
            if merged and (merged_red == len(merged)) == is_red:
                inner = merged[-1]
                strides_ok = all(level[1 + t] == inner[0] * inner[1 + t] for t in range(3)
                                 if not (is_red and t == 2))
                if strides_ok and inner[0] * level[0] <= _MAX_COUNT:
                    inner[1:] = [inner[1], inner[2], level[3] if is_red else inner[3]]
                    inner[0] *= level[0]
                    continue
            merged.append(level)
            merged_red += is_red
        if merged_red > self.config.loop_levels:
            raise MapperError(f"the temporal reduction needs {merged_red} loop levels, the "
                              f"configuration has loop_levels = {self.config.loop_levels}")
        for level in merged:
            if level[0] > _MAX_COUNT:
                raise MapperError(f"a loop of {level[0]} iterations exceeds the count field "
                                  f"({_MAX_COUNT}); use shorter row parts")
        if not merged:
            merged = [[1, 0, 0, 0]]
        inner, outer = merged[:self.config.loop_levels], merged[self.config.loop_levels:]
        for values in itertools.product(*(range(level[0]) for level in outer)):
            base = [bases[t] + sum(v * level[1 + t] for v, level in zip(values, outer))
                    for t in range(3)]
            for k, level in enumerate(inner):
                if self.loops[k] != tuple(level):
                    self._word(Opcode.LOOP, level=k, count=level[0], stride_a=level[1],
                               stride_b=level[2], stride_c=level[3])
                    self.loops[k] = tuple(level)
                    self.cycles += self.timing.instr
            if self.base != (tuple(regions), tuple(base)):
                self._word(Opcode.BASE, region_a=regions[0], region_b=regions[1],
                           region_c=regions[2], base_a=base[0], base_b=base[1], base_c=base[2])
                self.base = (tuple(regions), tuple(base))
                self.cycles += self.timing.instr
            self._word(Opcode.STEP, levels=len(inner), red=merged_red, route_a=routes[0],
                       route_b=routes[1], route_c=routes[2], shift=shift, rounding=rounding,
                       b_one=int(b_one))
            beats = int(np.prod([level[0] for level in inner]))
            self.cycles += self.timing.step_cycles(beats)
            self.steps += 1
            if kind is not None:
                self.counts[kind] += 1
            if not b_one:
                self.beats_mult += beats


# Routes and datapath parameters depend only on their arguments; the CSSE compiles many
# candidate mappings of the same configuration, so they are computed once.

@functools.lru_cache(maxsize=None)
def _datapath(config):
    datapath = Datapath(config)
    return datapath, Timing.from_datapath(datapath)


@functools.lru_cache(maxsize=1 << 14)
def _dist_bits(sources):
    return pack_dist_config(route_multicast(list(sources)), len(sources))


@functools.lru_cache(maxsize=1 << 14)
def _plan(groups, lanes):
    return plan_reduction({q: set(g) for q, g in groups}, lanes)


class _Routes:
    """Route-table entries, deduplicated, numbered from a base."""

    def __init__(self, datapath, dist_base, red_base):
        self.datapath = datapath
        self.dist, self.red = {}, {}
        self.dist_base, self.red_base = dist_base, red_base

    def _full(self, name, table, base, size):
        if base + len(table) >= size:
            raise MapperError(f"the mapping needs more than {size - base} {name} routes from entry "
                              f"{base}; the table has {size} entries")

    def dist_entry(self, sources):
        key = tuple(sources)
        if key not in self.dist:
            self._full("distribution", self.dist, self.dist_base, self.datapath.config.dist_routes)
            bits = _dist_bits(key)
            self.dist[key] = (self.dist_base + len(self.dist), bits)
        return self.dist[key][0]

    def red_entry(self, config, keep, write):
        keep, write = tuple(keep), tuple(write)
        key = (config, keep, write)
        if key not in self.red:
            self._full("reduction", self.red, self.red_base, self.datapath.config.red_routes)
            bits = self.datapath.pack_red_entry(config, keep=keep, write=write)
            self.red[key] = (self.red_base + len(self.red), bits)
        return self.red[key][0]


def map_contraction(a, b, c, config=None, *, shift=0, rounding="nearest_even", dist_base=0,
                    red_base=0):
    """Compile ``C = sum A * B`` over the given layouts into a :class:`Program`.

    Indices are matched by name: an index of C must be in A or B (batch or free), an index of A and
    B not in C is contracted, an index of only one operand and not of C is summed over that operand.

    Parameters
    ----------
    a, b, c : TensorLayout
        The operands and the result, in three distinct regions. The result is written in layout
        ``c`` directly (any lane order, lane indices and row strides): no separate transpose pass.
    config : AcceleratorConfig
    shift : int
        Requantizer right shift of the sums.
    rounding : str
        ``"nearest_even"`` or ``"stochastic"``.
    dist_base, red_base : int
        First route-table entries the program may use (to chain programs).

    Raises
    ------
    MapperError
        With the reason: a tensor that does not fit its region, regions not distinct, an index of C
        in neither operand, extents that disagree, a contracted index on the lanes of one operand
        but the rows of the other, lane factors that do not divide one another, a nest beyond the
        fields or tables.
    """
    config = AcceleratorConfig() if config is None else config
    if not isinstance(config, AcceleratorConfig):
        raise MapperError(f"config must be an AcceleratorConfig, not {config!r}")
    if b is None:
        raise MapperError("operand B is missing; use map_relayout for a copy")
    return _compile(a, b, c, config, shift=shift, rounding=rounding, dist_base=dist_base,
                    red_base=red_base)


def map_relayout(src, dst, config=None, *, dist_base=0, red_base=0):
    """Compile an explicit re-layout (copy) of ``src`` into ``dst`` through the networks.

    Each STEP has ``b_one = 1`` (B is 1 on every lane), no temporal reduction and shift 0. This is
    the "no in-flight shaping" baseline's extra pass, and the fix for layouts a contraction cannot
    read. Raises :exc:`MapperError` as :func:`map_contraction`.
    """
    config = AcceleratorConfig() if config is None else config
    if not isinstance(config, AcceleratorConfig):
        raise MapperError(f"config must be an AcceleratorConfig, not {config!r}")
    return _compile(src, None, dst, config, shift=0, rounding="nearest_even", dist_base=dist_base,
                    red_base=red_base)


def _compile(a, b, c, config, *, shift, rounding, dist_base, red_base):
    if rounding not in _ROUNDING:
        raise MapperError(f"rounding must be one of {sorted(_ROUNDING)!r}, not {rounding!r}")
    if not isinstance(shift, int) or not 0 <= shift < config.sum_width:
        raise MapperError(f"shift must be an integer from 0 to {config.sum_width - 1}, not {shift!r}")
    tensors, extents = _check_tensors(a, b, c, config)
    L = config.lanes
    datapath, timing = _datapath(config)
    parts = _parts(tensors, extents, "c")

    spatial_k, spatial_out, pinned, temporal = [], [], [], []
    for p in parts:
        kinds = {home[0] for home in p.homes.values()}
        if kinds == {"row"}:
            temporal.append(p)
        elif kinds == {"lane"}:
            (spatial_k if p.contracted else spatial_out).append(p)
        elif p.contracted:
            on = [tensors[k].name for k, h in p.homes.items() if h[0] == "lane"]
            off = [tensors[k].name for k, h in p.homes.items() if h[0] == "row"]
            raise MapperError(f"contracted index {p.index!r} is on the lanes of {', '.join(on)} but "
                              f"on the rows of {', '.join(off)}; re-lay out one operand "
                              f"(map_relayout) or choose compatible layouts")
        else:
            pinned.append(p)
    g = int(np.prod([p.size for p in spatial_k], dtype=object))
    if g > L:
        raise MapperError(f"contracted lane parts {[p.label for p in spatial_k]} need {g} lanes, "
                          f"more than {L}")
    # Pin the fewest output combinations that let the rest fit the lanes.
    best = None
    for r in range(len(spatial_out) + 1):
        for subset in itertools.combinations(range(len(spatial_out)), r):
            rest = [p for k, p in enumerate(spatial_out) if k not in subset]
            if g * int(np.prod([p.size for p in rest], dtype=object)) > L:
                continue
            cost = int(np.prod([spatial_out[k].size for k in subset], dtype=object))
            if best is None or cost < best[0]:
                best = (cost, subset)
    pinned += [spatial_out[k] for k in best[1]]
    spatial_out = [p for k, p in enumerate(spatial_out) if k not in best[1]]

    # CE lanes: spatial output parts (outer, in C's lane order) then contracted parts (inner).
    c_rank = {x: k for k, (x, _) in enumerate(c.lane_indices)}
    spatial_out.sort(key=lambda p: c_rank.get(p.index, len(c_rank)))
    space = spatial_out + spatial_k
    space_sizes = [p.size for p in space]
    used = int(np.prod(space_sizes, dtype=object))
    lane_values = [np.unravel_index(l, space_sizes) if space else () for l in range(used)]

    # Loop order: contracted parts innermost (smallest A stride inside), outputs by C stride.
    def stride_of(p, key):
        home = p.homes.get(key)
        return home[1] if home is not None else 0
    red_parts = sorted((p for p in temporal if p.contracted), key=lambda p: stride_of(p, "a"))
    out_parts = sorted((p for p in temporal if not p.contracted), key=lambda p: stride_of(p, "c"))
    loop_parts = red_parts + out_parts

    emitter = _Emitter(config, timing)
    routes = _Routes(datapath, dist_base, red_base)
    keys = ("a", "b", "c")
    regions = [tensors["a"].region, tensors["b"].region if b is not None else None, c.region]
    if b is None:
        regions[1] = next(r for r in range(config.regions) if r not in (regions[0], regions[2]))
    c_pinned_lanes = any(p.homes["c"][0] == "lane" for p in pinned if "c" in p.homes)

    def lane_position(key, values):
        return sum(values[p.label] * p.homes[key][1] for p in space + pinned
                   if key in p.homes and p.homes[key][0] == "lane")

    for combo in itertools.product(*(range(p.size) for p in pinned)):
        fixed = {p.label: v for p, v in zip(pinned, combo)}
        sources = {}
        for key in keys[:2] if b is not None else keys[:1]:
            src = [0] * L
            for l, vals in enumerate(lane_values):
                values = dict(fixed)
                values.update({p.label: int(v) for p, v in zip(space, vals)})
                src[l] = lane_position(key, values)
            sources[key] = src
        groups = {}
        for l, vals in enumerate(lane_values):
            values = dict(fixed)
            values.update({p.label: int(v) for p, v in zip(space, vals)})
            groups.setdefault(lane_position("c", values), set()).add(l)
        plan = _plan(tuple(sorted((q, tuple(sorted(g))) for q, g in groups.items())), L)
        if plan.permutation is not None:
            for key in sources:
                sources[key] = [sources[key][plan.permutation[k]] for k in range(L)]
        keep = sorted(groups)
        if not c_pinned_lanes:
            write = list(range(L))
        elif not any(v for p, v in zip(pinned, combo) if p.homes.get("c", ("row",))[0] == "lane"):
            # One step per row of C also writes 0 into the lanes past C's lane extent.
            write = sorted(set(keep) | set(range(c.lane_extent, L)))
        else:
            write = keep
        route_c = routes.red_entry(plan.route.config, keep, write)
        route_a = routes.dist_entry(sources["a"])
        route_b = routes.dist_entry(sources["b"]) if b is not None else 0
        bases = [tensors[k].base + sum(v * p.homes[k][1] for p, v in zip(pinned, combo)
                                       if k in p.homes and p.homes[k][0] == "row")
                 if k in tensors else 0 for k in keys]
        levels = []
        for p in loop_parts:
            count = p.size
            offset = sum(fixed[q.label] * q.scale for q in pinned if q.index == p.index)
            if offset or p.scale > 1:
                # The outer part of a split index: read no row past any tensor's rows of it.
                limit = min(_row_limit(tensors[k], p.index) for k in p.homes)
                count = min(count, -(-(limit - offset) // p.scale))
            levels.append((count, stride_of(p, "a"), stride_of(p, "b"), stride_of(p, "c")))
        emitter.nest(levels, len(red_parts), bases, regions, (route_a, route_b, route_c),
                     shift=shift, rounding=_ROUNDING[rounding].value, b_one=b is None,
                     kind="copy" if b is None else None)

    # Lanes of C's last row of a split index whose pinned parts left some of it unwritten
    # (values past the extent): write 0 there.
    for index in c.indices:
        f, n = c.factor(index), extents[index]
        if f is None or n % f == 0 or not any(
                q.index == index and q.homes["c"][0] == "lane" for q in pinned):
            continue
        last = n // f
        lanes = [l for l in range(c.lane_extent) if (l // c.lane_weight(index)) % f >= n % f]
        levels = [(count, 0, 0, stride) for x, count, stride in c.row_parts() if x != index]
        bases = [a.base, 0, c.base + last * c.stride(index)]
        route_c = routes.red_entry(0, [], lanes)
        emitter.nest(levels, 0, bases, regions, (routes.dist_entry([0] * L), 0, route_c),
                     shift=0, rounding=0, b_one=True, kind="fill")

    if len(emitter.words) + 1 > config.prog_depth:
        raise MapperError(f"the program needs {len(emitter.words) + 1} instructions with HALT; "
                          f"prog_depth is {config.prog_depth}")
    macs = int(np.prod(list(extents.values()), dtype=object)) if b is not None else 0
    return Program(
        words=tuple(emitter.words),
        dist_routes=tuple(sorted(routes.dist.values())),
        red_routes=tuple(sorted(routes.red.values())),
        cycles=emitter.cycles, halt_cycles=timing.instr, macs=macs,
        issued_macs=emitter.beats_mult * L, steps=emitter.steps, lanes=L,
        copies=emitter.counts["copy"], fills=emitter.counts["fill"],
        spatial=tuple(p.label for p in space), pinned=tuple(p.label for p in pinned),
        temporal=tuple(p.label for p in loop_parts))


def choose_layouts(a, b, c, config=None, *, regions=(0, 1, 2), bases=(0, 0, 0), names=("A", "B", "C"),
                   max_lane_indices=None):
    """Layouts of A, B and C that let one contraction run with the fewest beats.

    Chooses a factor for every index (a power of two or the whole extent, their product at most L)
    so that the number of beats, the product of ``ceil(extent / factor)``, is smallest, with every
    tensor within ``config.depth`` rows; among the fewest-beat choices (up to 16, fewer padded
    lanes and more indices of C first) the one of fewest exact cycles wins. The chosen parts are on
    the lanes of every tensor that has them, so they are all spatial: contracted ones are reduced by
    the reduction network, the others multicast to the operand that lacks them (e.g. ``g`` lanes of
    a contracted index times ``L/g`` of a free index). Rows are dense and row-major in each tensor's
    index order.

    Parameters
    ----------
    a, b, c : (indices, sizes)
        Index names (a string or sequence) and extents of each tensor.
    config : AcceleratorConfig
    regions, bases, names : triples
        Where to put the three tensors and what to call them.
    max_lane_indices : int, optional
        At most this many indices on the lanes (1 gives the one-index baseline).

    Returns
    -------
    (TensorLayout, TensorLayout, TensorLayout)
    """
    config = AcceleratorConfig() if config is None else config
    L = config.lanes
    specs = [(tuple(ix), tuple(sz)) for ix, sz in (a, b, c)]
    extents = {}
    for ix, sz in specs:
        if len(ix) != len(sz):
            raise MapperError(f"indices {ix!r} and sizes {sz!r} differ in length")
        for x, s in zip(ix, sz):
            if extents.setdefault(x, s) != s:
                raise MapperError(f"index {x!r} has extents {extents[x]} and {s}")
    names_c = set(specs[2][0])
    options = {}
    for x, n in extents.items():
        opts = {1} | {1 << k for k in range(L.bit_length()) if 1 << k <= min(n, L)}
        if n <= L:
            opts.add(n)
        options[x] = sorted(opts)
    order = list(extents)
    candidates = []
    for choice in itertools.product(*(options[x] for x in order)):
        lanes = int(np.prod(choice, dtype=object))
        if lanes > L or (max_lane_indices is not None
                         and sum(f > 1 for f in choice) > max_lane_indices):
            continue
        chosen = dict(zip(order, choice))
        if any(int(np.prod([-(-n // chosen[x]) for x, n in zip(ix, sz)], dtype=object)) > config.depth
               for ix, sz in specs):
            continue  # some tensor would not fit a region
        beats = int(np.prod([-(-extents[x] // f) for x, f in zip(order, choice)], dtype=object))
        padding = int(np.prod([-(-extents[x] // f) * f for x, f in zip(order, choice)],
                              dtype=object)) - int(np.prod(list(extents.values()), dtype=object))
        on_c = -sum(f > 1 for x, f in zip(order, choice) if x in names_c)
        candidates.append(((beats, padding, on_c), chosen))
    if not candidates:
        raise MapperError(f"no choice of lane indices fits every tensor in {config.depth} rows")
    candidates.sort(key=lambda item: item[0])

    def build(factors):
        layouts = []
        for (ix, sz), region, base, name in zip(specs, regions, bases, names):
            lanes = [(x, factors[x]) for x in ix if factors[x] > 1]
            layouts.append(natural_layout(name, ix, sz, lanes=L, lane_indices=lanes, region=region,
                                          base=base))
        return tuple(layouts)

    # Among the fewest-beat candidates, the exact cycle count (loop and base words) decides.
    fewest = [f for key, f in candidates if key[0] == candidates[0][0][0]][:_CANDIDATES]
    best = None
    for factors in fewest:
        layouts = build(factors)
        try:
            cycles = map_contraction(*layouts, config).cycles
        except MapperError:
            continue
        if best is None or cycles < best[0]:
            best = (cycles, layouts)
    return best[1] if best is not None else build(candidates[0][1])


#: Shapes of docs/mapper.md: (name, A indices and sizes, B, C).
EXAMPLES = (
    ("matmul 128x64 . 64x32", ("ik", (128, 64)), ("kj", (64, 32)), ("ij", (128, 32))),
    ("rank 4: C[b,j] = A[b,r] B[r,j], j = 4", ("br", (256, 4)), ("rj", (4, 4)), ("bj", (256, 4))),
    ("rank 4, batch 8: C[b,j] = A[b,r] B[r,j]", ("br", (8, 4)), ("rj", (4, 4)), ("bj", (8, 4))),
    ("TT core: Y[b,j,s] = X[b,i,r] G[r,i,j,s]", ("bir", (32, 8, 4)), ("rijs", (4, 8, 8, 4)),
     ("bjs", (32, 8, 4))),
    ("small TT core: 4x4x4 . 4x4x4x2", ("bir", (4, 4, 4)), ("rijs", (4, 4, 4, 2)), ("bjs", (4, 4, 2))),
    ("batched outer: C[b,i,j] = A[b,i] B[b,j]", ("bi", (64, 4)), ("bj", (64, 4)), ("bij", (64, 4, 4))),
    ("Tucker factor: T[i,q,s] = G[p,q,s] U[i,p]", ("pqs", (4, 4, 4)), ("ip", (16, 4)),
     ("iqs", (16, 4, 4))),
    ("odd sizes: C[i,j] = A[i,k] B[k,j], 37x23x19", ("ik", (37, 23)), ("kj", (23, 19)),
     ("ij", (37, 19))),
)


def utilization_table(config=None, examples=EXAMPLES, *, check=True):
    """Markdown table of cycles and utilization with one index on the lanes and with chosen layouts.

    With ``check``, every program runs on the model (:class:`fetta.sim.model.Machine`) on random
    operands, and its cycles and results are compared with the prediction and numpy.
    """
    from ..sim.golden import requantize
    from ..sim.model import Machine
    config = AcceleratorConfig() if config is None else config
    rng = np.random.default_rng(0)
    lines = ["| contraction | MACs | one lane index: cycles, util. | chosen: lanes | cycles | util. |",
             "|---|---|---|---|---|---|"]
    for name, a, b, c in examples:
        row = [name, None]
        for limit in (1, None):
            try:
                la, lb, lc = choose_layouts(a, b, c, config, max_lane_indices=limit)
            except MapperError:
                row.append("does not fit")
                continue
            program = map_contraction(la, lb, lc, config)
            if check:
                A = rng.integers(config.word_min, config.word_max + 1, la.shape)
                B = rng.integers(config.word_min, config.word_max + 1, lb.shape)
                machine = Machine(config)
                machine.write_rows(la.region, la.base, la.pack(A))
                machine.write_rows(lb.region, lb.base, lb.pack(B))
                program.load(machine)
                result = machine.run()
                expr = f"{''.join(la.indices)},{''.join(lb.indices)}->{''.join(lc.indices)}"
                want = requantize(np.einsum(expr, A, B), 0, config.width, acc_width=config.sum_width)[0]
                got = lc.unpack(machine.read_rows(lc.region, lc.base, lc.rows_needed))
                if (result.error or result.counters.cycles != program.cycles + program.halt_cycles
                        or not np.array_equal(got, want)):
                    raise AssertionError(f"{name}: the model disagrees with the mapper")
            row[1] = f"{program.macs}"
            if limit == 1:
                row.append(f"{program.cycles}, {program.utilization:.1%}")
            else:
                lanes = " ".join(f"{x}/{f}" for x, f in
                                 dict(la.lane_indices + lb.lane_indices + lc.lane_indices).items())
                row += [lanes, f"{program.cycles}", f"{program.utilization:.1%}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _parse_expr(expr, sizes_text):
    try:
        inputs, output = expr.replace(" ", "").split("->")
        ia, ib = inputs.split(",")
    except ValueError:
        raise MapperError(f"expression must look like 'ik,kj->ij', not {expr!r}") from None
    sizes = {}
    for item in filter(None, sizes_text.split(",")):
        name, eq, value = item.partition("=")
        if not eq or not value.strip().isdigit():
            raise MapperError(f"sizes must look like 'i=37,k=23', not {sizes_text!r}")
        sizes[name.strip()] = int(value)
    missing = sorted(set(ia + ib + output) - set(sizes))
    if missing:
        raise MapperError(f"no size given for indices {missing!r}")
    return [(ix, tuple(sizes[x] for x in ix)) for ix in (ia, ib, output)]


def register(sub):
    """Add the ``map`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``).

    ``fetta map 'ik,kj->ij' --sizes i=37,k=23,j=19`` chooses layouts, compiles the contraction and
    prints the layouts, the parts in space and time, cycles, MACs and utilization (``--asm``: the
    microcode too); ``fetta map --table`` prints the table of docs/mapper.md, checked on the model.
    """
    parser = sub.add_parser("map", help="compile one pairwise contraction to microcode",
                            description="Choose layouts for one pairwise contraction, compile it "
                                        "and report its exact cycles and utilization.")
    parser.add_argument("expr", nargs="?", help="the contraction, e.g. 'ik,kj->ij'")
    parser.add_argument("--sizes", default="", help="index extents, e.g. i=37,k=23,j=19")
    parser.add_argument("--config", help="accelerator configuration (TOML); default: the default")
    parser.add_argument("--shift", type=int, default=0, help="requantizer shift")
    parser.add_argument("--asm", action="store_true", help="print the microcode")
    parser.add_argument("--table", action="store_true",
                        help="print the utilization table of docs/mapper.md (depth 8192)")
    parser.set_defaults(run=_run_map)


def _run_map(args):
    if args.table:
        config = AcceleratorConfig.from_toml(args.config) if args.config else \
            AcceleratorConfig(depth=8192)
        print(utilization_table(config), end="")
        return 0
    if not args.expr:
        raise MapperError("give a contraction such as 'ik,kj->ij' (or --table)")
    config = AcceleratorConfig.from_toml(args.config) if args.config else AcceleratorConfig()
    a, b, c = choose_layouts(*_parse_expr(args.expr, args.sizes), config)
    program = map_contraction(a, b, c, config, shift=args.shift)
    for layout in (a, b, c):
        print(layout.describe())
    print(f"spatial {' '.join(program.spatial) or '-'}; pinned {' '.join(program.pinned) or '-'}; "
          f"temporal {' '.join(program.temporal) or '-'}")
    print(f"{program.steps} steps, {len(program.words)} words, {program.cycles} cycles, "
          f"{program.macs} MACs, utilization {program.utilization:.1%}")
    if args.asm:
        print(program.text(), end="")
    return 0


if __name__ == "__main__":
    print(utilization_table(AcceleratorConfig(depth=8192)), end="")
