"""The requantizer: accumulators to narrow results by shift, rounding and saturation."""

import numpy as np
from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

# The rounding modes belong to the instruction set: one definition, shared with the decoder.
from fetta.hw.isa import Rounding
from fetta.sim.golden import MAX_ACC_WIDTH, PRNG, requantize

__all__ = ["Rounding", "Requantizer", "requantizer_model", "RequantizerModel"]


# Pipeline stages: byte shift and sum operands; bit shift and rounding carry; saturation tests;
# increment and saturation.
_LATENCY = 4


def _xorshift(x):
    """One xorshift32 step of a 32-bit value, as :meth:`fetta.sim.golden.PRNG.step`."""
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


def _shift_bits(acc_width):
    return acc_width.bit_length()   # enough for 0..acc_width


class Requantizer(wiring.Component):
    """Shift ``lanes`` signed accumulators right, round them and saturate them to ``width`` bits.

    Each beat carries ``lanes`` accumulators, a ``shift`` and a :class:`Rounding` mode, and yields
    ``lanes`` results equal to :func:`fetta.sim.golden.requantize` of them (see
    :func:`requantizer_model`). A ``shift`` above ``acc_width`` acts as ``acc_width``.

    Stochastic rounding takes its bits from one 32-bit xorshift generator per lane, the
    :class:`fetta.sim.golden.PRNG`: every accepted beat steps all lanes once (whatever its mode)
    and uses the new states. The generators start from the constructor's ``seed`` after reset;
    ``seed_load`` reloads them from the ``seed`` port (taking precedence over a beat in the same
    cycle, which still uses the bits of the old state).

    Latency: a beat's results appear on ``o`` :attr:`latency` (4) cycles after it is accepted;
    throughput one beat per cycle. There is no back-pressure: ``o`` must be accepted when valid.
    The four registered stages: the shift by whole bytes and the operands of the rounding sum;
    the shift by the remaining bits and the rounding carry; the saturation tests; the increment
    and saturation (see ``docs/numerics.md``).
    Overflow: a result beyond the ``width``-bit range saturates at its most positive or negative
    value and sets the sticky ``overflow`` flag in the cycle the beat appears on ``o``; ``clear``
    clears it (a saturation in the same cycle wins).

    Parameters
    ----------
    lanes : int
        Number of lanes (at least 1).
    acc_width : int
        Accumulator width in bits (from ``width`` to 62).
    width : int
        Result width in bits (2 to 32).
    seed : int
        Generator seed after reset, 0 to 2**32 - 1.

    Members
    -------
    i : ``In(stream.Signature(data.StructLayout({"acc", "shift", "rounding"}), always_ready=True))``
        Beats: ``acc`` an array of ``lanes`` signed ``acc_width``-bit accumulators, ``shift``
        unsigned (``acc_width.bit_length()`` bits), ``rounding`` a :class:`Rounding`.
    o : ``Out(stream.Signature(data.ArrayLayout(signed(width), lanes), always_ready=True))``
        Results.
    overflow : ``Out(1)``
        Sticky saturation flag.
    clear : ``In(1)``
        Clears ``overflow``.
    seed : ``In(32)``
        Seed loaded by ``seed_load``.
    seed_load : ``In(1)``
        Restarts the generators from ``seed``.
    """

    def __init__(self, *, lanes, acc_width, width, seed=1):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"Lane count must be a positive integer, not {lanes!r}")
        if not isinstance(width, int) or isinstance(width, bool) or not 2 <= width <= 32:
            raise ValueError(f"Result width must be an integer from 2 to 32, not {width!r}")
        if (not isinstance(acc_width, int) or isinstance(acc_width, bool)
                or not width <= acc_width <= MAX_ACC_WIDTH):
            raise ValueError(f"Accumulator width must be an integer from width = {width} to "
                             f"{MAX_ACC_WIDTH}, not {acc_width!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 32:
            raise ValueError(f"Seed must be an integer from 0 to 2**32 - 1, not {seed!r}")
        self._lanes = lanes
        self._acc_width = acc_width
        self._width = width
        self._seed = seed
        layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(acc_width), lanes),
            "shift": unsigned(_shift_bits(acc_width)),
            "rounding": Rounding,
        })
        super().__init__({
            "i": In(stream.Signature(layout, always_ready=True)),
            "o": Out(stream.Signature(data.ArrayLayout(signed(width), lanes), always_ready=True)),
            "overflow": Out(1),
            "clear": In(1),
            "seed": In(32),
            "seed_load": In(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def acc_width(self):
        return self._acc_width

    @property
    def width(self):
        return self._width

    @property
    def seed_value(self):
        """The generators' seed after reset."""
        return self._seed

    @property
    def latency(self):
        """Cycles from an accepted beat to its results on ``o``."""
        return _LATENCY

    def elaborate(self, platform):
        m = Module()
        A, W, L = self._acc_width, self._width, self._lanes
        lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
        payload = self.i.payload

        # No clamp of the shift: a shift field above A already gives the mask of all ones and
        # (arithmetically) a quotient of sign bits, exactly as a shift of A.
        shift = payload.shift
        stochastic = payload.rounding == Rounding.STOCHASTIC
        # mask = 2**s - 1 as a table, not comparisons, which Yosys would map to carry chains.
        mask = Signal(A)
        with m.Switch(shift):
            for value in range(1 << len(shift)):
                with m.Case(value):
                    m.d.comb += mask.eq((1 << min(value, A)) - 1)
        s1_valid = Signal()
        s1_fine = Signal(3, reset_less=True)    # s mod 8, the part of the shift left to stage 2
        s1_even = Signal(reset_less=True)       # the nearest-even carry-in q[0] applies (s >= 1)
        s2_valid = Signal()
        s2_even = Signal(reset_less=True)
        s3_valid = Signal()
        m.d.sync += [
            s1_valid.eq(self.i.valid),
            s1_fine.eq(shift[:3]),
            s1_even.eq(~stochastic & (shift != 0)),
            s2_valid.eq(s1_valid),
            s2_even.eq(s1_even),
            s3_valid.eq(s2_valid),
            self.o.valid.eq(s3_valid),
        ]

        # xorshift is linear: a lane seeded with seed ^ const steps to step(seed) ^ step(const),
        # so one step of the seed port serves every lane (but the lane whose state would be 0,
        # seed = const, which restarts from const).
        seed_step = Signal(32)
        m.d.comb += seed_step.eq(_xorshift(self.seed))
        saturated = Signal(L)
        for k in range(L):
            # The register holds the next beat's bits, one xorshift step ahead of PRNG's state.
            const = PRNG.lane_constant(k)
            bits = Signal(32, name=f"rand_{k}",
                          init=PRNG.step(PRNG.lane_state(self._seed, k)))
            with m.If(self.seed_load):
                m.d.sync += bits.eq(Mux(self.seed == const, PRNG.step(const),
                                        seed_step ^ PRNG.step(const)))
            with m.Elif(self.i.valid):
                m.d.sync += bits.eq(_xorshift(bits))

            # Stage 1: the shift by whole bytes (acc >> 8 * (s // 8)) and the operands of the
            # rounding sum below. Splitting the barrel shifter halves the logic behind the shift
            # field, whose fan-out spans every lane; the sum's operands are the lane's own
            # registers, so no shared mask fans out again in stage 2.
            acc = payload.acc[k]
            rand = Cat(*[bits] * ((A + 31) // 32))[:A]
            s1_coarse = Signal(signed(A), name=f"s1_coarse_{k}", reset_less=True)
            s1_filled = Signal(A, name=f"s1_filled_{k}", reset_less=True)
            s1_addend = Signal(A, name=f"s1_addend_{k}", reset_less=True)
            m.d.sync += [
                s1_coarse.eq(acc >> Cat(C(0, 3), shift[3:])),
                s1_filled.eq(acc.as_unsigned() | ~mask),
                s1_addend.eq(Mux(stochastic, rand & mask, mask >> 1)),
            ]

            # Stage 2: the rest of the shift, q = acc >> s, and the rounding carry. The increment
            # is the carry into bit s of r + addend + cin, with r = acc mod 2**s and
            #   nearest-even: addend = 2**(s-1) - 1, cin = q[0]  (r > half, or r = half and q odd)
            #   stochastic:   addend = R (the random bits mod 2**s), cin = 0.
            # With ones filled in above bit s (`filled`), that carry runs out of the top: it is the
            # carry-out (generate) of one adder with no carry-in, plus propagate & cin, where
            # propagate (all bits of filled ^ addend) is a tie in nearest-even. So q[0], at the
            # end of the shifter, need not enter the carry chain.
            q = Signal(signed(A), name=f"quotient_{k}")
            m.d.comb += q.eq(s1_coarse >> s1_fine)
            total = Signal(A + 1, name=f"round_sum_{k}")
            m.d.comb += total.eq(s1_filled + s1_addend)
            s2_q = Signal(signed(A), name=f"s2_q_{k}", reset_less=True)
            s2_generate = Signal(name=f"s2_generate_{k}", reset_less=True)
            s2_tie = Signal(name=f"s2_tie_{k}", reset_less=True)
            m.d.sync += [
                s2_q.eq(q),
                s2_generate.eq(total[A]),
                # The propagate: a tie for nearest-even (stochastic beats have no carry-in).
                s2_tie.eq((s1_filled ^ s1_addend).all()),
            ]

            # Stage 3: the saturation tests on q, wide reductions kept apart from the decision.
            top = s2_q[W - 1:]                      # all equal bits <=> q fits in W bits
            s3_up = Signal(name=f"s3_up_{k}", reset_less=True)
            s3_q = Signal(W, name=f"s3_q_{k}", reset_less=True)
            s3_sign = Signal(name=f"s3_sign_{k}", reset_less=True)
            s3_top_any = Signal(name=f"s3_top_any_{k}", reset_less=True)
            s3_top_all = Signal(name=f"s3_top_all_{k}", reset_less=True)
            s3_below_lo = Signal(name=f"s3_below_lo_{k}", reset_less=True)  # lo - 1 if low ones
            s3_low_ones = Signal(name=f"s3_low_ones_{k}", reset_less=True)
            m.d.sync += [
                s3_up.eq(s2_generate | (s2_tie & s2_even & s2_q[0])),
                s3_q.eq(s2_q[:W]),
                s3_sign.eq(s2_q[A - 1]),
                s3_top_any.eq(top.any()),
                s3_top_all.eq(top.all()),
                s3_below_lo.eq(top[1:].all() & ~top[0]),
                s3_low_ones.eq(s2_q[:W - 1].all()),
            ]

            # Stage 4: q + up, saturated. Saturation is decided from q's bits alone, in parallel
            # with a W-bit increment: q + up > hi iff q > hi, or q = hi and up; q + up < lo iff
            # q < lo, unless q = lo - 1 and up.
            up = s3_up
            sat_hi = Signal(name=f"sat_hi_{k}")
            sat_lo = Signal(name=f"sat_lo_{k}")
            m.d.comb += [
                sat_hi.eq((~s3_sign & s3_top_any) | (~s3_top_any & s3_low_ones & up)),
                sat_lo.eq(s3_sign & ~s3_top_all & ~(s3_below_lo & s3_low_ones & up)),
                saturated[k].eq(sat_hi | sat_lo),
            ]
            m.d.sync += self.o.payload[k].eq(Mux(sat_hi, hi, Mux(sat_lo, lo, (s3_q + up)[:W])))

        with m.If(self.clear):
            m.d.sync += self.overflow.eq(0)
        with m.If(s3_valid & saturated.any()):
            m.d.sync += self.overflow.eq(1)
        return m


def requantizer_model(acc, shift, rounding, *, width, acc_width, prng):
    """Bit-exact model of :class:`Requantizer` for a sequence of accepted beats.

    Parameters
    ----------
    acc : array of int, shape ``(beats, lanes)``
    shift : array of int, shape ``(beats,)``
        Values above ``acc_width`` act as ``acc_width``, as in the hardware.
    rounding : sequence of :class:`Rounding` (or its values), length ``beats``
    width, acc_width : int
        As the component's.
    prng : :class:`fetta.sim.golden.PRNG`
        The generators' state before the first beat; stepped once per beat.

    Returns
    -------
    (values, overflow) : (int64 ndarray of shape ``(beats, lanes)``, bool ndarray of ``(beats,)``)
        Each beat's results and whether any of its lanes saturated.
    """
    acc = np.asarray(acc, dtype=np.int64)
    beats = acc.shape[0]
    shift = np.minimum(np.asarray(shift, dtype=np.int64), acc_width).reshape(beats, 1)
    mode = np.array([Rounding(r).value for r in rounding]).reshape(beats, 1)
    bits = prng.draw(beats)
    nearest, n_ovf = requantize(acc, shift, width, "nearest_even", acc_width=acc_width)
    stoch, s_ovf = requantize(acc, shift, width, "stochastic", bits, acc_width=acc_width)
    is_stochastic = mode == Rounding.STOCHASTIC.value
    values = np.where(is_stochastic, stoch, nearest)
    overflow = np.where(is_stochastic, s_ovf, n_ovf)
    return values, overflow.any(axis=1)


class RequantizerModel:
    """Cycle-exact model of :class:`Requantizer`: the same outputs, cycle for cycle.

    Call :meth:`cycle` once per clock cycle with that cycle's inputs; it returns the outputs seen
    after the cycle's clock edge, as the component's would be.

    Parameters
    ----------
    lanes, acc_width, width, seed : int
        As the component's.
    """

    def __init__(self, *, lanes, acc_width, width, seed=1):
        self._params = dict(lanes=lanes, acc_width=acc_width, width=width)
        self.latency = _LATENCY
        self._prng = PRNG(seed, lanes)
        self._pipe = [None] * (self.latency - 1)
        self.overflow = False

    def cycle(self, *, valid=False, acc=None, shift=0, rounding=Rounding.NEAREST_EVEN,
              clear=False, seed_load=False, seed=0):
        """Advance one cycle; return ``(o_valid, o_payload, overflow)`` after its clock edge.

        ``o_payload`` is an int64 array of ``lanes`` results, or None when ``o_valid`` is false.
        """
        beat = None
        if valid:
            values, saturated = requantizer_model(
                np.asarray(acc, dtype=np.int64).reshape(1, -1), [shift], [rounding],
                width=self._params["width"], acc_width=self._params["acc_width"], prng=self._prng)
            beat = (values[0], bool(saturated[0]))
        if seed_load:
            self._prng.reseed(seed)
        # A beat presented in cycle t shows after the edge of cycle t + latency - 1.
        self._pipe.append(beat)
        shown = self._pipe.pop(0)
        if clear:
            self.overflow = False
        if shown is not None and shown[1]:
            self.overflow = True
        return (shown is not None, None if shown is None else shown[0].copy(), self.overflow)
