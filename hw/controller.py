"""The controller: fetches and decodes microcode, runs the loop nests and generates row addresses."""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import AcceleratorConfig
from .isa import BASE_LAYOUT, INSTR_WIDTH, LOOP_LAYOUT, STEP_LAYOUT, Cause, Opcode, Rounding

__all__ = ["Controller", "step_layout", "issue_layout"]

_OPERANDS = ("a", "b", "c")


def step_layout():
    """Fields of the running step that the datapath needs (held from decode to the next step)."""
    return data.StructLayout({
        "shift": unsigned(6), "rounding": Rounding, "b_one": 1,
        "region_a": unsigned(3), "region_b": unsigned(3), "region_c": unsigned(3),
    })


def issue_layout(row_bits):
    """One beat: the row addresses and the first/last-of-sweep flags."""
    return data.StructLayout({
        "valid": 1, "first": 1, "last": 1,
        "addr_a": unsigned(row_bits), "addr_b": unsigned(row_bits), "addr_c": unsigned(row_bits),
    })


def _tree_sum(values):
    """The sum of ``values`` as a balanced tree of adders (depth log2 n, not n - 1)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class Controller(wiring.Component):
    """Microcode sequencer of the accelerator (see docs/isa.md for the instructions).

    States: IDLE; FETCH (present ``pc`` to program memory); READ (latch the word into the
    instruction register); DECODE (execute NOP/LOOP/BASE/HALT; check a STEP's fields, register
    them and the pairwise sums of the extents that its address-range check adds up); SUM (add
    those up per operand);
    CHECK (compare the sums with the region; on success start the loop nest, and the datapath
    latches the route configurations: ``load``); ISSUE (one beat per cycle, ``n`` cycles); DRAIN
    (``timing.drain`` cycles, until the last row of the step is written). Every instruction except
    STEP takes ``timing.instr`` cycles; a STEP ``timing.step_cycles(n)``. Each state's logic starts
    from registers, so no path runs from the program memory's output or through more than one
    wide adder.

    Loop levels: per level a counter with registered first/last flags, and, per operand, a stack
    of running row addresses (``addr[k]`` = base + the contributions of levels k and above), so a
    beat needs one adder per level and operand, no multiplier and no comparator. The extents
    ``(count - 1) * stride`` used by the range check are multiplied out in the cycle after a LOOP
    executes (one multiplier per operand, from registers, into registers) and stored in the cycle
    after that.

    Errors (``done`` and ``error`` set, ``cause`` and ``err_pc`` recorded, back to IDLE): an
    illegal instruction (in DECODE; an illegal STEP in SUM), a STEP whose rows leave a region (in CHECK, before anything is
    issued), a fetch at ``pc >= prog_depth`` (in FETCH), an accumulator saturation (``overflow`` at
    the end of the drain). ``clear`` clears them; ``start`` is ignored while ``error`` is set.

    Parameters
    ----------
    config : AcceleratorConfig
    timing : fetta.hw.accelerator.Timing

    Members
    -------
    start, clear : ``In(1)``
        Commands (one-cycle pulses).
    entry : ``In(16)``
        Program counter loaded by ``start``.
    busy, done, error : ``Out(1)``
    cause : ``Out(Cause)``
    err_pc, pc : ``Out(17)``
    cycles, busy_cycles, macs, stalls : ``Out(config.counter_width)``
        Performance counters, cleared by ``start``; they wrap modulo ``2 ** counter_width``.
    prog_addr : ``Out``; prog_data : ``In(64)``
        Program memory read port (data one cycle after the address).
    route_a, route_b, route_c : ``Out(10)``
        Route-table indices of the decoded STEP (valid from DECODE; the tables' data is read in
        CHECK).
    load : ``Out(1)``
        High in CHECK: latch the route configurations.
    step : ``Out(step_layout())``
    issue : ``Out(issue_layout(row_bits))``
    overflow : ``In(1)``
        The CE array's sticky saturation flag.
    """

    def __init__(self, *, config, timing):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        self._timing = timing
        self._prog_bits = (config.prog_depth - 1).bit_length()
        super().__init__({
            "start": In(1), "clear": In(1), "entry": In(16),
            "busy": Out(1), "done": Out(1), "error": Out(1), "cause": Out(Cause),
            "err_pc": Out(17), "pc": Out(17),
            "cycles": Out(config.counter_width), "busy_cycles": Out(config.counter_width),
            "macs": Out(config.counter_width), "stalls": Out(config.counter_width),
            "prog_addr": Out(self._prog_bits), "prog_data": In(INSTR_WIDTH),
            "route_a": Out(10), "route_b": Out(10), "route_c": Out(10),
            "load": Out(1),
            "step": Out(step_layout()),
            "issue": Out(issue_layout(config.row_bits)),
            "overflow": In(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def timing(self):
        return self._timing

    def elaborate(self, platform):
        m = Module()
        c, t = self._config, self._timing
        N = c.loop_levels
        addr_width = 19  # 16-bit bases plus a margin; in-range addresses fit row_bits <= 13
        sum_width = 34   # a 16-bit base plus N <= 4 extents of 30 bits

        last = [Signal(15, name=f"last_{k}") for k in range(N)]      # count - 1
        stride = {op: [Signal(signed(14), name=f"stride_{op}_{k}") for k in range(N)] for op in _OPERANDS}
        ext = {op: [Signal(signed(30), name=f"ext_{op}_{k}") for k in range(N)] for op in _OPERANDS}
        region = {op: Signal(3, name=f"region_{op}", init=i) for i, op in enumerate(_OPERANDS)}
        base = {op: Signal(16, name=f"base_{op}") for op in _OPERANDS}
        levels = Signal(4)
        red = Signal(4)
        ctr = [Signal(15, name=f"i_{k}") for k in range(N)]
        at_start = [Signal(name=f"at_start_{k}") for k in range(N)]   # ctr == 0
        at_end = [Signal(name=f"at_end_{k}") for k in range(N)]       # ctr == last
        active = [Signal(name=f"active_{k}") for k in range(N)]       # level k < levels
        in_red = [Signal(name=f"in_red_{k}") for k in range(N)]       # level k < red
        addr = {op: [Signal(signed(addr_width), name=f"addr_{op}_{k}") for k in range(N)]
                for op in _OPERANDS}
        drain_left = Signal(range(max(t.drain, 2)))

        # The instruction register: DECODE works from it, never from the memory's output.
        ir = Signal(INSTR_WIDTH)
        opcode = ir[:4]
        loop_w = LOOP_LAYOUT(ir[:LOOP_LAYOUT.size])
        base_w = BASE_LAYOUT(ir[:BASE_LAYOUT.size])
        step_w = STEP_LAYOUT(ir[:STEP_LAYOUT.size])

        m.d.comb += [
            self.prog_addr.eq(self.pc[:self._prog_bits]),
            self.route_a.eq(step_w.route_a),
            self.route_b.eq(step_w.route_b),
            self.route_c.eq(step_w.route_c),
        ]

        # LOOP: legality; the extents are multiplied out in the next cycle, from registers.
        # The instruction register still holds the LOOP then, but multiplying from these
        # copies keeps its fan-out down: from it directly, the controller measured 108.7 MHz
        # out of context instead of 118.9.
        loop_illegal = (loop_w.count == 0) | (loop_w.level >= N)
        mul_pending = Signal()
        mul_level = Signal(range(max(N, 2)))
        mul_last = Signal(15)
        mul_stride = {op: Signal(signed(14), name=f"mul_stride_{op}") for op in _OPERANDS}
        # The products are registered at the multipliers (a DSP block's output is slow) and
        # land in their level's extents a cycle later, still before the next DECODE reads them.
        # With one level, the product register is the level's extent.
        if N == 1:
            product = {op: ext[op][0] for op in _OPERANDS}
        else:
            product = {op: Signal(signed(30), name=f"product_{op}", reset_less=True)
                       for op in _OPERANDS}
        product_pending = Signal()
        product_level = Signal.like(mul_level)
        m.d.sync += [mul_pending.eq(0), product_pending.eq(mul_pending),
                     product_level.eq(mul_level)]
        for op in _OPERANDS:
            m.d.sync += product[op].eq(mul_last * mul_stride[op])
        if N > 1:
            with m.If(product_pending):
                for k in range(N):
                    with m.If(product_level == k):
                        for op in _OPERANDS:
                            m.d.sync += ext[op][k].eq(product[op])

        # BASE: legality.
        ra, rb, rc = base_w.region_a, base_w.region_b, base_w.region_c
        base_illegal = ((ra == rb) | (ra == rc) | (rb == rc)
                        | (ra >= c.regions) | (rb >= c.regions) | (rc >= c.regions))

        # STEP: legality (DECODE), the terms of the address range (registered in DECODE), their
        # sums (SUM) and the comparison with the region (CHECK).
        step_illegal = ((step_w.levels == 0) | (step_w.levels > N) | (step_w.red > step_w.levels)
                        | (step_w.route_a >= c.dist_routes) | (step_w.route_b >= c.dist_routes)
                        | (step_w.route_c >= c.red_routes) | (step_w.shift >= c.sum_width))
        step_bad = Signal()
        terms = {}   # (op, "lo"/"hi") -> registers: the base and the extents, added in pairs
        sums = {}
        for op in _OPERANDS:
            for bound in ("lo", "hi"):
                values = [base[op]]
                for k in range(N):
                    counted = step_w.levels > k
                    if op == "c":
                        counted = counted & (step_w.red <= k)
                    e = ext[op][k]
                    # The negative extents lower the range, the others raise it (a zero
                    # one adds nothing either way): the sign bit decides.
                    keep = counted & (e[-1] if bound == "lo" else ~e[-1])
                    values.append(Mux(keep, e, 0))
                regs = []
                for i in range(0, len(values), 2):
                    reg = Signal(signed(sum_width), name=f"range_{bound}_{op}_{i // 2}")
                    m.d.sync += reg.eq(sum(values[i:i + 2]))
                    regs.append(reg)
                terms[op, bound] = regs
                if len(regs) == 1:
                    # One loop level: the pair is the whole sum. Its inputs do not change
                    # between DECODE and CHECK, so in CHECK it still holds what SUM would copy.
                    sums[op, bound] = regs[0]
                else:
                    sums[op, bound] = Signal(signed(sum_width), name=f"range_{bound}_{op}")
        b_one = self.step.b_one
        out_of_range = []
        for op in _OPERANDS:
            # depth is a power of two: hi >= depth iff hi is positive with a bit set from row_bits.
            lo, hi = sums[op, "lo"], sums[op, "hi"]
            bad = lo[-1] | (~hi[-1] & hi[c.row_bits:-1].any())
            out_of_range.append(bad & ~b_one if op == "b" else bad)
        step_out_of_range = Cat(*out_of_range).any()

        # The loop nest (ISSUE). Which levels take their next value in a beat (``move``) and
        # which one counts up (``carry``, one-hot) are decided a cycle ahead from the flags'
        # next values and registered, as is ``final``: the enables of the address registers,
        # which sit by the scratchpad's ports across the chip, come straight from flip-flops.
        # ``loading`` is high in CHECK (a register, not a decode of the state), and so is the
        # datapath's ``load`` of the route configurations.
        loading = Signal()
        move = [Signal(name=f"move_{k}") for k in range(N)]
        carry = [Signal(name=f"carry_{k}") for k in range(N)]
        final = Signal()
        at_last = [~active[k] | at_end[k] for k in range(N)]
        first = Cat(*[~in_red[k] | at_start[k] for k in range(N)]).all()
        last_beat = Cat(*[~in_red[k] | at_last[k] for k in range(N)]).all()
        nxt = {}
        for op in _OPERANDS:
            value = Const(0, signed(addr_width))
            for k in range(N):
                s = Mux(in_red[k], 0, stride[op][k]) if op == "c" else stride[op][k]
                value = Mux(carry[k], addr[op][k] + s, value)
            nxt[op] = Signal(signed(addr_width), name=f"next_{op}")
            m.d.comb += nxt[op].eq(value)
        for k in range(N):
            with m.If(loading):
                for op in _OPERANDS:
                    m.d.sync += addr[op][k].eq(base[op])
            with m.Elif(move[k]):
                for op in _OPERANDS:
                    m.d.sync += addr[op][k].eq(nxt[op])

        m.d.comb += [
            self.issue.first.eq(first),
            self.issue.last.eq(last_beat),
            self.issue.addr_a.eq(addr["a"][0]),
            self.issue.addr_b.eq(addr["b"][0]),
            self.issue.addr_c.eq(addr["c"][0]),
        ]

        # The cause a failure in the current state would have, and the pc, are registered every
        # cycle until an error freezes them; CAUSE and ERR_PC show them only while ``error`` is
        # set. So a failure decides two flags and the state, and nothing wider.
        state_cause = Signal(Cause)
        cause_q = Signal(Cause)
        err_pc_q = Signal(17)
        with m.If(~self.error):
            m.d.sync += [cause_q.eq(state_cause), err_pc_q.eq(self.pc)]
        m.d.comb += [
            self.cause.eq(Mux(self.error, cause_q, Cause.NONE)),
            self.err_pc.eq(Mux(self.error, err_pc_q, 0)),
        ]

        def can_fail(cause):
            """The cause of any failure in this state (called at the top of the state)."""
            m.d.comb += state_cause.eq(cause)

        def fail():
            m.d.sync += [self.error.eq(1), self.done.eq(1), self.busy.eq(0)]
            m.next = "IDLE"

        with m.If(self.clear):
            m.d.sync += [self.error.eq(0), self.done.eq(0)]

        with m.FSM(name="state") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ~self.error):
                    m.d.sync += [
                        self.pc.eq(self.entry), self.done.eq(0), self.busy.eq(1),
                        self.cycles.eq(0), self.busy_cycles.eq(0), self.macs.eq(0),
                        self.stalls.eq(0),
                    ]
                    m.next = "FETCH"
            with m.State("FETCH"):
                can_fail(Cause.ADDRESS)
                with m.If(self.pc >= c.prog_depth):
                    fail()
                with m.Else():
                    m.next = "READ"
            with m.State("READ"):
                m.d.sync += ir.eq(self.prog_data)
                m.next = "DECODE"
            with m.State("DECODE"):
                can_fail(Cause.ILLEGAL)
                with m.Switch(opcode):
                    with m.Case(Opcode.NOP):
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
                    with m.Case(Opcode.HALT):
                        m.d.sync += [self.done.eq(1), self.busy.eq(0)]
                        m.next = "IDLE"
                    with m.Case(Opcode.LOOP):
                        with m.If(loop_illegal):
                            fail()
                        with m.Else():
                            for k in range(N):
                                with m.If(loop_w.level == k):
                                    m.d.sync += last[k].eq(loop_w.count - 1)
                                    for op in _OPERANDS:
                                        m.d.sync += stride[op][k].eq(getattr(loop_w, f"stride_{op}"))
                            m.d.sync += [mul_pending.eq(1), mul_level.eq(loop_w.level),
                                         mul_last.eq(loop_w.count - 1)]
                            for op in _OPERANDS:
                                m.d.sync += mul_stride[op].eq(getattr(loop_w, f"stride_{op}"))
                            m.d.sync += self.pc.eq(self.pc + 1)
                            m.next = "FETCH"
                    with m.Case(Opcode.BASE):
                        with m.If(base_illegal):
                            fail()
                        with m.Else():
                            for op in _OPERANDS:
                                m.d.sync += [
                                    region[op].eq(getattr(base_w, f"region_{op}")),
                                    base[op].eq(getattr(base_w, f"base_{op}")),
                                ]
                            m.d.sync += self.pc.eq(self.pc + 1)
                            m.next = "FETCH"
                    with m.Case(Opcode.STEP):
                        # Nothing is in flight: the datapath may see the new fields now. Their
                        # legality is registered and acted on in SUM.
                        m.d.sync += [
                            step_bad.eq(step_illegal),
                            levels.eq(step_w.levels), red.eq(step_w.red),
                            self.step.shift.eq(step_w.shift),
                            self.step.rounding.eq(step_w.rounding),
                            self.step.b_one.eq(step_w.b_one),
                            self.step.region_a.eq(region["a"]),
                            self.step.region_b.eq(region["b"]),
                            self.step.region_c.eq(region["c"]),
                        ]
                        m.next = "SUM"
                    with m.Default():
                        fail()
            with m.State("SUM"):
                can_fail(Cause.ILLEGAL)
                for key, regs in terms.items():
                    if len(regs) > 1:
                        m.d.sync += sums[key].eq(_tree_sum(regs))
                with m.If(step_bad):
                    fail()
                with m.Else():
                    m.next = "CHECK"
            with m.State("CHECK"):
                can_fail(Cause.ADDRESS)
                # The loop nest starts whatever the check decides (it runs only in ISSUE), so
                # the decision drives the state and the error registers alone.
                for k in range(N):
                    m.d.sync += [active[k].eq(levels > k), in_red[k].eq(red > k)]
                with m.If(step_out_of_range):
                    fail()
                with m.Else():
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(final):
                    m.d.sync += drain_left.eq(t.drain - 1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                can_fail(Cause.SATURATION)
                with m.If(drain_left == 0):
                    with m.If(self.overflow):
                        fail()
                    with m.Else():
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
                with m.Else():
                    m.d.sync += drain_left.eq(drain_left - 1)

        issuing = fsm.ongoing("ISSUE")
        m.d.sync += loading.eq(fsm.ongoing("SUM") & ~step_bad)
        # The flags' next values (CHECK starts the nest; a beat moves the levels in ``move``).
        # The nest starts whatever CHECK decides: after a failure it moves once in IDLE, which
        # nothing reads, and the next CHECK starts it again.
        at_end_next = []
        for k in range(N):
            ctr_next, at_start_next, end_next = Signal.like(ctr[k]), Signal(), Signal()
            m.d.comb += [ctr_next.eq(ctr[k]), at_start_next.eq(at_start[k]),
                         end_next.eq(at_end[k])]
            with m.If(loading | (move[k] & ~carry[k])):
                m.d.comb += [ctr_next.eq(0), at_start_next.eq(1), end_next.eq(last[k] == 0)]
            with m.Elif(move[k]):
                m.d.comb += [ctr_next.eq(ctr[k] + 1), at_start_next.eq(0),
                             end_next.eq(ctr[k] + 1 == last[k])]
            m.d.sync += [ctr[k].eq(ctr_next), at_start[k].eq(at_start_next),
                         at_end[k].eq(end_next)]
            at_end_next.append(end_next)
        active_next = [Mux(loading, levels > k, active[k]) for k in range(N)]
        at_last_next = [~active_next[k] | at_end_next[k] for k in range(N)]
        below_next = [Const(1)]
        for k in range(N):
            below_next.append(below_next[-1] & at_last_next[k])
        issue_next = loading | (issuing & ~final)
        m.d.sync += final.eq(below_next[N])
        for k in range(N):
            m.d.sync += [
                move[k].eq(issue_next & below_next[k] & ~below_next[N]),
                carry[k].eq(below_next[k] & ~at_last_next[k]),
            ]
        m.d.comb += [
            # Route configurations are latched in CHECK whether or not the step passes (nothing
            # runs on them after a failure): the check's outcome drives no wide enable.
            self.load.eq(loading),
            self.issue.valid.eq(issuing),
        ]
        # busy is a register (set by start, cleared with every return to IDLE), not a decode of
        # the state: it selects the scratchpad's addresses.
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(issuing):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
            with m.If(~self.step.b_one):
                m.d.sync += self.macs.eq(self.macs + c.lanes)
        with m.If(self.load | fsm.ongoing("DRAIN")):
            m.d.sync += self.stalls.eq(self.stalls + 1)
        return m
