"""Golden references: einsum in float64 and in the exact integer semantics of the hardware.

The integer semantics, defined once here and documented in ``docs/numerics.md``:

* Operands are signed ``width``-bit integers.
* A contraction accumulates its terms, in a stated order, into a signed ``acc_width``-bit register
  that saturates after every step and raises a sticky overflow flag (as
  :func:`fetta.hw.ce.ce_model` does).
* A result leaves the accumulator through :func:`requantize`: an arithmetic right shift with
  round-to-nearest-even or stochastic rounding (random bits from :class:`PRNG`, which the RTL
  reproduces bit for bit), then saturation to ``width`` bits.

Everything is vectorized: no Python loop per multiply-accumulate.
"""

import re

import numpy as np

__all__ = [
    "ROUNDING_MODES", "MAX_ACC_WIDTH",
    "einsum_float", "quantize", "dequantize",
    "einsum_int", "saturating_sum", "saturating_dot",
    "PRNG", "requantize",
]

#: Rounding modes of :func:`requantize`.
ROUNDING_MODES = ("nearest_even", "stochastic")

#: Widest accumulator the int64 models support (shifts by up to this many bits stay exact).
MAX_ACC_WIDTH = 62

# Sums of absolute terms must stay below this for int64 to hold every partial sum exactly,
# with room for one more register value (|x| <= 2**61) on top.
_EXACT_LIMIT = 1 << 62

_MASK32 = 0xFFFF_FFFF

# The in-order fallback of einsum_int materializes about this many terms at a time.
_CHUNK_TERMS = 1 << 20


# -- validation helpers ---------------------------------------------------------------------------

def _check_width(width, name="width"):
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or not 2 <= width <= 32:
        raise ValueError(f"{name} must be an integer from 2 to 32, not {width!r}")
    return int(width)


def _check_acc_width(acc_width):
    if (not isinstance(acc_width, (int, np.integer)) or isinstance(acc_width, bool)
            or not 2 <= acc_width <= MAX_ACC_WIDTH):
        raise ValueError(f"acc_width must be an integer from 2 to {MAX_ACC_WIDTH}, not {acc_width!r}")
    return int(acc_width)


def _limits(width):
    return -(1 << (width - 1)), (1 << (width - 1)) - 1


def _int_array(value, what):
    """Return ``value`` as an int64 array; raise if it does not hold integers that fit."""
    array = np.asarray(value)
    if array.dtype == object:
        try:
            array = np.asarray(value, dtype=np.int64)
        except (OverflowError, TypeError, ValueError) as e:
            raise ValueError(f"{what} must hold integers that fit in int64") from e
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, not an array of {array.dtype}")
    if array.size and array.dtype == np.uint64 and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what} holds {int(array.max())}, which does not fit in int64")
    return array.astype(np.int64, copy=False)


def _check_range(array, lo, hi, what, kind):
    """Raise if ``array`` has a value outside ``[lo, hi]``, quoting the first such value."""
    bad = (array < lo) | (array > hi)
    if bad.any():
        value = int(array[bad].flat[0])
        raise ValueError(f"{what} holds {value}, outside the {kind} range [{lo}, {hi}]")


# -- float reference and fixed-point conversion ---------------------------------------------------

def einsum_float(expr, *operands):
    """Contract ``operands`` as ``np.einsum(expr, ...)`` does, in float64.

    The float reference the integer semantics are compared against.
    """
    return np.einsum(expr, *(np.asarray(op, dtype=np.float64) for op in operands), optimize=True)


def quantize(x, width, frac_bits, rounding="nearest_even"):
    """Convert floats ``x`` to signed ``width``-bit fixed point with ``frac_bits`` fractional bits.

    The integer ``q`` stands for ``q * 2**-frac_bits``. ``rounding`` is ``"nearest_even"`` (error at
    most 0.5 LSB, ties to even) or ``"floor"`` (error below 1 LSB, towards minus infinity). Values
    beyond the range saturate at its ends (infinities included).

    Returns
    -------
    (q, saturated) : (int64 ndarray, bool)
        The integers and whether any value saturated.

    Raises
    ------
    ValueError
        On a bad ``width``, ``frac_bits`` or ``rounding``, or if ``x`` holds NaN.
    """
    width = _check_width(width)
    if not isinstance(frac_bits, (int, np.integer)) or isinstance(frac_bits, bool) \
            or not -64 <= frac_bits <= 64:
        raise ValueError(f"frac_bits must be an integer from -64 to 64, not {frac_bits!r}")
    if rounding not in ("nearest_even", "floor"):
        raise ValueError(f"rounding must be 'nearest_even' or 'floor', not {rounding!r}")
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        where = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise ValueError(f"cannot quantize NaN (first at index {where!r})")
    # Scaling by a power of two is exact in float64 (barring underflow to subnormals).
    scaled = np.ldexp(x, int(frac_bits))
    rounded = np.rint(scaled) if rounding == "nearest_even" else np.floor(scaled)
    lo, hi = _limits(width)
    clipped = np.clip(rounded, lo, hi)
    return clipped.astype(np.int64), bool((clipped != rounded).any())


def dequantize(q, frac_bits):
    """Return the values ``q * 2**-frac_bits`` of fixed-point integers ``q`` as float64."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -int(frac_bits))


# -- integer contraction --------------------------------------------------------------------------

def _parse(expr, count):
    """Split an einsum expression into input subscripts and output subscripts."""
    if not isinstance(expr, str):
        raise ValueError(f"expression must be a string, not {expr!r}")
    text = expr.replace(" ", "")
    if "->" in text:
        lhs, output = text.split("->", 1)
    else:
        lhs, output = text, None
    inputs = lhs.split(",") if lhs or count else []
    if not re.fullmatch(r"[A-Za-z,]*", lhs) or (output is not None and not re.fullmatch(r"[A-Za-z]*", output)):
        raise ValueError(f"expression may only use letters, ',' and '->', not {expr!r}")
    if len(inputs) != count:
        raise ValueError(f"expression {expr!r} has {len(inputs)} operands, but {count} were given")
    letters = "".join(inputs)
    if output is None:
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    for c in output:
        if c not in letters:
            raise ValueError(f"output index {c!r} of {expr!r} appears in no operand")
        if output.count(c) > 1:
            raise ValueError(f"output index {c!r} of {expr!r} is repeated")
    return inputs, output


def _summed_indices(inputs, output, order, expr):
    default = []
    for sub in inputs:
        for c in sub:
            if c not in output and c not in default:
                default.append(c)
    if order is None:
        return "".join(default)
    if not isinstance(order, str) or sorted(order) != sorted(default):
        raise ValueError(f"order must list the summed indices {''.join(default)!r} of {expr!r} "
                         f"once each, not {order!r}")
    return order


def _index_sizes(inputs, operands, expr):
    sizes = {}
    for k, (sub, op) in enumerate(zip(inputs, operands)):
        if op.ndim != len(sub):
            raise ValueError(f"operand {k} has {op.ndim} dimensions, but {sub!r} in {expr!r} "
                             f"names {len(sub)}")
        for c, n in zip(sub, op.shape):
            if sizes.setdefault(c, n) != n:
                raise ValueError(f"index {c!r} of {expr!r} has size {sizes[c]} and {n}")
    return sizes


class _Terms:
    """The terms of chosen output elements of a contraction, in accumulation order."""

    def __init__(self, inputs, operands, output, summed, sizes):
        self._output, self._summed, self._sizes = output, summed, sizes
        self._views = []
        for sub, op in zip(inputs, operands):
            present = "".join(dict.fromkeys(sub))
            # The diagonal of repeated indices, axes in (output..., summed...) order, contiguous
            # so that gathering rows is fast.
            axes = [c for c in output if c in present] + [c for c in summed if c in present]
            view = np.ascontiguousarray(np.einsum(f"{sub}->{''.join(axes)}", op))
            out_axes = [output.index(c) for c in output if c in present]
            # Size-1 axes for the summed indices this operand lacks.
            shape = tuple(sizes[c] if c in present else 1 for c in summed)
            self._views.append((view, out_axes, shape))

    def __call__(self, rows):
        """Terms of output elements ``rows`` (flat indices): shape ``(len(rows), K)``."""
        out_shape = tuple(self._sizes[c] for c in self._output)
        out_index = np.unravel_index(rows, out_shape) if self._output else ()
        result = None
        for view, out_axes, shape in self._views:
            if out_axes:
                picked = view[tuple(out_index[k] for k in out_axes)]
            else:
                picked = np.broadcast_to(view, (len(rows),) + view.shape)
            picked = picked.reshape((len(rows),) + shape)
            result = picked if result is None else result * picked
        sum_shape = tuple(self._sizes[c] for c in self._summed)
        return np.broadcast_to(result, (len(rows),) + sum_shape).reshape(len(rows), -1)


def saturating_sum(terms, *, acc_width, axis=-1):
    """Accumulate ``terms`` along ``axis`` in index order into a saturating register.

    Bit-identical to the sequential definition ``acc = 0; for t in terms: acc = clamp(acc + t)``,
    with ``clamp`` to the signed ``acc_width``-bit range, the semantics of the hardware's
    accumulators (:func:`fetta.hw.ce.ce_model`), yet vectorized:

    * The flag: the register first saturates at the first step where the exact prefix sum leaves
      the range (before it, register and exact prefix sum agree), so ``overflow`` is whether any
      exact prefix sum (one ``cumsum``) leaves the range; where none does, the result is the exact
      sum.
    * The value where it does: ``x -> clamp(x + t, lo, hi)`` composes in the family
      ``x -> min(max(x + a, l), h)``: the composition of ``(a1, l1, h1)`` then ``(a2, l2, h2)`` is
      ``(a1 + a2, clip(l1 + a2, l2, h2), clip(h1 + a2, l2, h2))``. A pairwise tree of these
      compositions takes log2(K) numpy steps.

    Parameters
    ----------
    terms : array of int
        The addends; every sum of absolute values of terms along ``axis`` must stay below 2**62
        (int64 holds all partial sums exactly then).
    acc_width : int
        Accumulator width in bits (2 to 62).
    axis : int
        The axis to reduce.

    Returns
    -------
    (acc, overflow) : (int64 ndarray, bool ndarray)
        The register after the last term and the sticky flag, per element of the other axes.

    Raises
    ------
    ValueError
        On a bad ``acc_width``, non-integer terms or sums that int64 cannot hold exactly.
    """
    acc_width = _check_acc_width(acc_width)
    terms = np.moveaxis(_int_array(terms, "terms"), axis, -1)
    lo, hi = _limits(acc_width)
    shape = terms.shape[:-1]
    terms = terms.reshape(int(np.prod(shape, dtype=np.int64)), terms.shape[-1])
    if terms.size:
        largest = max(int(terms.max()), -int(terms.min()))
        if largest * terms.shape[1] >= _EXACT_LIMIT:
            raise ValueError(f"terms too large for exact int64 accumulation: {terms.shape[1]} terms "
                             f"of magnitude up to {largest} may reach 2**62")
    acc = np.zeros(terms.shape[0], dtype=np.int64)
    overflow = np.zeros(terms.shape[0], dtype=bool)
    if terms.shape[1]:
        prefix = np.cumsum(terms, axis=1)
        overflow = (prefix.min(axis=1) < lo) | (prefix.max(axis=1) > hi)
        acc = prefix[:, -1].copy()
        if overflow.any():
            acc[overflow] = _clamped_fold(terms[overflow], lo, hi)
    return acc.reshape(shape), overflow.reshape(shape)


def _clamped_fold(terms, lo, hi):
    """Fold rows of ``terms`` with per-step saturation (see :func:`saturating_sum`)."""
    rows = terms.shape[0]
    a, l, h = terms, None, None         # l, h = None: the constants lo, hi of single steps
    while a.shape[1] > 1:
        if a.shape[1] % 2:
            # Pad with the identity on [lo, hi]: x -> clamp(x + 0, lo, hi).
            a = np.concatenate([a, np.zeros((rows, 1), dtype=np.int64)], axis=1)
            if l is not None:
                l = np.concatenate([l, np.full((rows, 1), lo, dtype=np.int64)], axis=1)
                h = np.concatenate([h, np.full((rows, 1), hi, dtype=np.int64)], axis=1)
        a2 = a[:, 1::2]
        l1, l2 = (lo, lo) if l is None else (l[:, 0::2], l[:, 1::2])
        h1, h2 = (hi, hi) if h is None else (h[:, 0::2], h[:, 1::2])
        new_l = l1 + a2
        np.minimum(np.maximum(new_l, l2, out=new_l), h2, out=new_l)
        new_h = h1 + a2
        np.minimum(np.maximum(new_h, l2, out=new_h), h2, out=new_h)
        a, l, h = a[:, 0::2] + a2, new_l, new_h
    if l is None:
        return np.clip(a[:, 0], lo, hi)
    return np.clip(a[:, 0], l[:, 0], h[:, 0])


def saturating_dot(a, b, *, acc_width):
    """Dot products of ``a`` and ``b`` along their last axis, accumulated with per-step saturation.

    The terms ``a[..., k] * b[..., k]`` enter in order of ``k``: for 1-D operands this is
    ``ce_model(a, b, first=[True, False, ...], acc_width=acc_width)``'s last beat, bit for bit.
    Returns ``(acc, overflow)`` as :func:`saturating_sum` does.
    """
    a = _int_array(a, "a")
    b = _int_array(b, "b")
    for name, x in (("a", a), ("b", b)):
        if x.size:
            _check_range(x, -(1 << 31), 1 << 31, name, "operand (at most 32-bit)")
    return saturating_sum(a * b, acc_width=acc_width)


def einsum_int(expr, *operands, width, acc_width, order=None):
    """Contract signed ``width``-bit integer operands with the hardware's accumulator semantics.

    Every output element accumulates its terms (the product of one element of each operand) in
    row-major order of the summed indices, listed in ``order`` from outermost to innermost (by
    default: in order of first appearance in the operands, left to right), into a signed
    ``acc_width``-bit register that saturates after every step; the result is the register after
    the last term. This is what one contraction engine computes for a two-operand contraction
    streamed in that order.

    Fast path, exact and cheap: where the sum of absolute terms of an output element is at most
    the register's maximum, no partial sum can leave the range and the exact sum (one
    ``np.einsum``) is the answer. The other elements, if any, are evaluated in order with
    :func:`saturating_sum`, in chunks.

    Exactness of int64: with ``n`` operands whose largest magnitudes are ``m_i`` and a reduction of
    ``K`` terms, every partial sum is at most ``K * prod(m_i)``; this must be below 2**62, else a
    :exc:`ValueError`. With two 16-bit operands (``m = 2**15``) that allows ``K < 2**32``; with
    three 16-bit operands ``K < 2**17``.

    Parameters
    ----------
    expr : str
        An einsum expression over letters, explicit (``"ij,jk->ik"``) or implicit.
    *operands : arrays of int
        Signed ``width``-bit values.
    width : int
        Operand width in bits (2 to 32).
    acc_width : int
        Accumulator width in bits (2 to 62).
    order : str, optional
        The summed indices, outermost first.

    Returns
    -------
    (result, overflow) : (int64 ndarray, bool)
        The accumulators and the sticky flag: whether any accumulation saturated.

    Raises
    ------
    ValueError
        On a bad expression, width, order, or shape, an operand value outside the signed
        ``width``-bit range (the message names the operand and the value), or a reduction that
        int64 cannot hold exactly.
    """
    width = _check_width(width)
    acc_width = _check_acc_width(acc_width)
    inputs, output = _parse(expr, len(operands))
    lo_w, hi_w = _limits(width)
    ops = []
    for k, op in enumerate(operands):
        op = _int_array(op, f"operand {k}")
        _check_range(op, lo_w, hi_w, f"operand {k}", f"signed {width}-bit")
        ops.append(op)
    sizes = _index_sizes(inputs, ops, expr)
    summed = _summed_indices(inputs, output, order, expr)
    count = int(np.prod([sizes[c] for c in summed], dtype=object)) if summed else 1
    largest = 1
    for op in ops:
        largest *= int(np.abs(op).max()) if op.size else 0
    if count * largest >= _EXACT_LIMIT:
        raise ValueError(f"{expr!r} cannot be accumulated exactly in int64: {count} terms of "
                         f"magnitude up to {largest} may reach 2**62")
    canonical = ",".join(inputs) + "->" + output
    exact = np.asarray(np.einsum(canonical, *ops, optimize=True), dtype=np.int64)
    lo, hi = _limits(acc_width)
    if count * largest <= hi:
        return exact, False
    bound = np.asarray(np.einsum(canonical, *(np.abs(op) for op in ops), optimize=True))
    risky = np.flatnonzero(bound > hi)
    result = exact.copy()
    overflow = False
    step = max(1, _CHUNK_TERMS // max(count, 1))
    terms_of = _Terms(inputs, ops, output, summed, sizes)
    for start in range(0, len(risky), step):
        rows = risky[start:start + step]
        terms = terms_of(rows)
        acc, flag = saturating_sum(terms, acc_width=acc_width)
        result.flat[rows] = acc
        overflow = overflow or bool(flag.any())
    return result, overflow


# -- the random bits of stochastic rounding -------------------------------------------------------

class PRNG:
    """Per-lane 32-bit xorshift generators (Marsaglia's 13, 17, 5), the source of stochastic rounding.

    The RTL (:class:`fetta.hw.requantize.Requantizer`) holds the same state registers and steps
    them with the same XORs, so a model driven by this class reproduces it bit for bit.

    Lane ``i`` starts from ``seed ^ lane_constant(i)``, or from ``lane_constant(i)`` itself if that
    is zero (xorshift never leaves the all-zero state). Each :meth:`next` steps every lane once
    and returns the new states: the random bits of one cycle.

    Parameters
    ----------
    seed : int
        From 0 to 2**32 - 1.
    lanes : int
        Number of lanes (at least 1).
    """

    def __init__(self, seed, lanes):
        if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self._lanes = int(lanes)
        self.reseed(seed)

    @staticmethod
    def lane_constant(lane):
        """The nonzero constant that distinguishes lane ``lane``'s stream."""
        return ((lane + 1) * 0x9E3779B9) & _MASK32

    @staticmethod
    def lane_state(seed, lane):
        """The state of lane ``lane`` right after seeding with ``seed``."""
        state = (seed ^ PRNG.lane_constant(lane)) & _MASK32
        return state if state else PRNG.lane_constant(lane)

    @staticmethod
    def step(state):
        """One xorshift32 step of ``state`` (int or uint32 array)."""
        if isinstance(state, np.ndarray):
            state = state.astype(np.uint32, copy=True)
            state ^= state << np.uint32(13)
            state ^= state >> np.uint32(17)
            state ^= state << np.uint32(5)
            return state
        state ^= (state << 13) & _MASK32
        state ^= state >> 17
        state ^= (state << 5) & _MASK32
        return state

    def reseed(self, seed):
        """Restart every lane from ``seed``."""
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed <= _MASK32:
            raise ValueError(f"seed must be an integer from 0 to 2**32 - 1, not {seed!r}")
        self._state = np.array([self.lane_state(int(seed), i) for i in range(self._lanes)],
                               dtype=np.uint32)

    @property
    def lanes(self):
        return self._lanes

    @property
    def state(self):
        """The current states as int64 (a copy)."""
        return self._state.astype(np.int64)

    def next(self):
        """Step every lane once; return the new states (one cycle's bits), int64 of shape ``(lanes,)``."""
        self._state = self.step(self._state)
        return self._state.astype(np.int64)

    def draw(self, cycles):
        """Step ``cycles`` times; return the bits of each cycle, int64 of shape ``(cycles, lanes)``."""
        out = np.empty((cycles, self._lanes), dtype=np.int64)
        for k in range(cycles):
            out[k] = self.next()
        return out


# -- requantization -------------------------------------------------------------------------------

def requantize(acc, shift, width, rounding="nearest_even", rng=None, *, acc_width=MAX_ACC_WIDTH):
    """Scale accumulators down by ``2**shift``, round, and saturate to signed ``width`` bits.

    ``value = round(acc / 2**shift)``, exactly:

    * ``"nearest_even"``: to the nearest integer, ties (exactly half an LSB) to the even one; for
      negative values too (``-2.5 -> -2``, ``-3.5 -> -4``).
    * ``"stochastic"``: with ``q = acc >> shift`` (floor) and ``r = acc - q * 2**shift``, the
      result is ``q + 1`` if ``r + R >= 2**shift``, else ``q``, where ``R`` is the low ``shift``
      bits of the lane's 32 random bits repeated (``bits | bits << 32 | ...``): for
      ``shift <= 32`` just ``bits mod 2**shift``. So ``q + 1`` comes with probability
      ``r / 2**shift``: unbiased (for ``shift > 32``, whose ``R`` has 32 random top bits, within
      2**-32 LSB).
    * ``shift = 0`` does not round.

    Then values beyond ``[-2**(width-1), 2**(width-1) - 1]`` saturate at its ends.

    Parameters
    ----------
    acc : array of int
        Signed ``acc_width``-bit accumulators. For stochastic rounding with a :class:`PRNG`, the
        last axis is the lanes, and every other index is a cycle, in C order.
    shift : int or array of int
        From 0 to ``acc_width``; broadcast against ``acc``.
    width : int
        Output width in bits (2 to 32), at most ``acc_width``.
    rounding : str
        ``"nearest_even"`` or ``"stochastic"``.
    rng : PRNG or array of int, optional
        For ``"stochastic"``: a :class:`PRNG` (stepped once per cycle, see ``acc``) or explicit
        32-bit random words of ``acc``'s shape. Not used (nor stepped) by ``"nearest_even"``.
    acc_width : int
        Accumulator width in bits (2 to 62).

    Returns
    -------
    (values, overflow) : (int64 ndarray, bool ndarray)
        The results and, per element, whether it saturated; ``overflow.any()`` is the hardware's
        sticky flag.

    Raises
    ------
    ValueError
        On a bad width, shift, rounding mode, accumulator value or random source.
    """
    acc_width = _check_acc_width(acc_width)
    width = _check_width(width)
    if width > acc_width:
        raise ValueError(f"width must be at most acc_width = {acc_width}, not {width!r}")
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDING_MODES))}, "
                         f"not {rounding!r}")
    acc = _int_array(acc, "acc")
    _check_range(acc, *_limits(acc_width), "acc", f"signed {acc_width}-bit")
    shift_array = np.asarray(shift)
    if not np.issubdtype(shift_array.dtype, np.integer) or isinstance(shift, bool):
        raise ValueError(f"shift must be an integer from 0 to acc_width = {acc_width}, not {shift!r}")
    shift_array = shift_array.astype(np.int64)
    bad = (shift_array < 0) | (shift_array > acc_width)
    if bad.any():
        raise ValueError(f"shift must be an integer from 0 to acc_width = {acc_width}, "
                         f"not {int(shift_array[bad].flat[0])!r}")
    s, acc = np.broadcast_arrays(shift_array, acc)
    q = acc >> s                     # arithmetic: floor(acc / 2**s)
    r = acc - (q << s)               # 0 <= r < 2**s
    if rounding == "nearest_even":
        half = (np.int64(1) << s) >> 1
        up = (r > half) | ((r == half) & (s > 0) & ((q & 1) == 1))
    else:
        bits = _random_bits(rng, acc.shape).astype(np.uint64)
        repeated = bits | (bits << np.uint64(32))
        rand = (repeated & ((np.uint64(1) << s.astype(np.uint64)) - np.uint64(1))).astype(np.int64)
        up = (r + rand) >= (np.int64(1) << s)
    value = q + up
    lo, hi = _limits(width)
    result = np.clip(value, lo, hi)
    return result, result != value


def _random_bits(rng, shape):
    if rng is None:
        raise ValueError("stochastic rounding needs rng: a PRNG or an array of 32-bit random words")
    if isinstance(rng, PRNG):
        if not shape or shape[-1] != rng.lanes:
            raise ValueError(f"the last axis of acc must have the PRNG's {rng.lanes} lanes, "
                             f"not shape {shape!r}")
        return rng.draw(int(np.prod(shape[:-1], dtype=np.int64))).reshape(shape)
    bits = _int_array(rng, "rng")
    if bits.shape != shape:
        raise ValueError(f"random words must have acc's shape {shape!r}, not {bits.shape!r}")
    _check_range(bits, 0, _MASK32, "rng", "32-bit unsigned")
    return bits
