import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fetta.hw.ce import ce_model
from fetta.sim import golden
from fetta.sim.golden import (PRNG, dequantize, einsum_float, einsum_int, quantize, requantize,
                              saturating_dot, saturating_sum)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- references written from the definitions, with Python integers --------------------------------

def _xorshift32(x):
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def _nearest_even(acc, shift):
    # Python's round() of a Fraction rounds half to even.
    return round(Fraction(acc, 1 << shift))


def _stochastic(acc, shift, bits):
    rand = (bits | bits << 32) & ((1 << shift) - 1)     # the low bits of the word, repeated
    floor = acc >> shift
    return floor + (acc - (floor << shift) + rand >= 1 << shift)


def _sequential_einsum(expr, a, b, acc_width, order=None):
    """Two-operand einsum through ce_model: the terms of each output element, in order."""
    lhs, out = expr.split("->")
    sa, sb = lhs.split(",")
    summed = order or "".join(dict.fromkeys(c for c in sa + sb if c not in out))
    sizes = {c: n for s, x in ((sa, a), (sb, b)) for c, n in zip(s, x.shape)}
    result = np.zeros([sizes[c] for c in out], dtype=np.int64)
    flag = False
    for o in itertools.product(*(range(sizes[c]) for c in out)):
        xs, ys = [], []
        for r in itertools.product(*(range(sizes[c]) for c in summed)):
            where = dict(zip(out, o)) | dict(zip(summed, r))
            xs.append(a[tuple(where[c] for c in sa)])
            ys.append(b[tuple(where[c] for c in sb)])
        if xs:
            acc, flags = ce_model(xs, ys, [True] + [False] * (len(xs) - 1), acc_width=acc_width)
            result[o] = acc[-1]
            flag = flag or bool(flags[-1])
    return result, flag


# -- random einsum expressions ---------------------------------------------------------------------

@st.composite
def expressions(draw, operands=None, max_operands=3, letters="abcde"):
    n = operands or draw(st.integers(1, max_operands))
    sizes = {c: draw(st.integers(1, 4)) for c in letters}
    subs = [draw(st.text(alphabet=letters, min_size=0 if operands is None else 1, max_size=3))
            for _ in range(n)]
    used = sorted(set("".join(subs)))
    out = "".join(draw(st.permutations(used))[:draw(st.integers(0, len(used)))])
    expr = ",".join(subs) + "->" + out
    shapes = [tuple(sizes[c] for c in s) for s in subs]
    return expr, shapes


def _random_ints(rng, shape, width, extreme=0.0):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    x = np.array(rng.integers(lo, hi, shape, endpoint=True), dtype=np.int64)
    pick = np.array(rng.random(shape) < extreme)
    x[pick] = rng.choice([lo, hi], size=int(pick.sum()))
    return x


# -- einsum_int ------------------------------------------------------------------------------------

@SETTINGS
@given(expressions(), st.sampled_from([8, 16]), st.integers(0, 2**32 - 1))
def test_einsum_int_exact_when_wide(case, width, seed):
    """With an accumulator that cannot overflow, the result is numpy's exact int64 einsum."""
    expr, shapes = case
    rng = np.random.default_rng(seed)
    ops = [_random_ints(rng, s, width, extreme=0.3) for s in shapes]
    got, overflow = einsum_int(expr, *ops, width=width, acc_width=62)
    want = np.einsum(expr, *ops)
    assert not overflow
    assert got.dtype == np.int64 and got.shape == np.shape(want)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(expressions(operands=2), st.integers(8, 20), st.integers(0, 2**32 - 1))
def test_einsum_int_saturates_like_the_ce(case, acc_width, seed):
    """Per-step saturation equals ce_model fed the terms in the stated order, overflow or not."""
    expr, shapes = case
    rng = np.random.default_rng(seed)
    a, b = (_random_ints(rng, s, 8, extreme=0.5) for s in shapes)
    got, overflow = einsum_int(expr, a, b, width=8, acc_width=acc_width)
    want, want_flag = _sequential_einsum(expr, a, b, acc_width)
    event(f"saturated: {want_flag}")
    np.testing.assert_array_equal(got, want)
    assert overflow == want_flag


def test_einsum_int_order_of_summation():
    """Saturation makes the order matter; ``order`` picks it, outermost index first."""
    a = np.array([[100, 100, 100], [-100, -100, -100]])     # a[k, j]
    b = np.ones((2, 3), dtype=np.int64)                        # b[k, j]
    # Register range [-256, 255]. Default order k then j (first appearance in "kj"):
    # 100 100 100 -100 -100 -100: 300 saturates at 255, then 155, 55, -45.
    got, flag = einsum_int("kj,kj->", a, b, width=8, acc_width=9)
    want, want_flag = _sequential_einsum("kj,kj->", a, b, 9)
    assert got == -45 and want == -45 and flag and want_flag
    # Order "jk": 100 -100 100 -100 100 -100 never leaves the range: the exact 0.
    got, flag = einsum_int("kj,kj->", a, b, width=8, acc_width=9, order="jk")
    want, want_flag = _sequential_einsum("kj,kj->", a, b, 9, order="jk")
    assert got == 0 and want == 0 and not flag and not want_flag


def test_einsum_int_fallback_in_chunks(monkeypatch):
    """Many saturating outputs, evaluated in several chunks, still match the CE sequence."""
    monkeypatch.setattr(golden, "_CHUNK_TERMS", 64)
    rng = np.random.default_rng(5)
    a = _random_ints(rng, (6, 40), 8, extreme=0.6)
    b = _random_ints(rng, (40, 7), 8, extreme=0.6)
    got, flag = einsum_int("ij,jk->ik", a, b, width=8, acc_width=17)
    want, want_flag = _sequential_einsum("ij,jk->ik", a, b, 17)
    np.testing.assert_array_equal(got, want)
    assert flag and want_flag
    assert (got != a @ b).any()         # per-step saturation, not a clamped exact sum


def test_einsum_int_16_bit_extremes():
    """The most negative 16-bit operands: (-32768)**2 * K, exact and saturated."""
    a = np.full(1000, -32768)
    got, flag = einsum_int("i,i->", a, a, width=16, acc_width=48)
    assert got == 1000 * 2**30 and not flag
    got, flag = einsum_int("i,i->", a, a, width=16, acc_width=32)
    assert got == 2**31 - 1 and flag
    got, flag = einsum_int("i,i->", a, -a - 1, width=16, acc_width=32)     # -32768 * 32767
    assert got == -2**31 and flag


@pytest.mark.parametrize("call,message", [
    (lambda: einsum_int("ij,jk->ik", np.zeros((2, 2), int), np.array([[0, 128], [0, 0]]),
                        width=8, acc_width=32),
     r"operand 1 holds 128, outside the signed 8-bit range \[-128, 127\]"),
    (lambda: einsum_int("i->", np.array([-32769]), width=16, acc_width=32),
     r"operand 0 holds -32769, outside the signed 16-bit range \[-32768, 32767\]"),
    (lambda: einsum_int("i->", np.array([0.5]), width=8, acc_width=32),
     "operand 0 must hold integers, not an array of float64"),
    (lambda: einsum_int("i->", np.array([1]), width=1, acc_width=32),
     "width must be an integer from 2 to 32, not 1"),
    (lambda: einsum_int("i->", np.array([1]), width=8, acc_width=63),
     "acc_width must be an integer from 2 to 62, not 63"),
    (lambda: einsum_int("ij,jk->ik", np.zeros((2, 2), int), width=8, acc_width=32),
     "expression 'ij,jk->ik' has 2 operands, but 1 were given"),
    (lambda: einsum_int("ij->ik", np.zeros((2, 2), int), width=8, acc_width=32),
     "output index 'k' of 'ij->ik' appears in no operand"),
    (lambda: einsum_int("ij->ii", np.zeros((2, 2), int), width=8, acc_width=32),
     "output index 'i' of 'ij->ii' is repeated"),
    (lambda: einsum_int("i...->", np.zeros((2, 2), int), width=8, acc_width=32),
     r"expression may only use letters, ',' and '->', not 'i\.\.\.->'"),
    (lambda: einsum_int("ij,jk->ik", np.zeros((2, 3), int), np.zeros((2, 2), int),
                        width=8, acc_width=32),
     "index 'j' of 'ij,jk->ik' has size 3 and 2"),
    (lambda: einsum_int("ij->", np.zeros(2, int), width=8, acc_width=32),
     "operand 0 has 1 dimensions, but 'ij' in 'ij->' names 2"),
    (lambda: einsum_int("ij->", np.zeros((2, 2), int), width=8, acc_width=32, order="ik"),
     "order must list the summed indices 'ij' of 'ij->' once each, not 'ik'"),
    (lambda: einsum_int("i,i,i->", *[np.full(1 << 18, -32768)] * 3, width=16, acc_width=48),
     r"'i,i,i->' cannot be accumulated exactly in int64: 262144 terms of magnitude up to "
     r"35184372088832 may reach 2\*\*62"),
])
def test_einsum_int_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- saturating accumulation -----------------------------------------------------------------------

@SETTINGS
@given(st.integers(1, 80), st.integers(2, 24), st.sampled_from([8, 16]), st.integers(0, 2**32 - 1))
def test_saturating_dot_equals_ce_model(length, acc_width, width, seed):
    rng = np.random.default_rng(seed)
    a = _random_ints(rng, length, width, extreme=0.4)
    b = _random_ints(rng, length, width, extreme=0.4)
    if rng.random() < 0.5:      # a climb past the top followed by a descent: exact sum in range
        a[: length // 2] = np.abs(a[: length // 2])
        b[: length // 2] = np.abs(b[: length // 2])
    acc, flags = ce_model(a, b, [True] + [False] * (length - 1), acc_width=acc_width)
    event(f"saturated: {flags[-1]}")
    got, overflow = saturating_dot(a, b, acc_width=acc_width)
    assert got == acc[-1] and overflow == flags[-1]


def test_saturating_dot_path_dependence():
    """Sequences whose exact sum fits but whose partial sums do not: clamping the exact sum is
    wrong, per-step saturation (the CE) is right; the fast path holds when nothing overflows."""
    rng = np.random.default_rng(11)
    rows, length, acc_width = 200, 64, 18
    a = _random_ints(rng, (rows, length), 8, extreme=0.2)
    b = _random_ints(rng, (rows, length), 8, extreme=0.2)
    got, overflow = saturating_dot(a, b, acc_width=acc_width)
    lo, hi = -(1 << 17), (1 << 17) - 1
    for r in range(rows):
        acc, flags = ce_model(a[r], b[r], [True] + [False] * (length - 1), acc_width=acc_width)
        assert got[r] == acc[-1] and overflow[r] == flags[-1], r
    exact = (a * b).sum(axis=1)
    assert overflow.any() and not overflow.all()
    np.testing.assert_array_equal(got[~overflow], exact[~overflow])
    differs = overflow & (got != np.clip(exact, lo, hi))
    assert differs.any(), "the stimulus must contain path-dependent sums"


def test_saturating_sum_axis_and_empty():
    terms = np.array([[200, 200, -300], [1, 2, 3]]).T       # reduce along axis 0
    acc, flag = saturating_sum(terms, acc_width=9, axis=0)   # [-256, 255]
    assert acc.tolist() == [-45, 6] and flag.tolist() == [True, False]
    acc, flag = saturating_sum(np.zeros((3, 0), dtype=np.int64), acc_width=9)
    assert acc.tolist() == [0, 0, 0] and not flag.any()


def test_saturating_sum_errors():
    with pytest.raises(ValueError, match="terms must hold integers, not an array of float64"):
        saturating_sum(np.array([1.0]), acc_width=16)
    with pytest.raises(ValueError, match=r"terms too large for exact int64 accumulation: 4 terms "
                                         r"of magnitude up to 2305843009213693952 may reach 2\*\*62"):
        saturating_sum(np.full(4, 1 << 61), acc_width=16)
    with pytest.raises(ValueError, match="acc_width must be an integer from 2 to 62, not 1"):
        saturating_dot([1], [1], acc_width=1)


# -- requantize: nearest-even ----------------------------------------------------------------------

def test_requantize_ties_to_even_by_hand():
    acc = np.array([1, 3, 5, 7, -1, -3, -5, -7, 2, -2, 6, -6])
    # x/2: 0.5 1.5 2.5 3.5 -0.5 -1.5 -2.5 -3.5 1 -1 3 -3
    got, ovf = requantize(acc, 1, 8, acc_width=16)
    assert got.tolist() == [0, 2, 2, 4, 0, -2, -2, -4, 1, -1, 3, -3] and not ovf.any()
    # Just off a tie: 0.5 +- 1/8 and -0.5 +- 1/8.
    got, _ = requantize([3, 5, -3, -5, 12, -12], 3, 8, acc_width=16)
    assert got.tolist() == [0, 1, 0, -1, 2, -2]      # 1.5 -> 2, -1.5 -> -2


def test_requantize_most_negative_and_saturation():
    lo = -(1 << 23)
    got, ovf = requantize([lo, lo, lo, lo, lo + 1], [0, 16, 23, 24, 24], 8, acc_width=24)
    # -2**23, -128, -1, -0.5 -> 0, just above -0.5 -> 0
    assert got.tolist() == [-128, -128, -1, 0, 0] and ovf.tolist() == [True, False, False, False, False]
    hi = (1 << 23) - 1
    got, ovf = requantize([hi, hi, 127 << 4, (127 << 4) + 8, (127 << 4) + 7, -(128 << 4) - 8,
                           -(128 << 4) - 9], [0, 16, 4, 4, 4, 4, 4], 8, acc_width=24)
    # 127.5 ties to 128 (even) and saturates; 127.4375 -> 127; -128.5 ties to -128; -128.5625 -> -129
    assert got.tolist() == [127, 127, 127, 127, 127, -128, -128]
    assert ovf.tolist() == [True, True, False, True, False, False, True]


@SETTINGS
@given(st.integers(2, 62), st.integers(2, 32), st.data())
def test_requantize_nearest_matches_fractions(acc_width, width, data):
    width = min(width, acc_width)
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    accs = data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=20))
    shift = data.draw(st.integers(0, acc_width))
    if shift:   # ties on purpose, of both signs
        accs += [((2 * k + 1) << (shift - 1)) for k in (-3, -2, -1, 0, 1, 2)
                 if lo <= (2 * k + 1) << (shift - 1) <= hi]
    got, ovf = requantize(accs, shift, width, acc_width=acc_width)
    wlo, whi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    want = [_nearest_even(a, shift) for a in accs]
    assert got.tolist() == [min(max(w, wlo), whi) for w in want]
    assert ovf.tolist() == [not wlo <= w <= whi for w in want]


# -- requantize: stochastic ------------------------------------------------------------------------

@SETTINGS
@given(st.integers(2, 62), st.data())
def test_requantize_stochastic_matches_definition(acc_width, data):
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    lanes = data.draw(st.integers(1, 4))
    cycles = data.draw(st.integers(1, 5))
    seed = data.draw(st.integers(0, 2**32 - 1))
    accs = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=lanes * cycles,
                                       max_size=lanes * cycles))).reshape(cycles, lanes)
    shift = data.draw(st.integers(0, acc_width))
    width = min(32, acc_width)
    got, _ = requantize(accs, shift, width, "stochastic", PRNG(seed, lanes), acc_width=acc_width)
    states = [PRNG.lane_state(seed, j) for j in range(lanes)]
    wlo, whi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    for c in range(cycles):
        states = [_xorshift32(x) for x in states]
        want = [_stochastic(int(a), shift, x) for a, x in zip(accs[c], states)]
        assert got[c].tolist() == [min(max(w, wlo), whi) for w in want]


def test_requantize_stochastic_is_unbiased():
    """The mean over N draws of PRNG bits is acc / 2**shift within 5 standard errors.

    Each result is floor(x) + Bernoulli(frac(x)), so the mean's standard error is
    sqrt(p (1 - p) / N) <= 0.5 / sqrt(N): with N = 20000, 5 sigma <= 0.018 LSB.
    """
    n = 20000
    for shift, acc_width in ((4, 16), (13, 24), (40, 48)):
        values = [1, 3, -3, 1 << (shift - 1), -(1 << (shift - 1)) - 1, 5 * (1 << shift) // 7,
                  -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1]
        acc = np.tile(values, (n, 1))
        got, ovf = requantize(acc, shift, 16, "stochastic", PRNG(0xDEADBEEF + shift, len(values)),
                              acc_width=acc_width)
        assert not ovf.any()
        exact = [Fraction(v, 1 << shift) for v in values]
        floors = np.array([math.floor(x) for x in exact])
        p = np.array([float(x - math.floor(x)) for x in exact])
        assert ((got == floors) | (got == floors + 1)).all()
        mean = got.mean(axis=0) - floors
        tol = 5 * np.sqrt(p * (1 - p) / n)
        assert (np.abs(mean - p) <= tol).all(), (shift, mean, p)


def test_requantize_stochastic_with_explicit_bits():
    # acc = 5, shift 3: r = 5, rounds up iff the low 3 bits of the word are >= 3.
    bits = np.array([0, 2, 3, 7, 0xFFFFFFFA])
    got, _ = requantize(np.full(5, 5), 3, 8, "stochastic", bits, acc_width=16)
    assert got.tolist() == [0, 0, 1, 1, 0]
    got, _ = requantize(np.full(5, -5), 3, 8, "stochastic", bits, acc_width=16)   # r = 3
    assert got.tolist() == [-1, -1, -1, 0, -1]


def test_requantize_shift_zero_does_not_round():
    acc = np.array([-5, 0, 7, 127, -128])
    for mode, rng in (("nearest_even", None), ("stochastic", np.full(5, 0xFFFFFFFF))):
        got, ovf = requantize(acc, 0, 8, mode, rng, acc_width=16)
        assert got.tolist() == acc.tolist() and not ovf.any()


@pytest.mark.parametrize("kwargs,message", [
    ({"acc": [0], "shift": 17, "width": 8, "acc_width": 16},
     "shift must be an integer from 0 to acc_width = 16, not 17"),
    ({"acc": [0], "shift": -1, "width": 8, "acc_width": 16},
     "shift must be an integer from 0 to acc_width = 16, not -1"),
    ({"acc": [0], "shift": 1.5, "width": 8, "acc_width": 16},
     "shift must be an integer from 0 to acc_width = 16, not 1.5"),
    ({"acc": [0], "shift": 1, "width": 1, "acc_width": 16},
     "width must be an integer from 2 to 32, not 1"),
    ({"acc": [0], "shift": 1, "width": 17, "acc_width": 16},
     "width must be at most acc_width = 16, not 17"),
    ({"acc": [0], "shift": 1, "width": 8, "acc_width": 0},
     "acc_width must be an integer from 2 to 62, not 0"),
    ({"acc": [0], "shift": 1, "width": 8, "acc_width": 16, "rounding": "nearest"},
     "rounding must be one of 'nearest_even', 'stochastic', not 'nearest'"),
    ({"acc": [1 << 15], "shift": 1, "width": 8, "acc_width": 16},
     r"acc holds 32768, outside the signed 16-bit range \[-32768, 32767\]"),
    ({"acc": [0], "shift": 1, "width": 8, "acc_width": 16, "rounding": "stochastic"},
     "stochastic rounding needs rng: a PRNG or an array of 32-bit random words"),
    ({"acc": [0, 0], "shift": 1, "width": 8, "acc_width": 16, "rounding": "stochastic",
      "rng": PRNG(1, 3)},
     r"the last axis of acc must have the PRNG's 3 lanes, not shape \(2,\)"),
    ({"acc": [0, 0], "shift": 1, "width": 8, "acc_width": 16, "rounding": "stochastic",
      "rng": [1, 2, 3]},
     r"random words must have acc's shape \(2,\), not \(3,\)"),
    ({"acc": [0], "shift": 1, "width": 8, "acc_width": 16, "rounding": "stochastic",
      "rng": [1 << 32]},
     r"rng holds 4294967296, outside the 32-bit unsigned range \[0, 4294967295\]"),
])
def test_requantize_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        requantize(**kwargs)


# -- PRNG ------------------------------------------------------------------------------------------

def test_prng_is_xorshift32():
    # Marsaglia (2003), "Xorshift RNGs": from 2463534242 the first output is 723471715.
    assert PRNG.step(2463534242) == 723471715
    prng = PRNG(5, 4)
    states = [(5 ^ ((j + 1) * 0x9E3779B9)) & 0xFFFFFFFF for j in range(4)]
    assert prng.state.tolist() == states
    for _ in range(50):
        states = [_xorshift32(x) for x in states]
        assert prng.next().tolist() == states
    again = PRNG(5, 4)
    np.testing.assert_array_equal(again.draw(51)[-1], _xorshift32_array(states))
    again.reseed(5)
    assert again.state.tolist() == PRNG(5, 4).state.tolist()


def _xorshift32_array(states):
    return np.array([_xorshift32(x) for x in states])


def test_prng_never_starts_at_zero():
    seed = PRNG.lane_constant(2)
    prng = PRNG(seed, 4)
    assert prng.state[2] == PRNG.lane_constant(2) and (prng.state != 0).all()
    assert (prng.draw(100) != 0).all()


@pytest.mark.parametrize("args,message", [
    ((-1, 2), r"seed must be an integer from 0 to 2\*\*32 - 1, not -1"),
    ((1 << 32, 2), r"seed must be an integer from 0 to 2\*\*32 - 1, not 4294967296"),
    ((1, 0), "lanes must be a positive integer, not 0"),
    ((1, "4"), "lanes must be a positive integer, not '4'"),
])
def test_prng_errors(args, message):
    with pytest.raises(ValueError, match=message):
        PRNG(*args)


# -- quantize and the float reference --------------------------------------------------------------

def test_quantize_by_hand():
    q, sat = quantize([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.75, -0.74], 8, 0)
    assert q.tolist() == [0, 2, 2, 0, -2, -2, 1, -1] and not sat
    q, sat = quantize([0.25, -0.375, 0.99, -1.0, 1.0, np.inf, -np.inf], 8, 7)
    assert q.tolist() == [32, -48, 127, -128, 127, 127, -128] and sat
    q, sat = quantize([0.99, -0.01], 8, 4, rounding="floor")
    assert q.tolist() == [15, -1] and not sat
    np.testing.assert_array_equal(dequantize([32, -48], 7), [0.25, -0.375])


@pytest.mark.parametrize("kwargs,message", [
    ({"x": [0.0], "width": 40, "frac_bits": 3}, "width must be an integer from 2 to 32, not 40"),
    ({"x": [0.0], "width": 8, "frac_bits": 2.0}, "frac_bits must be an integer from -64 to 64, not 2.0"),
    ({"x": [0.0], "width": 8, "frac_bits": 3, "rounding": "up"},
     "rounding must be 'nearest_even' or 'floor', not 'up'"),
    ({"x": [1.0, np.nan], "width": 8, "frac_bits": 3}, r"cannot quantize NaN \(first at index \(1,\)\)"),
])
def test_quantize_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize(**kwargs)


@SETTINGS
@given(expressions(max_operands=3), st.sampled_from([8, 16]),
       st.sampled_from(["nearest_even", "stochastic"]), st.integers(0, 2**32 - 1))
def test_integer_pipeline_within_the_quantization_bound(case, width, rounding, seed):
    """quantize -> einsum_int -> requantize against float64 einsum, within the bound of
    docs/numerics.md:

    |out * 2**-f_o - einsum(x)| <= [einsum(|x| + d) - einsum(|x|)] + e_out + float slack,

    with d_i = 2**-f_i / 2 the operands' rounding error and e_out = 2**-f_o / 2 for nearest
    rounding, 2**-f_o for stochastic (strictly less).
    """
    expr, shapes = case
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-0.99, 0.99, s) for s in shapes]
    fracs = [int(rng.integers(2, width)) for _ in xs]
    qs = []
    for x, f in zip(xs, fracs):
        q, saturated = quantize(x, width, f)
        assert not saturated
        qs.append(q)
    acc, overflow = einsum_int(expr, *qs, width=width, acc_width=62)
    assert not overflow
    total_frac = sum(fracs)
    lanes = acc.shape[-1] if acc.ndim else 1
    # |result| <= number of terms (each a product of values below 1), an overestimate of which
    # is count: out_frac keeps the 32-bit output from saturating.
    count = int(np.prod([n for s in shapes for n in s], dtype=np.int64))
    out_frac = int(rng.integers(0, min(total_frac, max(0, 30 - count.bit_length())) + 1))
    shift = total_frac - out_frac
    prng = PRNG(seed, lanes) if rounding == "stochastic" else None
    out, ovf = requantize(acc.reshape(-1, lanes) if acc.ndim else acc.reshape(1, 1), shift, 32,
                          rounding, prng, acc_width=62)
    assert not ovf.any()
    out = out.reshape(acc.shape)
    ref = einsum_float(expr, *xs)
    delta = [0.5 * 2.0 ** -f for f in fracs]
    input_bound = einsum_float(expr, *(np.abs(x) + d for x, d in zip(xs, delta))) - \
        einsum_float(expr, *(np.abs(x) for x in xs))
    output_bound = (0.5 if rounding == "nearest_even" else 1.0) * 2.0 ** -out_frac
    slack = 1e-12 * (1 + einsum_float(expr, *(np.abs(x) + 1 for x in xs)))
    error = np.abs(dequantize(out, out_frac) - ref)
    assert (error <= input_bound + output_bound + slack).all()
    if rounding == "stochastic":
        assert (error < input_bound + output_bound + slack).all()
