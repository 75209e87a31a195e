"""The host port: an AXI4-Lite slave in front of a simple internal register and memory bus.

The host (a processor, a UART bridge, a cocotb testbench) reaches the accelerator's control and
status registers and its memory windows through AXI4-Lite. :class:`HostPort` turns each bus
access into one access of a plain register bus (:class:`RegisterBusSignature`) that the
accelerator decodes, and answers accesses outside the implemented address ranges with SLVERR.
"""

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXI4LiteResponse", "AXI4LiteSignature", "RegisterBusSignature", "HostPort",
           "HostPortExample", "HostPortExampleModel", "in_constant_range"]


def in_constant_range(value, lo, hi):
    """Return whether unsigned ``value`` lies in ``[lo, hi)``, for constant bounds.

    Every value of the range shares the bits above the highest bit in which ``lo`` and ``hi - 1``
    differ: those are compared for equality, and only the bits below against the bounds. For an
    aligned window (a base that is a multiple of a power of two no smaller than its size) no
    magnitude comparator remains, where ``(value >= lo) & (value < hi)`` needs two as wide as
    ``value`` (two carry chains on an FPGA).
    """
    width = len(value)
    lo, hi = max(lo, 0), min(hi, 1 << width)
    if lo >= hi:
        return Const(0)
    split = (lo ^ (hi - 1)).bit_length()
    hit = value[split:] == lo >> split if split < width else Const(1)
    low, low_lo, low_hi = value[:split], lo - (lo >> split << split), hi - (lo >> split << split)
    if low_lo > 0:
        hit = hit & (low >= low_lo)
    if low_hi < 1 << split:
        hit = hit & (low < low_hi)
    return hit


class AXI4LiteResponse(enum.Enum, shape=2):
    """Response codes of the AXI B and R channels."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite bus, seen from its manager (the host).

    The five channels carry the names of the AXI specification; without ``awprot``/``arprot``
    (every access is treated alike). A component that serves the bus uses the flipped signature,
    ``In(AXI4LiteSignature(...))``, and a port named ``axi`` becomes Verilog ports
    ``axi__awaddr``, ``axi__awvalid``, and so on.

    Parameters
    ----------
    addr_width : int
        Width of the byte addresses ``awaddr`` and ``araddr``, 3 to 32.
    data_width : int
        Width of ``wdata`` and ``rdata``: 32 or 64 (``wstrb`` has one bit per byte).

    Members
    -------
    awaddr, awvalid : ``Out``; awready : ``In``
        Write address channel.
    wdata, wstrb, wvalid : ``Out``; wready : ``In``
        Write data channel.
    bresp, bvalid : ``In``; bready : ``Out``
        Write response channel (``bresp`` is an :class:`AXI4LiteResponse`).
    araddr, arvalid : ``Out``; arready : ``In``
        Read address channel.
    rdata, rresp, rvalid : ``In``; rready : ``Out``
        Read data channel.
    """

    def __init__(self, *, addr_width, data_width=32):
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 32:
            raise ValueError(f"Address width must be an integer from 3 to 32, not {addr_width!r}")
        if data_width not in (32, 64):
            raise ValueError(f"Data width must be 32 or 64, not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(AXI4LiteResponse), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(AXI4LiteResponse), "rvalid": In(1),
            "rready": Out(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __hash__(self):
        return hash((type(self), self._addr_width, self._data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self._addr_width}, data_width={self._data_width})"


class RegisterBusSignature(wiring.Signature):
    """A register and memory bus of 32-bit words, seen from its initiator (the host port).

    One access at a time. ``addr`` is a *word* address (byte address divided by 4). A write puts
    ``w_en`` high with ``w_data`` and the byte-lane mask ``w_mask``; a read puts ``r_en`` high.
    ``w_en`` and ``r_en`` are never high together. Two timing disciplines:

    - fixed latency (``read_latency`` = N >= 0): ``r_en``/``w_en`` are high for exactly one cycle.
      A write takes effect at the end of that cycle; ``err`` is sampled in it. A read samples
      ``r_data`` and ``err`` N cycles after it (N = 0: in the same cycle, combinationally; N = 1:
      the timing of a synchronous memory read port).
    - handshaked (``read_latency=None``): the initiator holds ``addr``, ``r_en``/``w_en`` and the
      write data until the target raises ``ack`` (which may happen in the same cycle); ``r_data``
      and ``err`` are sampled in the ``ack`` cycle.

    ``err`` marks the access as failed (for example, a write to a read-only register); the host
    port answers it with SLVERR.

    Parameters
    ----------
    addr_width : int
        Width of the word address, 1 to 30.
    read_latency : int or None
        Fixed read latency in cycles (0 to 8), or ``None`` for the handshaked discipline.

    Members
    -------
    addr : ``Out(addr_width)``
        Word address.
    w_en : ``Out(1)``; w_data : ``Out(32)``; w_mask : ``Out(4)``
        Write request, data and byte-lane mask (bit i enables ``w_data[8*i:8*i+8]``).
    r_en : ``Out(1)``; r_data : ``In(32)``
        Read request and read data.
    err : ``In(1)``
        The target rejects the access.
    ack : ``In(1)``
        Access complete; present only when ``read_latency`` is ``None``.
    """

    def __init__(self, *, addr_width, read_latency):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 30:
            raise ValueError(f"Word address width must be an integer from 1 to 30, "
                             f"not {addr_width!r}")
        if read_latency is not None and (not isinstance(read_latency, int)
                                         or not 0 <= read_latency <= 8):
            raise ValueError(f"Read latency must be None or an integer from 0 to 8, "
                             f"not {read_latency!r}")
        self._addr_width = addr_width
        self._read_latency = read_latency
        members = {
            "addr": Out(addr_width),
            "w_en": Out(1), "w_data": Out(32), "w_mask": Out(4),
            "r_en": Out(1), "r_data": In(32),
            "err": In(1),
        }
        if read_latency is None:
            members["ack"] = In(1)
        super().__init__(members)

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def read_latency(self):
        return self._read_latency

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.read_latency == self.read_latency)

    def __hash__(self):
        return hash((type(self), self._addr_width, self._read_latency))

    def __repr__(self):
        return (f"RegisterBusSignature(addr_width={self._addr_width}, "
                f"read_latency={self._read_latency})")


def _check_regions(regions, addr_width):
    """Validate ``regions`` (byte ``(base, size)`` pairs) and return them sorted as a tuple."""
    if regions is None:
        return ((0, 1 << addr_width),)
    try:
        regions = [tuple(region) for region in regions]
    except TypeError:
        raise TypeError(f"Regions must be a sequence of (base, size) pairs, not {regions!r}") \
            from None
    if not regions:
        raise ValueError(f"Regions must not be empty, not {regions!r}")
    for region in regions:
        if (len(region) != 2 or not all(isinstance(x, int) for x in region)
                or region[0] < 0 or region[1] <= 0 or region[0] % 4 or region[1] % 4
                or region[0] + region[1] > 1 << addr_width):
            raise ValueError(f"Each region must be a (base, size) pair of word-aligned byte "
                             f"counts with size > 0 inside the {1 << addr_width}-byte address "
                             f"space, not {region!r}")
    regions.sort()
    for (base0, size0), (base1, size1) in zip(regions, regions[1:]):
        if base0 + size0 > base1:
            raise ValueError(f"Regions must not overlap, not {(base0, size0)!r} and "
                             f"{(base1, size1)!r}")
    return tuple(regions)


class HostPort(wiring.Component):
    """AXI4-Lite slave (32-bit data) that forwards every access to a :class:`RegisterBusSignature`.

    Each AXI channel has its own one-entry buffer, so every channel may be stalled by either side
    (``awready``, ``wready``, ``arready`` fall while their buffer is full; ``bvalid``/``rvalid``
    hold with stable ``bresp``/``rresp``/``rdata`` until ``bready``/``rready``). The write address
    and write data may arrive in either order or together. One write and one read are in flight at
    most; the register bus serves them one at a time, alternating when both wait. A write is issued
    on the register bus only once the previous write response has been accepted, so B responses
    leave in order; the same holds for reads and R.

    Addresses are byte addresses; their two low bits are ignored (an access covers the aligned
    word, ``wstrb`` selects its bytes). An access outside every region of ``regions`` never reaches
    the register bus: it completes with SLVERR. An access the target rejects
    (``bus.err``) also completes with SLVERR. A read that fails returns 0. Every SLVERR sets the sticky ``error`` flag and
    increments ``error_count`` (saturating) until ``clear``; a CSR block can expose both.

    Latency (idle port, fixed-latency bus): ``rvalid`` rises :attr:`read_response_latency` cycles
    after the cycle in which the AR handshake happens, and ``bvalid`` rises
    :attr:`write_response_latency` cycles after the cycle in which the later of the AW and W
    handshakes happens; a handshaked bus adds its wait states, an out-of-range access takes the
    write latency on both channels. Throughput without stalls: one write every 3 cycles, one read
    every ``3 + read_latency`` cycles, a write and a read together every ``4 + read_latency``
    cycles (the bus serves one access at a time; a handshaked bus counts as latency 0 plus its
    wait states).

    Parameters
    ----------
    addr_width : int
        Width of the AXI byte address, 3 to 32.
    regions : sequence of (int, int), optional
        The implemented byte ranges as ``(base, size)`` pairs, word-aligned and disjoint. By
        default the whole address space.
    read_latency : int or None
        Read latency of the register bus (see :class:`RegisterBusSignature`); ``None`` for a
        handshaked bus.
    count_width : int
        Width of ``error_count``, 1 to 32.

    Members
    -------
    axi : ``In(AXI4LiteSignature(addr_width=addr_width))``
        The host's bus.
    bus : ``Out(RegisterBusSignature(addr_width=addr_width - 2, read_latency=read_latency))``
        Toward the registers and memory windows.
    error : ``Out(1)``
        Sticky: an access completed with SLVERR since the last ``clear``.
    error_count : ``Out(count_width)``
        Number of SLVERR responses since the last ``clear``, saturating at its maximum.
    clear : ``In(1)``
        Clears ``error`` and ``error_count`` (an error in the same cycle still counts).
    """

    def __init__(self, *, addr_width, regions=None, read_latency=1, count_width=16):
        if not isinstance(count_width, int) or not 1 <= count_width <= 32:
            raise ValueError(f"Count width must be an integer from 1 to 32, not {count_width!r}")
        axi = AXI4LiteSignature(addr_width=addr_width)
        self._regions = _check_regions(regions, addr_width)
        bus = RegisterBusSignature(addr_width=addr_width - 2, read_latency=read_latency)
        self._addr_width = addr_width
        self._read_latency = read_latency
        self._count_width = count_width
        super().__init__({
            "axi": In(axi),
            "bus": Out(bus),
            "error": Out(1),
            "error_count": Out(count_width),
            "clear": In(1),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def regions(self):
        return self._regions

    @property
    def read_latency(self):
        return self._read_latency

    @property
    def count_width(self):
        return self._count_width

    @property
    def write_response_latency(self):
        """Cycles from the later AW/W handshake to ``bvalid``: capture, arbitration, bus access."""
        return 3

    @property
    def read_response_latency(self):
        """Cycles from the AR handshake to ``rvalid`` on a fixed-latency bus."""
        return 3 + (self._read_latency or 0)

    def in_range(self, byte_address):
        """Return whether ``byte_address`` lies in one of :attr:`regions` (a Python predicate)."""
        return any(base <= byte_address < base + size for base, size in self._regions)

    def elaborate(self, platform):
        m = Module()
        axi, bus = self.axi, self.bus
        word_width = self._addr_width - 2
        resp = AXI4LiteResponse

        aw_full = Signal()
        aw_addr = Signal(word_width)
        w_full = Signal()
        w_data = Signal(32)
        w_strb = Signal(4)
        ar_full = Signal()
        ar_addr = Signal(word_width)
        b_valid = Signal()
        b_resp = Signal(resp)
        r_valid = Signal()
        r_data = Signal(32)
        r_resp = Signal(resp)

        m.d.comb += [
            axi.awready.eq(~aw_full),
            axi.wready.eq(~w_full),
            axi.arready.eq(~ar_full),
            axi.bvalid.eq(b_valid),
            axi.bresp.eq(b_resp),
            axi.rvalid.eq(r_valid),
            axi.rdata.eq(r_data),
            axi.rresp.eq(r_resp),
        ]
        with m.If(axi.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(axi.awaddr[2:])]
        with m.If(axi.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(axi.wdata), w_strb.eq(axi.wstrb)]
        with m.If(axi.arvalid & ~ar_full):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(axi.araddr[2:])]
        with m.If(axi.bready & b_valid):
            m.d.sync += b_valid.eq(0)
        with m.If(axi.rready & r_valid):
            m.d.sync += r_valid.eq(0)

        def in_range(word):
            hit = Const(0)
            for base, size in self._regions:
                hit = hit | in_constant_range(word, base // 4, (base + size) // 4)
            return hit

        # Every response with SLVERR passes through here.
        error_now = Signal()
        with m.If(self.clear):
            m.d.sync += [self.error.eq(0), self.error_count.eq(0)]
        with m.If(error_now):
            m.d.sync += self.error.eq(1)
            with m.If(self.clear):
                m.d.sync += self.error_count.eq(1)
            with m.Elif(self.error_count != (1 << self._count_width) - 1):
                m.d.sync += self.error_count.eq(self.error_count + 1)

        def finish_write(failed):
            m.d.sync += [b_valid.eq(1), b_resp.eq(failed.replicate(2) & resp.SLVERR.value),
                         aw_full.eq(0), w_full.eq(0)]
            m.d.comb += error_now.eq(failed)

        def finish_read(failed, value):
            m.d.sync += [r_valid.eq(1), r_resp.eq(failed.replicate(2) & resp.SLVERR.value),
                         r_data.eq(Mux(failed, 0, value)), ar_full.eq(0)]
            m.d.comb += error_now.eq(failed)

        want_write = aw_full & w_full & ~b_valid
        want_read = ar_full & ~r_valid
        prefer_read = Signal()
        # Remaining wait cycles of a fixed-latency read, beyond the first.
        wait = Signal(range(self._read_latency)) if (self._read_latency or 0) > 1 else Const(0)
        handshaked = self._read_latency is None

        with m.FSM(name="access"):
            with m.State("IDLE"):
                with m.If(want_read & (prefer_read | ~want_write)):
                    m.d.sync += prefer_read.eq(0)
                    with m.If(in_range(ar_addr)):
                        m.next = "READ"
                    with m.Else():
                        finish_read(Const(1), 0)
                with m.Elif(want_write):
                    m.d.sync += prefer_read.eq(1)
                    with m.If(in_range(aw_addr)):
                        m.next = "WRITE"
                    with m.Else():
                        finish_write(Const(1))

            with m.State("WRITE"):
                m.d.comb += [bus.addr.eq(aw_addr), bus.w_en.eq(1), bus.w_data.eq(w_data),
                             bus.w_mask.eq(w_strb)]
                with m.If(bus.ack if handshaked else 1):
                    finish_write(bus.err)
                    m.next = "IDLE"

            with m.State("READ"):
                m.d.comb += [bus.addr.eq(ar_addr), bus.r_en.eq(1)]
                if handshaked:
                    with m.If(bus.ack):
                        finish_read(bus.err, bus.r_data)
                        m.next = "IDLE"
                elif self._read_latency == 0:
                    finish_read(bus.err, bus.r_data)
                    m.next = "IDLE"
                else:
                    if self._read_latency > 1:
                        m.d.sync += wait.eq(self._read_latency - 1)
                    m.next = "READ_WAIT"

            if not handshaked and self._read_latency:
                with m.State("READ_WAIT"):
                    with m.If(wait == 0):
                        finish_read(bus.err, bus.r_data)
                        m.next = "IDLE"
                    if self._read_latency > 1:
                        with m.Else():
                            m.d.sync += wait.eq(wait - 1)
        return m


class HostPortExample(wiring.Component):
    """A :class:`HostPort` in front of three registers and a byte-writable memory.

    The target of the host port's own tests, and a small template for a CSR block. Byte map
    (12-bit addresses; everything else answers SLVERR):

    ====== ======== ====================================================================
    0x000  SCRATCH  read/write, byte-writable
    0x004  ID       read-only, :attr:`ID`; a write is rejected with SLVERR
    0x008  ERROR    read: bit 0 the host port's ``error`` flag, bits 16-31 ``error_count``;
                    a write (any data) clears both
    0x800  MEM      ``depth`` words of byte-writable memory
    ====== ======== ====================================================================

    Parameters
    ----------
    depth : int
        Memory words, a power of two from 2 to 256.
    read_latency : int or None
        Register bus discipline: a fixed latency from 0 to 3, or ``None`` for a handshaked bus
        whose target inserts pseudo-random wait states (0 to 3 cycles) on every access.

    Members
    -------
    axi : ``In(AXI4LiteSignature(addr_width=12))``
        The host's bus.
    """

    ID = 0xFE77A001
    ADDR_WIDTH = 12
    SCRATCH, ID_REG, ERROR, MEM = 0x000, 0x004, 0x008, 0x800

    def __init__(self, *, depth=64, read_latency=1):
        if not isinstance(depth, int) or not 2 <= depth <= 256 or depth & (depth - 1):
            raise ValueError(f"Depth must be a power of two from 2 to 256, not {depth!r}")
        if read_latency is not None and read_latency not in range(4):
            raise ValueError(f"Read latency must be None or an integer from 0 to 3, "
                             f"not {read_latency!r}")
        self._depth = depth
        self._read_latency = read_latency
        super().__init__({"axi": In(AXI4LiteSignature(addr_width=self.ADDR_WIDTH))})

    @property
    def depth(self):
        return self._depth

    @property
    def read_latency(self):
        return self._read_latency

    @property
    def regions(self):
        return ((self.SCRATCH, 12), (self.MEM, 4 * self._depth))

    def elaborate(self, platform):
        m = Module()
        m.submodules.port = port = HostPort(addr_width=self.ADDR_WIDTH, regions=self.regions,
                                            read_latency=self._read_latency)
        wiring.connect(m, wiring.flipped(self.axi), port.axi)
        bus = port.bus

        m.submodules.mem = mem = memory.Memory(shape=32, depth=self._depth,
                                               init=[])
        # A handshaked target reads synchronously and acknowledges after its wait states.
        comb_read = self._read_latency == 0
        rd = mem.read_port(domain="comb" if comb_read else "sync")
        wr = mem.write_port(granularity=8)
        index = bus.addr[:(self._depth - 1).bit_length()]
        is_mem = bus.addr[(self.MEM // 4).bit_length() - 1]
        reg = bus.addr[:2]

        scratch = Signal(32)
        m.d.comb += [rd.addr.eq(index), wr.addr.eq(index), wr.data.eq(bus.w_data)]

        ack = Signal()
        if self._read_latency is None:
            lfsr = Signal(8, init=0xA5)
            waited = Signal(2)
            m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[7] ^ lfsr[5] ^ lfsr[4] ^ lfsr[3]))
            request = bus.r_en | bus.w_en
            # Never acknowledge in the first cycle of a read: the memory needs it to answer.
            m.d.comb += ack.eq(request & (waited >= lfsr[:2]) & ((waited != 0) | bus.w_en))
            with m.If(request & ~ack):
                m.d.sync += waited.eq(waited + 1)
            with m.Else():
                m.d.sync += waited.eq(0)
            m.d.comb += bus.ack.eq(ack)
            write = bus.w_en & ack
        else:
            write = bus.w_en

        with m.If(write & is_mem):
            m.d.comb += wr.en.eq(bus.w_mask)
        with m.If(write & ~is_mem):
            with m.Switch(reg):
                with m.Case(0):
                    for i in range(4):
                        with m.If(bus.w_mask[i]):
                            m.d.sync += scratch[8 * i:8 * i + 8].eq(bus.w_data[8 * i:8 * i + 8])
                with m.Case(1):
                    m.d.comb += bus.err.eq(1)
                with m.Case(2):
                    m.d.comb += port.clear.eq(1)

        reg_value = Signal(32)
        with m.Switch(reg):
            with m.Case(0):
                m.d.comb += reg_value.eq(scratch)
            with m.Case(1):
                m.d.comb += reg_value.eq(self.ID)
            with m.Case(2):
                m.d.comb += reg_value.eq(port.error | (port.error_count << 16))

        # Align the register path to the memory's read timing, then delay to the bus latency.
        value, sel = Signal(32), Signal()
        if comb_read:
            m.d.comb += [value.eq(reg_value), sel.eq(is_mem)]
        else:
            m.d.sync += [value.eq(reg_value), sel.eq(is_mem)]
        now = Signal(32, name="read_data_0")
        with m.If(sel):
            m.d.comb += now.eq(rd.data)
        with m.Else():
            m.d.comb += now.eq(value)
        for k in range(max((self._read_latency or 1) - 1, 0)):
            delayed = Signal(32, name=f"read_data_{k + 1}")
            m.d.sync += delayed.eq(now)
            now = delayed
        m.d.comb += bus.r_data.eq(now)
        return m


class HostPortExampleModel:
    """Reference model of :class:`HostPortExample` at the level of 32-bit bus accesses.

    :meth:`write` and :meth:`read` return the AXI response (and the read data), exactly as the
    hardware answers the same sequence of accesses.
    """

    def __init__(self, *, depth=64, count_width=16):
        self.depth = depth
        self._count_max = (1 << count_width) - 1
        self.scratch = 0
        self.mem = [0] * depth
        self.error = False
        self.error_count = 0

    def _fail(self):
        self.error = True
        self.error_count = min(self.error_count + 1, self._count_max)
        return AXI4LiteResponse.SLVERR

    def _mem_index(self, address):
        offset = address - HostPortExample.MEM
        return offset // 4 if 0 <= offset < 4 * self.depth else None

    def write(self, address, value, strobe=0xF):
        """Apply one write; return its :class:`AXI4LiteResponse`."""
        word = address & ~3
        mask = sum(0xFF << (8 * i) for i in range(4) if strobe >> i & 1)
        index = self._mem_index(word)
        if index is not None:
            self.mem[index] = (self.mem[index] & ~mask) | (value & mask)
        elif word == HostPortExample.SCRATCH:
            self.scratch = (self.scratch & ~mask) | (value & mask)
        elif word == HostPortExample.ERROR:
            self.error, self.error_count = False, 0
        else:
            return self._fail()
        return AXI4LiteResponse.OKAY

    def read(self, address):
        """Apply one read; return ``(data, response)``."""
        word = address & ~3
        index = self._mem_index(word)
        if index is not None:
            return self.mem[index], AXI4LiteResponse.OKAY
        if word == HostPortExample.SCRATCH:
            return self.scratch, AXI4LiteResponse.OKAY
        if word == HostPortExample.ID_REG:
            return HostPortExample.ID, AXI4LiteResponse.OKAY
        if word == HostPortExample.ERROR:
            return int(self.error) | self.error_count << 16, AXI4LiteResponse.OKAY
        return 0, self._fail()
