"""A UART-to-AXI4-Lite bridge: a host on a serial line masters the accelerator's host port.

The bridge speaks a small framed protocol (described in ``docs/fpga.md``) over the byte streams of
a :class:`~fetta.hw.uart.UARTRx` / :class:`~fetta.hw.uart.UARTTx` pair and turns each request
into AXI4-Lite accesses, so a board reaches the accelerator through the same host port (and the
same register map) as a processor or a cocotb testbench.

Request (host to bridge), multi-byte fields little-endian::

    READ   0x52 | address (4) | count - 1 (2)
    WRITE  0x57 | address (4) | count - 1 (2) | count data words (4 each)
    IDENT  0x49

Response (bridge to host): READ sends ``count`` data words, IDENT one word (:meth:`UARTBridge.ident`),
then every request ends with one status byte (:class:`BridgeStatus`; 0 is success). A burst
accesses ``count`` consecutive words from ``address`` (its two low bits are ignored). A request
that cannot be received whole (unknown command byte, framing error, overrun, a pause longer than
``timeout`` inside the request) is not executed: the bridge discards bytes until the line has
been quiet for ``timeout`` cycles and answers with a single status byte with ``ABORT`` set.
"""

import enum as py_enum

from amaranth import C, Cat, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .host_port import AXI4LiteResponse, AXI4LiteSignature
from .uart import RxByte

__all__ = ["BridgeCommand", "BridgeStatus", "UARTBridge", "UARTBridgeModel", "PROTOCOL_VERSION",
           "IDENT_MAGIC", "MAX_BURST"]

#: Version of the framed protocol, reported by IDENT.
PROTOCOL_VERSION = 1
#: High half of the IDENT word.
IDENT_MAGIC = 0xFE77
#: Words in one READ or WRITE request (the count field holds ``count - 1`` in 16 bits).
MAX_BURST = 1 << 16


class BridgeCommand(enum.Enum, shape=8):
    """Command bytes (printable ASCII, so a request can be typed in a terminal)."""
    IDENT = 0x49  # "I"
    READ = 0x52   # "R"
    WRITE = 0x57  # "W"


class BridgeStatus(py_enum.IntFlag):
    """Bits of the status byte that ends every response."""
    OK = 0
    #: An access of the request was answered with SLVERR (e.g. outside the host port's regions).
    SLVERR = 0x01
    #: An access was answered with DECERR.
    DECERR = 0x02
    #: An address of the burst lies beyond the bus's address width; that access was not made
    #: (a read returns 0).
    RANGE = 0x04
    #: The request was not executed; the next bits say why.
    ABORT = 0x80
    BAD_COMMAND = 0x08
    FRAMING = 0x10
    OVERRUN = 0x20
    TIMEOUT = 0x40


def _check_addr_width(addr_width):
    if not isinstance(addr_width, int) or isinstance(addr_width, bool) or not 3 <= addr_width <= 32:
        raise ValueError(f"Address width must be an integer from 3 to 32, not {addr_width!r}")


def _ident(addr_width):
    return (IDENT_MAGIC << 16) | (addr_width << 8) | PROTOCOL_VERSION


class UARTBridge(wiring.Component):
    """Serve the framed protocol on a byte stream pair and master an AXI4-Lite bus.

    Accesses are made one at a time, in order. A write drives AW and W together (``wstrb`` all
    ones) and waits for B; a read drives AR and waits for R. Every access of a burst is attempted;
    SLVERR and DECERR responses accumulate in the status byte, never stop the burst, and never go
    unreported.

    Throughput: the serial line is the bottleneck. A word's bus access runs while the transmitter
    still sends the previous word's last byte (READ) or before the next word's first byte can
    arrive (WRITE), so a burst moves 4 bytes per word with no idle line time as long as an access
    takes fewer cycles than a byte (10 bit times); a slower target delays the stream but never
    loses bytes on READ. Latency: the bus access of a READ word starts the cycle after the last
    request byte (or the previous word's last byte) is accepted; the status byte is offered on
    ``o`` the cycle after the last access completes.

    Parameters
    ----------
    addr_width : int
        Width of the AXI byte address, 3 to 32. Requests carry 32-bit addresses; an address at
        or beyond ``2 ** addr_width`` is not put on the bus and is reported as ``RANGE``.
    timeout : int
        Cycles of silence inside a request after which it is aborted (``TIMEOUT``), and after
        which the bridge resynchronizes following any abort; 16 to ``2 ** 32``. Choose it longer
        than the largest gap a host leaves between the bytes of one request (USB serial adapters
        batch bytes every few milliseconds).

    Members
    -------
    i : ``In(stream.Signature(RxByte))``
        Request bytes from the UART receiver, with its error flags.
    o : ``Out(stream.Signature(8))``
        Response bytes toward the UART transmitter.
    axi : ``Out(AXI4LiteSignature(addr_width=addr_width))``
        The bus toward the host port.
    """

    def __init__(self, *, addr_width, timeout):
        _check_addr_width(addr_width)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 16 <= timeout <= 1 << 32:
            raise ValueError(f"Timeout must be an integer number of cycles from 16 to 2**32, "
                             f"not {timeout!r}")
        self._addr_width = addr_width
        self._timeout = timeout
        super().__init__({
            "i": In(stream.Signature(RxByte)),
            "o": Out(stream.Signature(8)),
            "axi": Out(AXI4LiteSignature(addr_width=addr_width)),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def timeout(self):
        return self._timeout

    @property
    def ident(self):
        """The word IDENT returns: magic 0xFE77, address width, protocol version (low byte)."""
        return _ident(self._addr_width)

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        byte = self.i.payload
        took = self.i.valid & self.i.ready

        # 33 bits, so a burst that runs past 2**32 does not wrap silently into range.
        addr = Signal(33)
        count = Signal(16)
        word = Signal(32)
        nbyte = Signal(2)
        status = Signal(8)
        reading = Signal()
        ident = Signal()
        quiet = Signal(range(self._timeout + 1))
        aw_done = Signal()
        w_done = Signal()

        out_of_range = addr[self._addr_width:] != 0
        resp_flags = lambda resp: ((resp == AXI4LiteResponse.SLVERR).as_unsigned()
                                   | ((resp == AXI4LiteResponse.DECERR).as_unsigned() << 1))
        # The two low address bits are ignored: every access covers an aligned word.
        aligned = Cat(C(0, 2), addr[2:])
        m.d.comb += [
            axi.araddr.eq(aligned), axi.awaddr.eq(aligned), axi.wdata.eq(word), axi.wstrb.eq(0xF),
        ]

        def abort_on_line_error():
            """Abort a request whose byte arrived damaged; return the condition of a good byte."""
            bad = byte.frame_error | byte.overrun
            with m.If(took & bad):
                m.d.sync += [status.eq(BridgeStatus.ABORT | (byte.frame_error.replicate(8)
                                       & BridgeStatus.FRAMING) | (byte.overrun.replicate(8)
                                       & BridgeStatus.OVERRUN)), quiet.eq(0)]
                m.next = "DRAIN"
            return took & ~bad

        def receive_or_timeout():
            """Count silent cycles inside a request; abort it when they reach the timeout."""
            with m.If(took):
                m.d.sync += quiet.eq(0)
            with m.Elif(quiet == self._timeout - 1):
                m.d.sync += status.eq(BridgeStatus.ABORT | BridgeStatus.TIMEOUT)
                m.next = "STATUS"
            with m.Else():
                m.d.sync += quiet.eq(quiet + 1)

        with m.FSM(name="bridge"):
            with m.State("CMD"):
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += [status.eq(0), quiet.eq(0), nbyte.eq(0), ident.eq(0),
                             aw_done.eq(0), w_done.eq(0)]
                with m.If(abort_on_line_error()):
                    with m.Switch(byte.data):
                        with m.Case(BridgeCommand.READ, BridgeCommand.WRITE):
                            m.d.sync += reading.eq(byte.data == BridgeCommand.READ)
                            m.next = "ADDR"
                        with m.Case(BridgeCommand.IDENT):
                            m.d.sync += [ident.eq(1), word.eq(self.ident), count.eq(0)]
                            m.next = "SEND"
                        with m.Default():
                            m.d.sync += status.eq(BridgeStatus.ABORT | BridgeStatus.BAD_COMMAND)
                            m.next = "DRAIN"

            with m.State("ADDR"):
                m.d.comb += self.i.ready.eq(1)
                receive_or_timeout()
                with m.If(abort_on_line_error()):
                    m.d.sync += [addr.eq((byte.data << 24) | addr[8:32]), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        m.next = "COUNT"

            with m.State("COUNT"):
                m.d.comb += self.i.ready.eq(1)
                receive_or_timeout()
                with m.If(abort_on_line_error()):
                    m.d.sync += [count.eq((byte.data << 8) | count[8:]), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 1):
                        m.d.sync += nbyte.eq(0)
                        with m.If(reading):
                            m.next = "READ_ADDR"
                        with m.Else():
                            m.next = "WRITE_DATA"

            with m.State("READ_ADDR"):
                with m.If(out_of_range):
                    m.d.sync += [word.eq(0), status.eq(status | BridgeStatus.RANGE)]
                    m.next = "SEND"
                with m.Else():
                    m.d.comb += axi.arvalid.eq(1)
                    with m.If(axi.arready):
                        m.next = "READ_DATA"

            with m.State("READ_DATA"):
                m.d.comb += axi.rready.eq(1)
                with m.If(axi.rvalid):
                    m.d.sync += [word.eq(axi.rdata), status.eq(status | resp_flags(axi.rresp))]
                    m.next = "SEND"

            with m.State("SEND"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(word[:8])]
                with m.If(self.o.ready):
                    m.d.sync += [word.eq(word >> 8), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        with m.If(count == 0):
                            m.next = "STATUS"
                        with m.Else():
                            m.d.sync += [count.eq(count - 1), addr.eq(addr + 4)]
                            m.next = "READ_ADDR"

            with m.State("WRITE_DATA"):
                m.d.comb += self.i.ready.eq(1)
                receive_or_timeout()
                with m.If(abort_on_line_error()):
                    m.d.sync += [word.eq((byte.data << 24) | word[8:]), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                        m.next = "WRITE_ADDR"

            with m.State("WRITE_ADDR"):
                with m.If(out_of_range):
                    m.d.sync += status.eq(status | BridgeStatus.RANGE)
                    m.next = "WRITE_NEXT"
                with m.Else():
                    m.d.comb += [axi.awvalid.eq(~aw_done), axi.wvalid.eq(~w_done)]
                    aw = aw_done | axi.awready
                    w = w_done | axi.wready
                    m.d.sync += [aw_done.eq(aw), w_done.eq(w)]
                    with m.If(aw & w):
                        m.next = "WRITE_RESP"

            with m.State("WRITE_RESP"):
                m.d.comb += axi.bready.eq(1)
                with m.If(axi.bvalid):
                    m.d.sync += status.eq(status | resp_flags(axi.bresp))
                    m.next = "WRITE_NEXT"

            with m.State("WRITE_NEXT"):
                m.d.sync += quiet.eq(0)
                with m.If(count == 0):
                    m.next = "STATUS"
                with m.Else():
                    m.d.sync += [count.eq(count - 1), addr.eq(addr + 4)]
                    m.next = "WRITE_DATA"

            with m.State("DRAIN"):
                # Discard the rest of a damaged request until the line has been quiet.
                m.d.comb += self.i.ready.eq(1)
                with m.If(took):
                    m.d.sync += quiet.eq(0)
                with m.Elif(quiet == self._timeout - 1):
                    m.next = "STATUS"
                with m.Else():
                    m.d.sync += quiet.eq(quiet + 1)

            with m.State("STATUS"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(status)]
                with m.If(self.o.ready):
                    m.next = "CMD"
        return m


class UARTBridgeModel:
    """Reference model of :class:`UARTBridge` at the level of bytes.

    Parameters
    ----------
    target : object
        The bus target: ``target.read(address)`` returns ``(data, AXI4LiteResponse)`` and
        ``target.write(address, value, strobe)`` returns an :class:`AXI4LiteResponse`, as
        :class:`~fetta.hw.host_port.HostPortExampleModel` does.
    addr_width : int
        As for :class:`UARTBridge`.
    """

    def __init__(self, target, *, addr_width):
        _check_addr_width(addr_width)
        self.target = target
        self.addr_width = addr_width

    @staticmethod
    def _flags(resp):
        return {AXI4LiteResponse.SLVERR: BridgeStatus.SLVERR,
                AXI4LiteResponse.DECERR: BridgeStatus.DECERR}.get(AXI4LiteResponse(resp), 0)

    def transact(self, request):
        """Return the bridge's answer to the bytes ``request``, sent in one go and followed by a
        quiet line (so an unfinished request ends in a timeout)."""
        request = bytes(request)
        out = bytearray()
        pos = 0
        while pos < len(request):
            cmd = request[pos]
            if cmd == BridgeCommand.IDENT.value:
                out += _ident(self.addr_width).to_bytes(4, "little") + bytes([0])
                pos += 1
                continue
            if cmd not in (BridgeCommand.READ.value, BridgeCommand.WRITE.value):
                # Everything up to the quiet line is discarded.
                out.append(BridgeStatus.ABORT | BridgeStatus.BAD_COMMAND)
                break
            header = request[pos + 1:pos + 7]
            if len(header) < 6:
                out.append(BridgeStatus.ABORT | BridgeStatus.TIMEOUT)
                break
            address = int.from_bytes(header[:4], "little") & ~3
            count = int.from_bytes(header[4:], "little") + 1
            pos += 7
            status = 0
            if cmd == BridgeCommand.READ.value:
                for k in range(count):
                    a = address + 4 * k
                    if a >> self.addr_width:
                        value, status = 0, status | BridgeStatus.RANGE
                    else:
                        value, resp = self.target.read(a)
                        status |= self._flags(resp)
                    out += value.to_bytes(4, "little")
            else:
                for k in range(count):
                    chunk = request[pos:pos + 4]
                    if len(chunk) < 4:
                        # Words already complete were written; the rest times out.
                        status = BridgeStatus.ABORT | BridgeStatus.TIMEOUT
                        break
                    pos += 4
                    a = address + 4 * k
                    if a >> self.addr_width:
                        status |= BridgeStatus.RANGE
                    else:
                        status |= self._flags(self.target.write(a, int.from_bytes(chunk, "little"), 0xF))
                if status & BridgeStatus.ABORT:
                    out.append(status)
                    break
            out.append(status)
        return bytes(out)
