"""The accelerator top: controller, scratchpad, distribution networks, CE array, reduction, requantizer.

:class:`Datapath` gathers, for one configuration, the network and requantizer components, their
latencies and the meaning of route-table entries (used by the RTL, the model and the compiler);
:class:`Timing` is the cycle count of every instruction, derived from those latencies.
"""

import dataclasses
import functools
from types import SimpleNamespace

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import distribution as _dist
from . import reduction as _red
from .ce import ContractionEngine
from .ce_array import CEArray
from .config import AcceleratorConfig
from .controller import Controller
from .distribution import BenesDistribution
from .host_port import AXI4LiteSignature, HostPort, RegisterBusSignature, in_constant_range
from .isa import CSR, HOST_ADDR_WIDTH, ID_VALUE, INSTR_WIDTH, WINDOWS, route_words
from .reduction import ReductionNetwork
from .requantize import Requantizer
from .scratchpad import Scratchpad, block_ram, block_ram_read_port

__all__ = ["Datapath", "Timing", "Accelerator", "AcceleratorSystem"]


#: Route tables of at most this many entries sit in flip-flops on any FPGA: their read ports are
#: combinational, which saves a read register per port (a block RAM needs the registered ones).
SMALL_TABLE = 4


def _ceil32(bits):
    return -(-bits // 32) * 32


class Datapath:
    """The datapath components of one configuration and the meaning of route-table entries.

    A distribution entry is the network's configuration value (an int of ``dist_bits`` bits). A
    reduction entry packs, from bit 0, the reduction configuration (``red_bits``, padded to a
    multiple of 32), the ``keep`` lane mask (L bits, padded to a multiple of 32) and the ``write``
    lane mask.

    Parameters
    ----------
    config : AcceleratorConfig
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._config = config

    @property
    def config(self):
        return self._config

    # Components (fresh instances each call: an Amaranth component is elaborated once).

    def distribution(self):
        c = self._config
        return BenesDistribution(lanes=c.lanes, width=c.width, register_every=c.dist_register_every)

    def reduction(self):
        c = self._config
        return ReductionNetwork(lanes=c.lanes, width=c.acc_width)

    def requantizer(self):
        c = self._config
        return Requantizer(lanes=c.lanes, acc_width=c.sum_width, width=c.width, seed=0)

    @functools.cached_property
    def _probe(self):
        parts = self.distribution(), self.reduction(), self.requantizer()
        for part in parts:
            part._MustUse__silence = True   # inspected for its parameters, never elaborated
        return parts

    @property
    def dist_latency(self):
        return self._probe[0].latency

    @property
    def red_latency(self):
        return self._probe[1].latency

    @property
    def rq_latency(self):
        return self._probe[2].latency

    @property
    def dist_bits(self):
        return self._probe[0].config_layout.size

    @property
    def red_bits(self):
        return self._probe[1].config_layout.size

    @property
    def keep_offset(self):
        return _ceil32(self.red_bits)

    @property
    def write_offset(self):
        return self.keep_offset + _ceil32(self._config.lanes)

    @property
    def red_entry_bits(self):
        return self.write_offset + self._config.lanes

    @property
    def dist_words(self):
        """32-bit words per distribution route entry (the ``DIST_WORDS`` CSR)."""
        return route_words(self.dist_bits)

    @property
    def red_words(self):
        """32-bit words per reduction route entry (the ``RED_WORDS`` CSR)."""
        return route_words(self.red_entry_bits)

    # Route-table entries.

    def check_dist_bits(self, bits):
        if not isinstance(bits, int) or not 0 <= bits < 1 << self.dist_bits:
            raise ValueError(f"distribution entry must be an integer of {self.dist_bits} bits, "
                             f"not {bits!r}")
        return bits

    def check_red_entry(self, bits):
        if not isinstance(bits, int) or not 0 <= bits < 1 << self.red_entry_bits:
            raise ValueError(f"reduction entry must be an integer of {self.red_entry_bits} bits, "
                             f"not {bits!r}")
        return bits

    def pack_red_entry(self, config, *, keep, write):
        """Pack a reduction configuration value and lane masks (ints or sequences of lanes)."""
        L = self._config.lanes
        masks = []
        for name, mask in (("keep", keep), ("write", write)):
            if not isinstance(mask, int):
                lanes = list(mask)
                if any(not isinstance(l, (int, np.integer)) or not 0 <= l < L for l in lanes):
                    raise ValueError(f"{name} lanes must be from 0 to {L - 1}, not {lanes!r}")
                mask = sum(1 << int(l) for l in set(lanes))
            if not 0 <= mask < 1 << L:
                raise ValueError(f"{name} mask must be an integer of {L} bits, not {mask!r}")
            masks.append(mask)
        if not isinstance(config, int) or not 0 <= config < 1 << self.red_bits:
            raise ValueError(f"reduction configuration must be an integer of {self.red_bits} bits, "
                             f"not {config!r}")
        return config | masks[0] << self.keep_offset | masks[1] << self.write_offset

    def unpack_red_entry(self, bits):
        """Return ``(config, keep, write)`` of a packed reduction entry."""
        L = self._config.lanes
        self.check_red_entry(bits)
        return (bits & ((1 << self.red_bits) - 1), (bits >> self.keep_offset) & ((1 << L) - 1),
                (bits >> self.write_offset) & ((1 << L) - 1))

    def dist_lane_map(self, bits):
        """Return, for each lane, the index of the row word the distribution entry puts on it."""
        L = self._config.lanes
        modes = _dist.unpack_config(self.check_dist_bits(bits), L)
        return _dist.model(modes, np.arange(L, dtype=np.int64)[None, :])[0]

    def red_matrix(self, config):
        """Return the reduction configuration's 0/1 matrix ``M`` (sums = ``M @ accumulators``)."""
        L = self._config.lanes
        modes = np.array([[mode.value for mode in row] for row in _red.unpack_config(config, L)])
        if any(group is None for group in _red.symbolic_outputs(modes, L)):
            raise ValueError(f"reduction configuration {config:#x} adds some lane twice; "
                             f"the model does not reproduce its wrap-around")
        # Without multisets the network only passes, swaps and adds distinct lanes: it is linear
        # and exact, so unit vectors reveal it.
        unit = np.eye(L, dtype=np.int64)
        return _red.reduction_model(unit, modes, width=self._config.acc_width).T

    def red_semantics(self, bits):
        """Return ``(matrix, keep, write)`` of a packed reduction entry, masks as bool arrays."""
        config, keep, write = self.unpack_red_entry(bits)
        # Python integers: the masks are ``lanes`` bits wide, beyond int64 from 64 lanes on.
        lanes = range(self._config.lanes)
        return (self.red_matrix(config), np.array([(keep >> k) & 1 == 1 for k in lanes]),
                np.array([(write >> k) & 1 == 1 for k in lanes]))


@dataclasses.dataclass(frozen=True)
class Timing:
    """Cycle counts of the instructions, for the controller and the model alike.

    A STEP of ``n`` beats takes ``step_setup + n + drain`` cycles (one that fails its
    address-range check ``step_setup``, an illegal one ``step_illegal``); other instructions
    ``instr`` (an illegal one too); a fetch beyond program memory ``fetch_fault``. See
    docs/isa.md, "Timing".
    """
    dist_latency: int
    red_latency: int
    rq_latency: int
    ce_latency: int = ContractionEngine.latency
    instr: int = 3          # fetch, read into the instruction register, execute
    step_illegal: int = 4   # fetch, read, decode, reject
    step_setup: int = 5     # fetch, read, decode, sum the address range, check it and load routes
    fetch_fault: int = 1

    @classmethod
    def from_datapath(cls, datapath):
        return cls(dist_latency=datapath.dist_latency, red_latency=datapath.red_latency,
                   rq_latency=datapath.rq_latency, ce_latency=ContractionEngine.latency)

    @classmethod
    def from_config(cls, config):
        return cls.from_datapath(Datapath(config))

    @property
    def drain(self):
        """Cycles after the last beat of a step until its last row is written: memory read, the
        distribution network, the CE, the reduction network, the requantizer (whose output is
        written at the end of the cycle it shows)."""
        return (Scratchpad.latency + self.dist_latency + self.ce_latency + self.red_latency
                + self.rq_latency)

    @property
    def step_stalls(self):
        """Cycles of a running step without a beat issued (the STALLS counter): load and drain."""
        return 1 + self.drain

    def step_cycles(self, beats):
        return self.step_setup + beats + self.drain


class _RegisterTable:
    """A table of a few entries in registers, with the port interface of a ``Memory``: read ports
    are combinational (``data`` follows ``addr`` in the same cycle), the write port writes
    ``granularity``-bit parts at the end of the cycle. Unlike a memory of one entry, it has no
    address port of zero bits."""

    def __init__(self, m, name, *, width, depth):
        self._m, self._width, self._depth = m, width, depth
        self._entries = [Signal(width, name=f"{name}_{e}", reset_less=True) for e in range(depth)]
        self._addr_bits = max((depth - 1).bit_length(), 1)

    def read_port(self):
        port = SimpleNamespace(addr=Signal(self._addr_bits), data=Signal(self._width))
        value = Array(self._entries)[port.addr] if self._depth > 1 else self._entries[0]
        self._m.d.comb += port.data.eq(value)
        return port

    def write_port(self, *, granularity):
        parts = self._width // granularity
        port = SimpleNamespace(addr=Signal(self._addr_bits), data=Signal(self._width),
                               en=Signal(parts))
        for e, entry in enumerate(self._entries):
            for j in range(parts):
                with self._m.If(port.en[j] & (port.addr == e)):
                    self._m.d.sync += entry.word_select(j, granularity).eq(
                        port.data.word_select(j, granularity))
        return port


def _delay(m, value, cycles, name, *, reset_less=False):
    """Return ``value`` delayed by ``cycles`` clock cycles through named registers."""
    for k in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{k + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value


class Accelerator(wiring.Component):
    """The accelerator: host bus, program memory, route tables, controller and datapath.

    Datapath, beat by beat: the controller issues row addresses (cycle t); the scratchpad returns
    the A and B rows (t+S, S = ``Scratchpad.latency``) into the two distribution networks; their
    outputs enter the CE array (t+S+D); at the end of a sweep the accumulators enter the reduction
    network (t+S+D+C), its sums the requantizer (t+S+D+C+R), whose rows are written, masked, to
    region C (t+S+D+C+R+Q). See
    docs/architecture.md; cycle counts are :class:`Timing`'s, which the model uses too.

    The host reaches CSRs and memory windows through ``host`` (docs/isa.md, "Host register map");
    every access takes six cycles (the bus's request registered, the request, two waits, the
    selection of the word, ``ack``); a ``CTRL`` write acts in the cycle after its request.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    host : ``In(RegisterBusSignature(addr_width=HOST_ADDR_WIDTH, read_latency=None))``
        The host bus (driven by :class:`fetta.hw.host_port.HostPort`).
    done, error : ``Out(1)``
        The status flags, for LEDs or an interrupt.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        self._datapath = Datapath(config)
        self._timing = Timing.from_datapath(self._datapath)
        super().__init__({
            "host": In(RegisterBusSignature(addr_width=HOST_ADDR_WIDTH, read_latency=None)),
            "done": Out(1),
            "error": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def datapath(self):
        return self._datapath

    @property
    def timing(self):
        return self._timing

    def elaborate(self, platform):
        m = Module()
        c, dp, t = self._config, self._datapath, self._timing
        L, W = c.lanes, c.width

        m.submodules.controller = ctl = Controller(config=c, timing=t)
        m.submodules.scratchpad = spad = Scratchpad(regions=c.regions, lanes=L, depth=c.depth, width=W)
        m.submodules.dist_a = dist_a = dp.distribution()
        m.submodules.dist_b = dist_b = dp.distribution()
        m.submodules.ce_array = ces = CEArray(lanes=L, width=W, acc_width=c.acc_width)
        m.submodules.reduction = red = dp.reduction()
        m.submodules.requantizer = rq = dp.requantizer()

        # The host writes the program and route memories only while the machine is idle, when
        # the controller does not read them, and does not use what its own ports read of a word
        # it is writing: no read needs a word written in the same cycle (block_ram).
        m.submodules.program = prog = block_ram(shape=unsigned(INSTR_WIDTH), depth=c.prog_depth,
                                                init=[])
        prog_rp = block_ram_read_port(m, prog, "prog_read")
        prog_host_rp = block_ram_read_port(m, prog, "prog_host_read")
        prog_wp = prog.write_port(granularity=32)
        # A route table is read by the controller in CHECK (the address is held from DECODE on)
        # and by the host while idle; neither changes while a read is under way, so a small
        # table's combinational reads return what a memory's registered ones would.
        dist_small, red_small = c.dist_routes <= SMALL_TABLE, c.red_routes <= SMALL_TABLE
        dist_width = 32 * dp.dist_words
        if dist_small:
            dist_mem = _RegisterTable(m, "dist_routes", width=dist_width, depth=c.dist_routes)
        else:
            m.submodules.dist_routes = dist_mem = block_ram(shape=unsigned(dist_width),
                                                            depth=c.dist_routes, init=[])
        def read_port(table, small, name):
            return table.read_port() if small else block_ram_read_port(m, table, name)

        dist_rp_a = read_port(dist_mem, dist_small, "dist_read_a")
        dist_rp_b = read_port(dist_mem, dist_small, "dist_read_b")
        dist_host_rp = read_port(dist_mem, dist_small, "dist_host_read")
        dist_wp = dist_mem.write_port(granularity=32)
        red_width = 32 * dp.red_words
        if red_small:
            red_mem = _RegisterTable(m, "red_routes", width=red_width, depth=c.red_routes)
        else:
            m.submodules.red_routes = red_mem = block_ram(shape=unsigned(red_width),
                                                          depth=c.red_routes, init=[])
        red_rp = read_port(red_mem, red_small, "red_read")
        red_host_rp = read_port(red_mem, red_small, "red_host_read")
        red_wp = red_mem.write_port(granularity=32)

        # Controller and route tables.
        m.d.comb += [
            prog_rp.addr.eq(ctl.prog_addr),
            ctl.prog_data.eq(prog_rp.data),
            dist_rp_a.addr.eq(ctl.route_a),
            dist_rp_b.addr.eq(ctl.route_b),
            red_rp.addr.eq(ctl.route_c),
            ctl.overflow.eq(ces.overflow),
            self.done.eq(ctl.done),
            self.error.eq(ctl.error),
        ]
        cfg_a = Signal(dp.dist_bits, reset_less=True)
        cfg_b = Signal(dp.dist_bits, reset_less=True)
        cfg_red = Signal(dp.red_bits, reset_less=True)
        keep = Signal(L, reset_less=True)
        write_mask = Signal(L, reset_less=True)
        # A table in block RAM: its entry is registered right at the memory. It is addressed
        # from DECODE, so the register holds it in CHECK, when the configuration loads.
        def entry(port, name, small):
            return port.data if small else _delay(m, port.data, 1, name, reset_less=True)

        dist_a_data = entry(dist_rp_a, "dist_route_a", dist_small)
        dist_b_data = entry(dist_rp_b, "dist_route_b", dist_small)
        red_data = entry(red_rp, "red_route", red_small)
        dist_cfg = [cfg_a.eq(dist_a_data[:dp.dist_bits]), cfg_b.eq(dist_b_data[:dp.dist_bits])]
        red_cfg = [cfg_red.eq(red_data[:dp.red_bits]),
                   keep.eq(red_data[dp.keep_offset:dp.keep_offset + L]),
                   write_mask.eq(red_data[dp.write_offset:dp.write_offset + L])]
        # A small table is read through its entry as long as the step runs: the route indices
        # come from the instruction register, which holds the STEP until its last row is
        # written, and the host cannot write a table while the accelerator is busy.
        m.d.comb += (dist_cfg if dist_small else []) + (red_cfg if red_small else [])
        with m.If(ctl.load):
            m.d.sync += (dist_cfg if not dist_small else []) + (red_cfg if not red_small else [])
        step = ctl.step
        issue = ctl.issue

        # Memory read (Scratchpad.latency) -> distribution networks.
        valid_1 = _delay(m, issue.valid, Scratchpad.latency, "valid")
        m.d.comb += [
            dist_a.i.valid.eq(valid_1),
            dist_a.i.payload.data.eq(spad.read_a.data),
            dist_a.i.payload.config.eq(cfg_a),
            dist_b.i.valid.eq(valid_1),
            # A step with b_one multiplies by ones: they enter B's network (every lane it
            # outputs is a 1 then, whatever the route), far from the multipliers' timing.
            dist_b.i.payload.data.eq(Mux(step.b_one, Cat(*[Const(1, W)] * L), spad.read_b.data)),
            dist_b.i.payload.config.eq(cfg_b),
        ]
        # Distribution -> CE array.
        to_ce = Scratchpad.latency + t.dist_latency
        first = _delay(m, issue.first, to_ce, "first")
        m.d.comb += [
            ces.i.valid.eq(dist_a.o.valid),
            ces.i.payload.first.eq(first),
        ]
        for l in range(L):
            m.d.comb += [
                ces.i.payload.a[l].eq(dist_a.o.payload[l]),
                ces.i.payload.b[l].eq(dist_b.o.payload[l]),
            ]
        # CE array (at the end of a sweep) -> reduction network -> requantizer.
        to_red = to_ce + ces.latency
        last = _delay(m, issue.valid & issue.last, to_red, "last")
        m.d.comb += [
            red.i.valid.eq(last),
            red.i.payload.data.eq(ces.acc),
            red.i.payload.config.eq(cfg_red),
            rq.i.valid.eq(red.o.valid),
            rq.i.payload.acc.eq(red.o.payload),
            rq.i.payload.shift.eq(step.shift),
            rq.i.payload.rounding.eq(step.rounding),
        ]
        # Requantizer -> masked row write.
        to_write = to_red + t.red_latency + t.rq_latency
        addr_c = _delay(m, issue.addr_c, to_write, "addr_c", reset_less=True)
        result = Signal(data.ArrayLayout(unsigned(W), L))
        for l in range(L):
            m.d.comb += result[l].eq(Mux(keep[l], rq.o.payload[l], 0))

        # Host bus.
        # An access takes six cycles: the bus's request is registered (the host port may sit
        # far from the memories, and the address reaches every block RAM's port); the request
        # (decode, CSR value; a memory write's port signals are registered); a wait, in which a
        # block RAM's word is registered at the memory (and a write lands); the access's 32-bit
        # word is registered from it, which carries it across the chip; that word, or the
        # scratchpad's (out of its select register, Scratchpad.latency = 3 cycles after the
        # request), goes into the answer's register; the ack. No path runs from the host port to
        # a block RAM, and a block RAM's word crosses the chip only from a register to a
        # register. The initiator holds its request until the ack, so the registered copy is the
        # request delayed by a cycle; in the cycle after an ack it still shows the finished
        # access, and is ignored.
        bus = SimpleNamespace(
            addr=Signal.like(self.host.addr, name="host_addr", reset_less=True),
            w_data=Signal.like(self.host.w_data, name="host_w_data", reset_less=True),
            w_mask=Signal.like(self.host.w_mask, name="host_w_mask", reset_less=True),
            w_en=Signal(name="host_w_en"), r_en=Signal(name="host_r_en"),
            r_data=self.host.r_data, err=self.host.err, ack=self.host.ack)
        m.d.sync += [getattr(bus, name).eq(getattr(self.host, name))
                     for name in ("addr", "w_data", "w_mask", "w_en", "r_en")]
        acked = Signal()
        waiting = Signal()
        moving = Signal()
        selecting = Signal()
        acking = Signal()
        ack_err = Signal()
        ack_data = Signal(32)
        source = Signal(3)        # what the ack cycle returns: 0 register, 1 program, 2/3 routes, 4 scratchpad
        part = Signal(range(max(dp.red_words, dp.dist_words, 2)))
        lane = Signal(range(L))
        request = (bus.r_en | bus.w_en) & ~waiting & ~moving & ~selecting & ~acking & ~acked
        word = bus.addr
        byte_bases = {name: WINDOWS[name][0] >> 2 for name in WINDOWS}

        def window(name, words):
            # Windows are aligned (docs/isa.md): inside one, the offset is the address's low
            # bits; outside it, it drives nothing the host sees.
            lo = byte_bases[name]
            span = WINDOWS[name][1] >> 2
            assert lo % span == 0 and span & (span - 1) == 0 and words <= span
            return in_constant_range(word, lo, lo + words), word[:span.bit_length() - 1]

        in_csr, csr_off = window("CSR", WINDOWS["CSR"][1] >> 2)
        in_prog, prog_off = window("PROGRAM", 2 * c.prog_depth)
        in_dist, dist_off = window("DIST_ROUTES", dp.dist_words * c.dist_routes)
        in_red, red_off = window("RED_ROUTES", dp.red_words * c.red_routes)
        in_spad, spad_off = window("SCRATCHPAD", c.regions * c.depth * L)
        memory_access = in_prog | in_dist | in_red | in_spad
        full_mask = bus.w_mask == 0b1111

        seed = Signal(32)
        entry = Signal(16)
        start = Signal()          # registered: a CTRL write acts in the cycle after its request
        clear = Signal()
        m.d.sync += [start.eq(0), clear.eq(0)]
        m.d.comb += [ctl.start.eq(start), ctl.clear.eq(clear), ctl.entry.eq(entry),
                     ces.clear.eq(clear), rq.clear.eq(clear), rq.seed.eq(seed),
                     rq.seed_load.eq(start & ~ctl.busy & ~ctl.error)]

        csr_values = {
            "ID": ID_VALUE, "LANES": L, "WIDTH": W, "ACC_WIDTH": c.acc_width,
            "REGIONS": c.regions, "DEPTH": c.depth, "LOOP_LEVELS": c.loop_levels,
            "PROG_DEPTH": c.prog_depth, "DIST_ROUTES": c.dist_routes, "RED_ROUTES": c.red_routes,
            "DIST_WORDS": dp.dist_words, "RED_WORDS": dp.red_words, "CTRL": 0,
            "STATUS": Cat(ctl.busy, ctl.done, ctl.error, rq.overflow),
            "CAUSE": ctl.cause, "ERR_PC": ctl.err_pc, "ENTRY": entry, "PC": ctl.pc, "SEED": seed,
            # Counters of counter_width bits: *_HI holds the bits above 32 (none up to 32 bits).
            "CYCLES_LO": ctl.cycles[:32], "CYCLES_HI": ctl.cycles[32:],
            "BUSY_LO": ctl.busy_cycles[:32], "BUSY_HI": ctl.busy_cycles[32:],
            "MACS_LO": ctl.macs[:32], "MACS_HI": ctl.macs[32:],
            "STALLS_LO": ctl.stalls[:32], "STALLS_HI": ctl.stalls[32:],
        }
        assert set(csr_values) == set(CSR)
        csr_read = Signal(32)
        csr_known = Signal()
        csr_writable = Signal()
        # The registers fill the low words of the CSR window: decode those bits per register,
        # the bits above once.
        csr_bits = max(offset >> 2 for offset, _, _ in CSR.values()).bit_length()
        with m.If(in_csr & (csr_off[csr_bits:] == 0)), m.Switch(csr_off[:csr_bits]):
            for name, (offset, access, _) in CSR.items():
                with m.Case(offset >> 2):
                    m.d.comb += [csr_read.eq(csr_values[name]), csr_known.eq(1),
                                 csr_writable.eq(access != "ro")]

        def spad_fields(off):
            """Lane, row and region of a scratchpad window offset."""
            return (off[:c.lane_bits], off[c.lane_bits:c.lane_bits + c.row_bits],
                    off[c.lane_bits + c.row_bits:])

        def route_entry(off, words):
            """The route-table entry of a window offset (an entry is ``words`` words)."""
            return off >> (words.bit_length() - 1)

        spad_lane, spad_row, spad_region = spad_fields(spad_off)
        host_write = request & bus.w_en & full_mask & ~(memory_access & ctl.busy)
        dist_part = dist_off[:dp.dist_words.bit_length() - 1] if dp.dist_words > 1 else 0
        red_part = red_off[:dp.red_words.bit_length() - 1] if dp.red_words > 1 else 0

        # The host's memory writes are registered: each memory's write port is driven from
        # registers only, and the write lands a cycle after its request (the next access comes
        # after the ack). A write port that shares a block RAM port with a read port (block_ram)
        # thus puts one LUT, not the window decode, in front of that port's address.
        w = SimpleNamespace(
            addr=Signal.like(word, name="host_w_addr_q", reset_less=True),
            data=Signal(32, name="host_w_data_q", reset_less=True),
            spad_mask=Signal(L, name="host_w_spad_mask", reset_less=True),
            spad=Signal(name="host_w_spad"),
            prog=Signal(2, name="host_w_prog"),
            dist=Signal(dp.dist_words, name="host_w_dist"),
            red=Signal(dp.red_words, name="host_w_red"))
        m.d.sync += [
            w.addr.eq(word), w.data.eq(bus.w_data), w.spad_mask.eq(1 << spad_lane),
            w.spad.eq(host_write & in_spad),
            w.prog.eq(Mux(host_write & in_prog, Mux(prog_off[0], 0b10, 0b01), 0)),
            w.dist.eq(Mux(host_write & in_dist, 1 << dist_part, 0)),
            w.red.eq(Mux(host_write & in_red, 1 << red_part, 0)),
        ]
        _, w_spad_row, w_spad_region = spad_fields(w.addr[:len(spad_off)])

        # Datapath and host share the scratchpad ports; the host only while the machine is idle.
        with m.If(ctl.busy):
            m.d.comb += [
                spad.read_a.region.eq(step.region_a),
                spad.read_a.addr.eq(issue.addr_a),
                spad.read_b.region.eq(step.region_b),
                spad.read_b.addr.eq(issue.addr_b),
                spad.write.region.eq(step.region_c),
                spad.write.addr.eq(addr_c),
                spad.write.data.eq(result),
                spad.write.mask.eq(write_mask),
                spad.write.en.eq(rq.o.valid),
            ]
        with m.Else():
            # Both read ports point at the host's row, so neither steals the other's region.
            m.d.comb += [
                spad.read_a.region.eq(spad_region),
                spad.read_a.addr.eq(spad_row),
                spad.read_b.region.eq(spad_region),
                spad.read_b.addr.eq(spad_row),
                spad.write.region.eq(w_spad_region),
                spad.write.addr.eq(w_spad_row),
                spad.write.mask.eq(w.spad_mask),
                spad.write.en.eq(w.spad),
            ]
            for l in range(L):
                m.d.comb += spad.write.data[l].eq(w.data[:W])

        m.d.comb += [
            prog_host_rp.addr.eq(prog_off[1:]),
            prog_wp.addr.eq(w.addr[1:len(prog_off)]),
            prog_wp.data.eq(Cat(w.data, w.data)),
            prog_wp.en.eq(w.prog),
            dist_host_rp.addr.eq(route_entry(dist_off, dp.dist_words)),
            dist_wp.addr.eq(route_entry(w.addr[:len(dist_off)], dp.dist_words)),
            dist_wp.data.eq(Cat(*([w.data] * dp.dist_words))),
            dist_wp.en.eq(w.dist),
            red_host_rp.addr.eq(route_entry(red_off, dp.red_words)),
            red_wp.addr.eq(route_entry(w.addr[:len(red_off)], dp.red_words)),
            red_wp.data.eq(Cat(*([w.data] * dp.red_words))),
            red_wp.en.eq(w.red),
        ]

        with m.If(request):
            # A small route table's word is read now and returned from ack_data.
            ack_value = csr_read
            if dist_small:
                ack_value = Mux(in_dist, dist_host_rp.data.word_select(dist_part, 32), ack_value)
            if red_small:
                ack_value = Mux(in_red, red_host_rp.data.word_select(red_part, 32), ack_value)
            m.d.sync += [waiting.eq(1), lane.eq(spad_lane), ack_data.eq(ack_value)]
            m.d.sync += ack_err.eq(
                ~(in_csr | memory_access)
                | (in_csr & ~csr_known)
                | (bus.w_en & ~full_mask)
                | (bus.w_en & in_csr & ~csr_writable)
                | (memory_access & ctl.busy)
                | (in_spad & (spad_region >= c.regions)))
            with m.If(in_prog):
                m.d.sync += [source.eq(1), part.eq(prog_off[0])]
            with m.Elif(in_dist):
                m.d.sync += [source.eq(2), part.eq(dist_part)]
            with m.Elif(in_red):
                m.d.sync += [source.eq(3), part.eq(red_part)]
            with m.Elif(in_spad):
                m.d.sync += source.eq(4)
            with m.Else():
                m.d.sync += source.eq(0)
            with m.If(bus.w_en & in_csr & full_mask):
                with m.Switch(csr_off):
                    with m.Case(CSR["CTRL"][0] >> 2):
                        m.d.sync += [start.eq(bus.w_data[0]), clear.eq(bus.w_data[1])]
                    with m.Case(CSR["ENTRY"][0] >> 2):
                        m.d.sync += entry.eq(bus.w_data)
                    with m.Case(CSR["SEED"][0] >> 2):
                        m.d.sync += seed.eq(bus.w_data)
        # The block RAMs' host read ports are registered right at their outputs (the scratchpad
        # has its own register); the ack cycle selects the word from those registers.
        ports = {1: prog_host_rp}
        if not dist_small:
            ports[2] = dist_host_rp
        if not red_small:
            ports[3] = red_host_rp
        held = {}
        for k, port in ports.items():
            at_memory = _delay(m, port.data, 1, f"host_read_{k}", reset_less=True)
            held[k] = _delay(m, at_memory.word_select(part, 32), 1, f"host_word_{k}",
                             reset_less=True)
        with m.If(waiting):
            m.d.sync += [waiting.eq(0), moving.eq(1)]
        with m.If(moving):
            m.d.sync += [moving.eq(0), selecting.eq(1)]
        with m.If(selecting):
            m.d.sync += [selecting.eq(0), acking.eq(1)]
            with m.Switch(source):
                for k, value in held.items():
                    with m.Case(k):
                        m.d.sync += ack_data.eq(value)
                with m.Case(4):
                    word_value = spad.read_a.data.as_value().word_select(lane, W).as_signed()
                    m.d.sync += ack_data.eq(word_value)
        m.d.sync += acked.eq(acking)
        with m.If(acking):
            m.d.sync += acking.eq(0)
            m.d.comb += [bus.ack.eq(1), bus.err.eq(ack_err), bus.r_data.eq(ack_data)]
        return m


class AcceleratorSystem(wiring.Component):
    """The accelerator behind its AXI4-Lite host port: what a board or a SoC instantiates.

    :class:`~fetta.hw.host_port.HostPort` serves the AXI4-Lite bus (byte addresses, 27 bits) and
    answers accesses outside the configured windows with SLVERR itself; the others reach
    :class:`Accelerator`'s host bus (which may still reject them, e.g. a window while busy).

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    axi : ``In(AXI4LiteSignature(addr_width=HOST_ADDR_WIDTH + 2))``
    done, error : ``Out(1)``
    """

    def __init__(self, config):
        self._accelerator = Accelerator(config)
        super().__init__({
            "axi": In(AXI4LiteSignature(addr_width=HOST_ADDR_WIDTH + 2)),
            "done": Out(1),
            "error": Out(1),
        })

    @property
    def config(self):
        return self._accelerator.config

    @property
    def accelerator(self):
        return self._accelerator

    def windows(self):
        """The byte ranges ``(base, size)`` this configuration implements."""
        c, dp = self.config, self._accelerator.datapath
        sizes = {
            "CSR": WINDOWS["CSR"][1],
            "PROGRAM": 8 * c.prog_depth,
            "DIST_ROUTES": 4 * dp.dist_words * c.dist_routes,
            "RED_ROUTES": 4 * dp.red_words * c.red_routes,
            "SCRATCHPAD": 4 * c.words,
        }
        return [(WINDOWS[name][0], size) for name, size in sizes.items()]

    def elaborate(self, platform):
        m = Module()
        m.submodules.host_port = port = HostPort(addr_width=HOST_ADDR_WIDTH + 2,
                                                 regions=self.windows(), read_latency=None)
        m.submodules.accelerator = acc = self._accelerator
        wiring.connect(m, wiring.flipped(self.axi), port.axi)
        wiring.connect(m, port.bus, acc.host)
        m.d.comb += [self.done.eq(acc.done), self.error.eq(acc.error)]
        return m


def write_verilog(config, directory, *, name="fetta_accelerator"):
    """Write ``AcceleratorSystem(config)`` as Verilog plus a JSON sidecar; return both paths.

    The sidecar holds the configuration, the derived parameters, the latencies and cycle costs
    (:class:`Timing`), the route-table entry sizes and the Verilog ports with their widths.
    """
    from ..sim.rtl import component_ports, generate_verilog
    from pathlib import Path
    import json

    directory = Path(directory)
    system = AcceleratorSystem(config)
    verilog_path = generate_verilog(system, name, directory / f"{name}.v")
    dp, t = system.accelerator.datapath, system.accelerator.timing
    sidecar = {
        "module": name,
        "config": config.to_dict(),
        "derived": {"lane_bits": config.lane_bits, "row_bits": config.row_bits,
                    "sum_width": config.sum_width, "words": config.words},
        "timing": {**dataclasses.asdict(t), "drain": t.drain, "step_stalls": t.step_stalls},
        "routes": {"dist_bits": dp.dist_bits, "dist_words": dp.dist_words,
                   "red_bits": dp.red_bits, "red_entry_bits": dp.red_entry_bits,
                   "red_words": dp.red_words, "keep_offset": dp.keep_offset,
                   "write_offset": dp.write_offset},
        "windows": [{"base": base, "size": size} for base, size in system.windows()],
        "ports": {port: {"width": len(value), "direction": _directions(system)[port]}
                  for port, (value, _) in component_ports(system).items()},
        "clock": "clk", "reset": "rst",
    }
    json_path = directory / f"{name}.json"
    json_path.write_text(json.dumps(sidecar, indent=1, sort_keys=True) + "\n")
    return verilog_path, json_path


def _directions(component):
    """Verilog port name -> "input" or "output", from the flattened signature."""
    return {"__".join(str(p) for p in path): "input" if member.flow == wiring.In else "output"
            for path, member, _ in component.signature.flatten(component)}


def register(sub):
    """Add the ``verilog`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``)."""
    parser = sub.add_parser("verilog", help="write the accelerator's Verilog and a JSON sidecar")
    parser.add_argument("--config", help="TOML configuration (default: the default configuration)")
    parser.add_argument("-o", "--output", default="build/verilog", help="output folder")
    parser.add_argument("--name", default="fetta_accelerator", help="Verilog module name")
    parser.set_defaults(run=_run_verilog)


def _run_verilog(args):
    config = AcceleratorConfig.from_toml(args.config) if args.config else AcceleratorConfig()
    verilog_path, json_path = write_verilog(config, args.output, name=args.name)
    print(f"wrote {verilog_path} and {json_path}")
    return 0
