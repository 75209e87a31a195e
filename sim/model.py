"""Cycle-exact, bit-exact model of the accelerator, vectorized per step.

:class:`Machine` holds the same state as the hardware (scratchpad, program memory, route tables, loop
and operand registers, PRNG, status, counters) and executes the same 64-bit instructions
(:mod:`fetta.hw.isa`). A ``STEP`` is evaluated with numpy over its whole loop nest, in chunks that
bound memory: the operand regions are routed once (the distribution networks as lane maps), the
beats are strided views of them (row addresses are affine in the loop counters) contracted over the
temporal reduction by ``np.einsum`` (or, when an accumulator could saturate, gathered and summed
with per-MAC saturation), the reduction network is a 0/1 matrix, then requantization. There is no
Python loop per MAC or per cycle. Cycle counts come from :class:`fetta.hw.accelerator.Timing`, the same object the RTL
controller is built from.
"""

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..hw import isa
from ..hw.accelerator import Datapath, Timing
from ..hw.config import AcceleratorConfig
from ..hw.isa import Cause, Opcode
from .golden import PRNG, requantize, saturating_sum

__all__ = ["Machine", "Counters", "RunResult"]

# Elements (beats x lanes) evaluated at once; bounds the model's memory to some hundred MB.
_CHUNK = 1 << 21


@dataclasses.dataclass
class Counters:
    """Performance counters, as the CSRs of the same names (modulo ``2 ** counter_width``)."""
    cycles: int = 0
    busy: int = 0
    macs: int = 0
    stalls: int = 0


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Outcome of :meth:`Machine.run`."""
    done: bool
    error: bool
    cause: Cause
    err_pc: int
    pc: int
    qsat: bool
    counters: Counters


class Machine:
    """The accelerator's architectural state and an executor of its programs.

    Parameters
    ----------
    config : AcceleratorConfig
    datapath : Datapath, optional
        The network and requantizer models and latencies (default: built from ``config``).

    Attributes
    ----------
    scratchpad : int64 ndarray of shape ``(regions, depth, lanes)``
        Signed W-bit words.
    program : list of int
        Program memory: ``prog_depth`` 64-bit instruction words.
    dist_table : list of int
        Distribution route entries (configuration bits as integers).
    red_table : list of int
        Reduction route entries (configuration, keep and write masks, packed as in the RTL).
    seed : int
        The ``SEED`` CSR.
    """

    def __init__(self, config=None, *, datapath=None):
        self.config = config if config is not None else AcceleratorConfig()
        if not isinstance(self.config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {self.config!r}")
        self.datapath = datapath if datapath is not None else Datapath(self.config)
        self.timing = Timing.from_datapath(self.datapath)
        c = self.config
        self.scratchpad = np.zeros((c.regions, c.depth, c.lanes), dtype=np.int64)
        self.program = [0] * c.prog_depth
        self.dist_table = [0] * c.dist_routes
        self.red_table = [0] * c.red_routes
        self.seed = 0
        self.reset()

    # Architectural state that a reset (or START) touches.

    def reset(self):
        """Registers as after a hardware reset (memories keep their contents)."""
        c = self.config
        self.count = [1] * c.loop_levels
        self.strides = np.zeros((3, c.loop_levels), dtype=np.int64)
        self.regions = [0, 1, 2]
        self.bases = [0, 0, 0]
        self.done = False
        self.error = False
        self.cause = Cause.NONE
        self.err_pc = 0
        self.pc = 0
        self.qsat = False
        self.counters = Counters()
        self.prng = _LanePRNG(c.lanes)
        self._dist_cache = {}
        self._red_cache = {}

    def clear(self):
        """The CLEAR command: clears DONE, ERROR, CAUSE, ERR_PC and the sticky flags."""
        self.done = False
        self.error = False
        self.cause = Cause.NONE
        self.err_pc = 0
        self.qsat = False

    # Loading.

    def load_program(self, words, *, at=0):
        """Write instruction words (ints) into program memory from address ``at``."""
        words = [int(w) for w in words]
        if at < 0 or at + len(words) > self.config.prog_depth:
            raise ValueError(f"program of {len(words)} words at {at} does not fit "
                             f"prog_depth = {self.config.prog_depth}")
        for k, w in enumerate(words):
            if not 0 <= w < 1 << isa.INSTR_WIDTH:
                raise ValueError(f"instruction words must be 64-bit unsigned, not {w!r}")
            self.program[at + k] = w

    def set_dist_route(self, entry, bits):
        """Store distribution configuration ``bits`` (an int) in entry ``entry``."""
        self.dist_table[entry] = self.datapath.check_dist_bits(bits)
        self._dist_cache.pop(entry, None)

    def set_red_route(self, entry, bits):
        """Store a packed reduction entry (see :meth:`Datapath.pack_red_entry`) in entry ``entry``."""
        self.red_table[entry] = self.datapath.check_red_entry(bits)
        self._red_cache.pop(entry, None)

    # Execution.

    def run(self, *, entry=0, max_instructions=1 << 24):
        """START at ``entry`` and run to DONE; return a :class:`RunResult`.

        As the hardware, START is refused (returns at once, nothing changes) while ERROR is set.
        """
        if self.error:
            return self._result()
        self.done = False
        self.counters = Counters()
        self.prng.reseed(self.seed)
        self.pc = entry
        for _ in range(max_instructions):
            stopped = self._execute()
            self._wrap_counters()
            if stopped:
                return self._result()
        raise RuntimeError(f"no HALT within {max_instructions} instructions")

    def _wrap_counters(self):
        # The hardware's counters are counter_width bits wide and wrap; an instruction's
        # increments summed and then wrapped give the same value.
        mask, k = self.config.counter_mask, self.counters
        k.cycles &= mask
        k.busy &= mask
        k.macs &= mask
        k.stalls &= mask

    def _result(self):
        return RunResult(done=self.done, error=self.error, cause=self.cause, err_pc=self.err_pc,
                         pc=self.pc, qsat=self.qsat, counters=dataclasses.replace(self.counters))

    def _fail(self, cause):
        self.done = True
        self.error = True
        self.cause = cause
        self.err_pc = self.pc
        return True

    def _execute(self):
        """Execute the instruction at ``pc``; return True when the machine stopped."""
        c, t, k = self.config, self.timing, self.counters
        if self.pc >= c.prog_depth:
            k.cycles += t.fetch_fault
            return self._fail(Cause.ADDRESS)
        word = self.program[self.pc]
        k.cycles += t.instr
        try:
            opcode, f = isa.decode(word)
            isa.check(opcode, f, c)
        except isa.IsaError:
            if word & 0xF == Opcode.STEP.value:
                k.cycles += t.step_illegal - t.instr
            return self._fail(Cause.ILLEGAL)
        if opcode == Opcode.HALT:
            self.done = True
            return True
        if opcode == Opcode.LOOP:
            self.count[f["level"]] = f["count"]
            self.strides[:, f["level"]] = (f["stride_a"], f["stride_b"], f["stride_c"])
        elif opcode == Opcode.BASE:
            self.regions = [f["region_a"], f["region_b"], f["region_c"]]
            self.bases = [f["base_a"], f["base_b"], f["base_c"]]
        elif opcode == Opcode.STEP:
            return self._step(f)
        self.pc += 1
        return False

    def _address_ranges_ok(self, levels, red, b_one):
        depth = self.config.depth
        counts = np.array(self.count[:levels], dtype=np.int64)
        for op in range(3):
            if op == 1 and b_one:
                continue
            ext = (counts - 1) * self.strides[op, :levels]
            if op == 2:
                ext = ext[red:]
            lo = self.bases[op] + int(np.minimum(ext, 0).sum())
            hi = self.bases[op] + int(np.maximum(ext, 0).sum())
            if lo < 0 or hi >= depth:
                return False
        return True

    def _addresses(self, op, levels, first_level=0):
        """Row addresses of operand ``op`` over levels ``first_level..levels-1``, outermost first.

        Computed only for a step that passed the range check, so they fit int32.
        """
        addr = np.array(self.bases[op], dtype=np.int32)
        for lvl in range(levels - 1, first_level - 1, -1):   # outermost first: C order
            step = (np.arange(self.count[lvl], dtype=np.int32) * np.int32(self.strides[op, lvl]))
            addr = np.add.outer(addr, step).reshape(-1)
        return addr.reshape(-1)

    def _dist_map(self, entry):
        if entry not in self._dist_cache:
            self._dist_cache[entry] = self.datapath.dist_lane_map(self.dist_table[entry])
        return self._dist_cache[entry]

    def _red_entry(self, entry):
        if entry not in self._red_cache:
            self._red_cache[entry] = self.datapath.red_semantics(self.red_table[entry])
        return self._red_cache[entry]

    def _step(self, f):
        c, t, k = self.config, self.timing, self.counters
        levels, red, b_one = f["levels"], f["red"], bool(f["b_one"])
        if not self._address_ranges_ok(levels, red, b_one):
            k.cycles += t.step_setup - t.instr     # the check ends the setup
            k.stalls += 1                           # its cycle counts as the load
            return self._fail(Cause.ADDRESS)
        L = c.lanes
        n = int(np.prod(self.count[:levels], dtype=object))
        sweep = int(np.prod(self.count[:red], dtype=object))
        outputs = n // sweep
        # Fetch, read and decode (t.instr) are counted already.
        k.cycles += t.step_setup - t.instr + n + t.drain
        k.busy += n
        k.stalls += t.step_stalls
        if not b_one:
            k.macs += n * L

        addr_c = self._addresses(2, levels, red)
        src_a = self._dist_map(f["route_a"])
        src_b = None if b_one else self._dist_map(f["route_b"])
        matrix, keep, write = self._red_entry(f["route_c"])
        mode = "stochastic" if f["rounding"] == isa.Rounding.STOCHASTIC.value else "nearest_even"
        reg_a = self.scratchpad[self.regions[0]]
        reg_b = self.scratchpad[self.regions[1]]
        reg_c = self.scratchpad[self.regions[2]]
        max_a = int(np.abs(reg_a).max()) if reg_a.size else 0
        max_b = 1 if b_one else (int(np.abs(reg_b).max()) if reg_b.size else 0)
        # No partial sum of a sweep can leave the accumulator's range: plain sums are exact.
        safe = sweep * max_a * max_b <= c.acc_max
        # Route every row of the operand regions once (cheaper than routing every beat), in the
        # narrowest integer type that holds each sweep's sum exactly.
        dtype = np.int32 if safe and sweep * max_a * max_b < 1 << 31 else np.int64
        lanes_a = np.ascontiguousarray(_route(reg_a, src_a), dtype=dtype)
        lanes_b = None if b_one else np.ascontiguousarray(_route(reg_b, src_b), dtype=dtype)
        if safe:
            chunks = self._sums_by_views(lanes_a, lanes_b, levels, red, outputs)
        else:
            chunks = self._sums_saturating(lanes_a, lanes_b, levels, outputs, sweep)
        results = np.empty((outputs, L), dtype=np.int64)
        overflow = False
        qsat = False
        for start, acc, flag in chunks:
            stop = start + len(acc)
            overflow = overflow or flag
            sums = acc @ matrix.T
            # The requantizer steps its generators once per row, whatever the rounding mode.
            if mode == "stochastic":
                bits = self.prng.draw(stop - start)
            else:
                bits = None
                self.prng.advance(stop - start)
            values, sat = requantize(sums, f["shift"], c.width, mode, bits, acc_width=c.sum_width)
            qsat = qsat or bool(sat.any())
            results[start:stop] = values
        # Lanes in `write` get the result where `keep` is set and 0 elsewhere; later rows win.
        results = np.where(keep, results, 0)
        last = _last_occurrence(addr_c)
        rows = addr_c[last]
        reg_c[rows[:, None], np.flatnonzero(write)[None, :]] = results[last][:, write]
        self.qsat = self.qsat or qsat
        if overflow:
            return self._fail(Cause.SATURATION)
        self.pc += 1
        return False

    def _sums_by_views(self, lanes_a, lanes_b, levels, red, outputs):
        """Yield ``(first output, accumulators, False)`` chunks, for a step that cannot saturate.

        The operands of the whole nest are strided views of the routed regions (row addresses
        are affine in the loop counters), contracted by ``np.einsum`` over the reduction levels
        without materializing the beats.
        """
        L = self.config.lanes
        order = list(range(levels - 1, -1, -1))             # axis j is level order[j]
        counts = [self.count[lvl] for lvl in order]
        views = []
        for op, lanes in ((0, lanes_a), (1, lanes_b)):
            if lanes is None:
                continue
            row_bytes, word_bytes = lanes.strides
            strides = [int(self.strides[op, lvl]) * row_bytes for lvl in order] + [word_bytes]
            # The range check guarantees every address of the nest lies inside the region.
            views.append(as_strided(lanes[self.bases[op]:], shape=counts + [L], strides=strides,
                                    writeable=False))
        axes = list(range(levels + 1))
        out_axes = list(range(levels - red)) + [levels]
        if levels == red:
            # One output: nothing to split.
            operands = [x for v in views for x in (v, axes)]
            yield 0, np.einsum(*operands, out_axes).reshape(-1, L).astype(np.int64), False
            return
        # Split the outermost (output) level so that a chunk holds about _CHUNK accumulators.
        step = max(1, _CHUNK // max(1, (outputs // counts[0]) * L))
        for first in range(0, counts[0], step):
            operands = [x for v in views for x in (v[first:first + step], axes)]
            acc = np.einsum(*operands, out_axes).reshape(-1, L).astype(np.int64)
            yield first * (outputs // counts[0]), acc, False

    def _sums_saturating(self, lanes_a, lanes_b, levels, outputs, sweep):
        """Yield ``(first output, accumulators, saturated)`` chunks with per-MAC saturation."""
        c = self.config
        addr_a = self._addresses(0, levels).reshape(outputs, sweep)
        addr_b = None if lanes_b is None else self._addresses(1, levels).reshape(outputs, sweep)
        chunk = max(1, _CHUNK // (sweep * c.lanes))
        for start in range(0, outputs, chunk):
            stop = min(outputs, start + chunk)
            products = lanes_a[addr_a[start:stop]]
            if lanes_b is not None:
                products = products * lanes_b[addr_b[start:stop]]
            acc, flags = saturating_sum(products, acc_width=c.acc_width, axis=1)
            yield start, acc, bool(flags.any())

    # Host-side helpers.

    def _check_rows(self, region, row, count):
        """Raise :exc:`ValueError` unless rows ``row`` to ``row + count - 1`` of ``region`` exist
        (numpy slicing would silently wrap a negative row or cut a long run short)."""
        c = self.config
        for name, value, top in (("region", region, c.regions - 1), ("row", row, c.depth - 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                    or not 0 <= value <= top:
                raise ValueError(f"{name} must be an integer from 0 to {top}, not {value!r}")
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) \
                or not 0 <= count <= c.depth - row:
            raise ValueError(f"{count!r} rows from row {row} do not fit depth = {c.depth}")

    def write_rows(self, region, row, values):
        """Store ``values`` (shape ``(rows, lanes)``, signed W-bit) from row ``row`` of ``region``.

        Raises :exc:`ValueError` on a shape other than ``(rows, lanes)``, values that are not
        integers or out of range, or rows outside the region.
        """
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[1] != self.config.lanes:
            raise ValueError(f"values must have shape (rows, {self.config.lanes}), not {values.shape!r}")
        # Casting would silently truncate fractions.
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"values must be integers, not an array of {values.dtype}")
        values = values.astype(np.int64)
        lo, hi = self.config.word_min, self.config.word_max
        bad = values[(values < lo) | (values > hi)]
        if bad.size:
            raise ValueError(f"values must be signed {self.config.width}-bit integers, "
                             f"not {int(bad[0])!r}")
        self._check_rows(region, row, len(values))
        self.scratchpad[region, row:row + len(values)] = values

    def read_rows(self, region, row, count):
        """Return a copy of ``count`` rows of ``region`` from row ``row`` (shape ``(count, lanes)``).

        Raises :exc:`ValueError` on rows outside the region.
        """
        self._check_rows(region, row, count)
        return self.scratchpad[region, row:row + count].copy()


class _LanePRNG:
    """The requantizer's generators (:class:`fetta.sim.golden.PRNG`'s streams), with fast jumps.

    xorshift32 is linear over GF(2), so ``k`` steps are a 32x32 bit matrix, applied to every lane
    at once; long runs of rows cost O(log k) matrix products instead of k steps.
    """

    _BLOCK = 512

    def __init__(self, lanes):
        self.lanes = lanes
        self.reseed(0)

    def reseed(self, seed):
        self.state = np.array([PRNG.lane_state(seed, k) for k in range(self.lanes)], dtype=np.uint32)

    @staticmethod
    def _apply(columns, x):
        """Apply the bit matrix given by its 32 columns (images of bit j) to uint32 array ``x``."""
        out = np.zeros_like(x)
        for j in range(32):
            out ^= np.where((x >> np.uint32(j)) & np.uint32(1), columns[j], np.uint32(0))
        return out

    @classmethod
    def _power(cls, k):
        """Columns of the matrix of ``k`` xorshift steps."""
        result = np.array([1 << j for j in range(32)], dtype=np.uint32)  # identity
        base = PRNG.step(np.array([1 << j for j in range(32)], dtype=np.uint32))
        while k:
            if k & 1:
                result = cls._apply(base, result)
            base = cls._apply(base, base)
            k >>= 1
        return result

    def advance(self, k):
        """Step every lane ``k`` times."""
        if k <= 64:
            for _ in range(k):
                self.state = PRNG.step(self.state)
        else:
            self.state = self._apply(self._power(k), self.state)

    def draw(self, k):
        """Step ``k`` times; return the states after each step, int64 of shape ``(k, lanes)``.

        Long runs are cut into about sqrt(k) stretches whose starting states come from jumps;
        the stretches then advance side by side, one vectorized xorshift step at a time.
        """
        if k <= self._BLOCK:
            out = np.empty((k, self.lanes), dtype=np.uint32)
            state = self.state
            for t in range(k):
                state = PRNG.step(state)
                out[t] = state
        else:
            stretch = int(np.ceil(np.sqrt(k)))
            count = -(-k // stretch)
            jump = self._power(stretch)
            starts = np.empty((count, self.lanes), dtype=np.uint32)
            starts[0] = self.state
            for p in range(1, count):
                starts[p] = self._apply(jump, starts[p - 1])
            out = np.empty((count, stretch, self.lanes), dtype=np.uint32)
            state = starts
            for t in range(stretch):
                state = PRNG.step(state)
                out[:, t] = state
            out = out.reshape(-1, self.lanes)[:k]
        if k:
            self.state = out[k - 1].copy()
        return out.astype(np.int64)


def _route(rows, src):
    """Apply a lane map: lane l takes word ``src[l]`` of the row (0 where ``src[l]`` is -1)."""
    out = rows[..., np.maximum(src, 0)]
    if (src < 0).any():
        out = np.where(src >= 0, out, 0)
    return out


def _last_occurrence(addresses):
    """Indices of the last occurrence of each distinct address, in increasing index order."""
    reversed_first = np.unique(addresses[::-1], return_index=True)[1]
    return np.sort(len(addresses) - 1 - reversed_first)
