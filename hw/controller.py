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


class Controller(wiring.Component):
    """Microcode sequencer of the accelerator (see docs/isa.md for the instructions).

    States: IDLE, FETCH (present ``pc`` to program memory), DECODE (execute NOP/LOOP/BASE/HALT;
    check a STEP and present its route-table indices), LOAD (the datapath latches the route
    configurations), ISSUE (one beat per cycle, ``n`` cycles), DRAIN (``timing.drain`` cycles, until
    the last row of the step is written). Every instruction except STEP takes ``timing.instr``
    cycles; a STEP ``timing.step_cycles(n)``.

    Loop levels: a counter per level and, per operand, a stack of running row addresses
    (``addr[k]`` = base + the contributions of levels k and above), so a beat needs one adder per
    level and operand and no multiplier; the extents ``(count - 1) * stride`` used by the range
    check are multiplied out when a LOOP executes.

    Errors (``done`` and ``error`` set, ``cause`` and ``err_pc`` recorded, back to IDLE): an
    illegal instruction (in DECODE), a STEP whose rows leave a region (in DECODE, before anything is
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
    cycles, busy_cycles, macs, stalls : ``Out(64)``
        Performance counters, cleared by ``start``.
    prog_addr : ``Out``; prog_data : ``In(64)``
        Program memory read port (data one cycle after the address).
    route_a, route_b, route_c : ``Out(10)``
        Route-table indices of the STEP in DECODE (the table's data is read in LOAD).
    load : ``Out(1)``
        High in LOAD: latch the route configurations.
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
            "cycles": Out(64), "busy_cycles": Out(64), "macs": Out(64), "stalls": Out(64),
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

        count = [Signal(15, name=f"count_{k}", init=1) for k in range(N)]
        stride = {op: [Signal(signed(14), name=f"stride_{op}_{k}") for k in range(N)] for op in _OPERANDS}
        ext = {op: [Signal(signed(30), name=f"ext_{op}_{k}") for k in range(N)] for op in _OPERANDS}
        region = {op: Signal(3, name=f"region_{op}", init=i) for i, op in enumerate(_OPERANDS)}
        base = {op: Signal(16, name=f"base_{op}") for op in _OPERANDS}
        levels = Signal(4)
        red = Signal(4)
        ctr = [Signal(15, name=f"i_{k}") for k in range(N)]
        addr = {op: [Signal(signed(addr_width), name=f"addr_{op}_{k}") for k in range(N)]
                for op in _OPERANDS}
        drain_left = Signal(range(max(t.drain, 2)))

        word = self.prog_data
        opcode = word[:4]
        loop_w = LOOP_LAYOUT(word[:LOOP_LAYOUT.size])
        base_w = BASE_LAYOUT(word[:BASE_LAYOUT.size])
        step_w = STEP_LAYOUT(word[:STEP_LAYOUT.size])

        m.d.comb += [
            self.prog_addr.eq(self.pc[:self._prog_bits]),
            self.route_a.eq(step_w.route_a),
            self.route_b.eq(step_w.route_b),
            self.route_c.eq(step_w.route_c),
        ]

        # LOOP: legality and the extents (one multiplier per operand).
        loop_illegal = (loop_w.count == 0) | (loop_w.level >= N)
        loop_ext = {op: Signal(signed(30), name=f"loop_ext_{op}") for op in _OPERANDS}
        for op in _OPERANDS:
            m.d.comb += loop_ext[op].eq((loop_w.count - 1) * getattr(loop_w, f"stride_{op}"))

        # BASE: legality.
        ra, rb, rc = base_w.region_a, base_w.region_b, base_w.region_c
        base_illegal = ((ra == rb) | (ra == rc) | (rb == rc)
                        | (ra >= c.regions) | (rb >= c.regions) | (rc >= c.regions))

        # STEP: legality and the address range of the whole nest.
        step_illegal = ((step_w.levels == 0) | (step_w.levels > N) | (step_w.red > step_w.levels)
                        | (step_w.route_a >= c.dist_routes) | (step_w.route_b >= c.dist_routes)
                        | (step_w.route_c >= c.red_routes) | (step_w.shift >= c.sum_width))
        out_of_range = []
        for op in _OPERANDS:
            lo = Signal(signed(40), name=f"range_lo_{op}")
            hi = Signal(signed(40), name=f"range_hi_{op}")
            lo_terms, hi_terms = [base[op]], [base[op]]
            for k in range(N):
                active = step_w.levels > k
                if op == "c":
                    active = active & (step_w.red <= k)
                e = ext[op][k]
                lo_terms.append(Mux(active & (e < 0), e, 0))
                hi_terms.append(Mux(active & (e > 0), e, 0))
            m.d.comb += [lo.eq(sum(lo_terms)), hi.eq(sum(hi_terms))]
            bad = (lo < 0) | (hi >= c.depth)
            if op == "b":
                bad = bad & ~step_w.b_one
            out_of_range.append(bad)
        step_out_of_range = Cat(*out_of_range).any()

        # The loop nest (ISSUE).
        active = [levels > k for k in range(N)]
        at_last = [~active[k] | (ctr[k] == count[k] - 1) for k in range(N)]
        below = [Const(1)]
        for k in range(N):
            below.append(below[-1] & at_last[k])
        final = below[N]
        inc = [below[k] & ~at_last[k] for k in range(N)]
        in_red = [red > k for k in range(N)]
        first = Cat(*[~in_red[k] | (ctr[k] == 0) for k in range(N)]).all()
        last = Cat(*[~in_red[k] | at_last[k] for k in range(N)]).all()
        nxt = {}
        for op in _OPERANDS:
            value = Const(0, signed(addr_width))
            for k in range(N):
                s = Mux(in_red[k], 0, stride[op][k]) if op == "c" else stride[op][k]
                value = Mux(inc[k], addr[op][k] + s, value)
            nxt[op] = Signal(signed(addr_width), name=f"next_{op}")
            m.d.comb += nxt[op].eq(value)

        m.d.comb += [
            self.issue.first.eq(first),
            self.issue.last.eq(last),
            self.issue.addr_a.eq(addr["a"][0]),
            self.issue.addr_b.eq(addr["b"][0]),
            self.issue.addr_c.eq(addr["c"][0]),
        ]

        def fail(cause):
            m.d.sync += [self.error.eq(1), self.done.eq(1), self.cause.eq(cause),
                         self.err_pc.eq(self.pc)]
            m.next = "IDLE"

        with m.If(self.clear):
            m.d.sync += [self.error.eq(0), self.done.eq(0), self.cause.eq(Cause.NONE),
                         self.err_pc.eq(0)]

        with m.FSM(name="state") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ~self.error):
                    m.d.sync += [
                        self.pc.eq(self.entry), self.done.eq(0),
                        self.cycles.eq(0), self.busy_cycles.eq(0), self.macs.eq(0),
                        self.stalls.eq(0),
                    ]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(self.pc >= c.prog_depth):
                    fail(Cause.ADDRESS)
                with m.Else():
                    m.next = "DECODE"
            with m.State("DECODE"):
                with m.Switch(opcode):
                    with m.Case(Opcode.NOP):
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
                    with m.Case(Opcode.HALT):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Case(Opcode.LOOP):
                        with m.If(loop_illegal):
                            fail(Cause.ILLEGAL)
                        with m.Else():
                            for k in range(N):
                                with m.If(loop_w.level == k):
                                    m.d.sync += count[k].eq(loop_w.count)
                                    for op in _OPERANDS:
                                        m.d.sync += [
                                            stride[op][k].eq(getattr(loop_w, f"stride_{op}")),
                                            ext[op][k].eq(loop_ext[op]),
                                        ]
                            m.d.sync += self.pc.eq(self.pc + 1)
                            m.next = "FETCH"
                    with m.Case(Opcode.BASE):
                        with m.If(base_illegal):
                            fail(Cause.ILLEGAL)
                        with m.Else():
                            for op in _OPERANDS:
                                m.d.sync += [
                                    region[op].eq(getattr(base_w, f"region_{op}")),
                                    base[op].eq(getattr(base_w, f"base_{op}")),
                                ]
                            m.d.sync += self.pc.eq(self.pc + 1)
                            m.next = "FETCH"
                    with m.Case(Opcode.STEP):
                        with m.If(step_illegal):
                            fail(Cause.ILLEGAL)
                        with m.Elif(step_out_of_range):
                            fail(Cause.ADDRESS)
                        with m.Else():
                            m.d.sync += [
                                levels.eq(step_w.levels), red.eq(step_w.red),
                                self.step.shift.eq(step_w.shift),
                                self.step.rounding.eq(step_w.rounding),
                                self.step.b_one.eq(step_w.b_one),
                                self.step.region_a.eq(region["a"]),
                                self.step.region_b.eq(region["b"]),
                                self.step.region_c.eq(region["c"]),
                            ]
                            for k in range(N):
                                m.d.sync += ctr[k].eq(0)
                                for op in _OPERANDS:
                                    m.d.sync += addr[op][k].eq(base[op])
                            m.next = "LOAD"
                    with m.Default():
                        fail(Cause.ILLEGAL)
            with m.State("LOAD"):
                m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.If(final):
                    m.d.sync += drain_left.eq(t.drain - 1)
                    m.next = "DRAIN"
                with m.Else():
                    for k in range(N):
                        with m.If(below[k]):
                            m.d.sync += ctr[k].eq(Mux(inc[k], ctr[k] + 1, 0))
                            for op in _OPERANDS:
                                m.d.sync += addr[op][k].eq(nxt[op])
            with m.State("DRAIN"):
                with m.If(drain_left == 0):
                    with m.If(self.overflow):
                        fail(Cause.SATURATION)
                    with m.Else():
                        m.d.sync += self.pc.eq(self.pc + 1)
                        m.next = "FETCH"
                with m.Else():
                    m.d.sync += drain_left.eq(drain_left - 1)

        issuing = fsm.ongoing("ISSUE")
        m.d.comb += [
            self.busy.eq(~fsm.ongoing("IDLE")),
            self.load.eq(fsm.ongoing("LOAD")),
            self.issue.valid.eq(issuing),
        ]
        with m.If(~fsm.ongoing("IDLE")):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(issuing):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
            with m.If(~self.step.b_one):
                m.d.sync += self.macs.eq(self.macs + c.lanes)
        with m.If(fsm.ongoing("LOAD") | fsm.ongoing("DRAIN")):
            m.d.sync += self.stalls.eq(self.stalls + 1)
        return m
