import gc
import struct

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring

from fetta.hw.host_port import AXI4LiteResponse, HostPortExample, HostPortExampleModel
from fetta.hw.uart_bridge import (BridgeCommand, BridgeStatus, IDENT_MAGIC, PROTOCOL_VERSION,
                                  UARTBridge, UARTBridgeModel)

from sim_util import run_testbench

R, W, I = BridgeCommand.READ.value, BridgeCommand.WRITE.value, BridgeCommand.IDENT.value


def read_req(address, count):
    return struct.pack("<BIH", R, address, count - 1)


def write_req(address, words):
    return struct.pack("<BIH", W, address, len(words) - 1) + struct.pack(f"<{len(words)}I", *words)


class ScriptedTarget:
    """A word memory whose responses depend on the address: some words answer SLVERR or DECERR."""

    def __init__(self):
        self.mem = {}

    @staticmethod
    def response(address):
        word = address >> 2
        if word % 7 == 3:
            return AXI4LiteResponse.SLVERR
        if word % 11 == 5:
            return AXI4LiteResponse.DECERR
        return AXI4LiteResponse.OKAY

    def read(self, address):
        resp = self.response(address)
        if resp != AXI4LiteResponse.OKAY:
            return 0xBAD00000 | (address & 0xFFFF), resp
        return self.mem.get(address, address * 2654435761 & 0xFFFFFFFF), resp

    def write(self, address, value, strobe):
        assert strobe == 0xF
        resp = self.response(address)
        if resp == AXI4LiteResponse.OKAY:
            self.mem[address] = value
        return resp


async def _run_bridge(ctx, dut, chunks, rng, *, slave=None, flags=None, stall=0.3, budget=200_000):
    """Feed ``chunks`` (lists of request bytes separated by quiet lines of ``dut.timeout`` + 8
    cycles) to ``dut.i``; return the bytes of ``dut.o`` after each chunk.

    ``slave`` (a :class:`ScriptedTarget`) plays the AXI slave with random stalls; ``flags`` maps a
    byte position of a chunk to its (frame_error, overrun) flags.
    """
    answers = []
    axi = dut.axi
    for n, chunk in enumerate(chunks):
        out = bytearray()
        pos, quiet = 0, 0
        aw = w = None
        b = r = None
        for _ in range(budget):
            # Request bytes arrive with random gaps shorter than the timeout.
            offer = pos < len(chunk) and rng.random() < 0.5
            ctx.set(dut.i.valid, offer)
            if offer:
                fe, ov = (flags or {}).get((n, pos), (0, 0))
                ctx.set(dut.i.payload, {"data": chunk[pos], "frame_error": fe, "overrun": ov})
            o_ready = rng.random() < 0.7
            ctx.set(dut.o.ready, o_ready)
            if slave is not None:
                ctx.set(axi.awready, aw is None and rng.random() > stall)
                ctx.set(axi.wready, w is None and rng.random() > stall)
                ctx.set(axi.arready, r is None and rng.random() > stall)
                ctx.set(axi.bvalid, b is not None and b[0] <= 0)
                ctx.set(axi.bresp, b[1] if b else 0)
                ctx.set(axi.rvalid, r is not None and r[0] <= 0 and r[1] is not None)
                ctx.set(axi.rdata, r[1][0] if r and r[1] else 0)
                ctx.set(axi.rresp, r[1][1] if r and r[1] else 0)
            if offer and ctx.get(dut.i.ready):
                pos += 1
            if o_ready and ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
            if slave is not None:
                if ctx.get(axi.awvalid) and ctx.get(axi.awready):
                    aw = ctx.get(axi.awaddr)
                if ctx.get(axi.wvalid) and ctx.get(axi.wready):
                    assert ctx.get(axi.wstrb) == 0xF
                    w = ctx.get(axi.wdata)
                if ctx.get(axi.bvalid) and ctx.get(axi.bready):
                    b = None
                if ctx.get(axi.rvalid) and ctx.get(axi.rready):
                    r = None
                if ctx.get(axi.arvalid) and ctx.get(axi.arready):
                    r = [int(rng.integers(0, 4)), slave.read(ctx.get(axi.araddr))]
                if aw is not None and w is not None and b is None:
                    b = [int(rng.integers(0, 4)), slave.write(aw, w, 0xF)]
                    aw = w = None
                if b is not None:
                    b[0] -= 1
                if r is not None:
                    r[0] -= 1
            await ctx.tick()
            # Done once the request is in and the bridge has said nothing for longer than its
            # timeout (an abort answers only after a quiet line of that length).
            busy = pos < len(chunk) or ctx.get(dut.o.valid)
            quiet = 0 if busy else quiet + 1
            if quiet > dut.timeout + 8:
                break
        else:
            raise AssertionError("the bridge did not finish within the cycle budget")
        answers.append(bytes(out))
    return answers


def _random_requests(rng, addr_width, n):
    top = 1 << addr_width
    reqs = []
    for _ in range(n):
        kind = rng.integers(0, 5)
        address = int(rng.integers(0, top // 4)) * 4 | int(rng.integers(0, 4))
        count = int(rng.integers(1, 6))
        if kind == 0:
            reqs.append(bytes([I]))
        elif kind in (1, 2):
            reqs.append(read_req(address, count))
        elif kind == 3:
            reqs.append(write_req(address, [int(x) for x in rng.integers(0, 1 << 32, count)]))
        else:
            # A burst that runs past the top of the address space.
            reqs.append(read_req(top - 8, 4) if rng.random() < 0.5 else
                        write_req(top - 4, [1, 2, 3]))
    return reqs


def test_bridge_against_model_with_stalling_slave(seed):
    rng = np.random.default_rng(seed)
    addr_width = 10
    dut = UARTBridge(addr_width=addr_width, timeout=40)
    # Several requests per chunk: they follow each other with no quiet line between them.
    reqs = _random_requests(rng, addr_width, 30)
    # Whatever the draw, reach each bus error once: word 3 answers SLVERR, word 5 DECERR, and a
    # burst runs past the top of the address space.
    reqs[int(rng.integers(0, 10))] = write_req(12, [7])
    reqs[int(rng.integers(10, 20))] = read_req(20, 2)
    reqs[int(rng.integers(20, 30))] = read_req((1 << addr_width) - 4, 2)
    chunks = [b"".join(reqs[k:k + 3]) for k in range(0, len(reqs), 3)]
    model = UARTBridgeModel(ScriptedTarget(), addr_width=addr_width)
    want = [model.transact(c) for c in chunks]

    async def bench(ctx):
        got = await _run_bridge(ctx, dut, chunks, rng, slave=ScriptedTarget())
        assert got == want

    run_testbench(dut, bench)
    # The stimulus must reach every error the bus can report (each request's status byte).
    alone = UARTBridgeModel(ScriptedTarget(), addr_width=addr_width)
    seen = 0
    for r in reqs:
        seen |= alone.transact(r)[-1]
    assert seen & BridgeStatus.SLVERR and seen & BridgeStatus.DECERR and seen & BridgeStatus.RANGE


def test_bridge_ident_and_basic_frames():
    dut = UARTBridge(addr_width=12, timeout=32)
    assert dut.ident == (IDENT_MAGIC << 16) | (12 << 8) | PROTOCOL_VERSION
    slave = ScriptedTarget()
    chunks = [bytes([I]), write_req(0x20, [0x11223344, 0x55667788]), read_req(0x20, 2)]

    async def bench(ctx):
        got = await _run_bridge(ctx, dut, chunks, np.random.default_rng(0), slave=slave)
        # Spelled out from the protocol in docs/fpga.md, not from the model.
        assert got[0] == bytes([PROTOCOL_VERSION, 12, 0x77, 0xFE, 0])
        assert got[1] == bytes([0])
        assert got[2] == bytes([0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55, 0])

    run_testbench(dut, bench)


def test_bridge_aborts_and_resynchronizes(seed):
    rng = np.random.default_rng(seed)
    dut = UARTBridge(addr_width=12, timeout=24)
    slave = ScriptedTarget()
    good = read_req(0x80, 1)
    chunks = [
        bytes([0x00]) + good,                      # bad command: the whole chunk is discarded
        good[:5],                                  # a request cut short: timeout
        write_req(0x80, [7, 8, 9]),                # a framing error inside the data
        write_req(0x80, [7, 8, 9]),                # an overrun on the command byte
        good,                                      # and the bridge is in step again
    ]
    flags = {(2, 10): (1, 0), (3, 0): (0, 1)}
    abort = BridgeStatus.ABORT

    async def bench(ctx):
        got = await _run_bridge(ctx, dut, chunks, rng, slave=slave, flags=flags)
        assert got[0] == bytes([abort | BridgeStatus.BAD_COMMAND])
        assert got[1] == bytes([abort | BridgeStatus.TIMEOUT])
        assert got[2] == bytes([abort | BridgeStatus.FRAMING])
        assert got[3] == bytes([abort | BridgeStatus.OVERRUN])
        value, _ = slave.read(0x80)
        assert got[4] == value.to_bytes(4, "little") + bytes([0])
        # Nothing of the damaged writes reached the bus.
        assert not slave.mem

    run_testbench(dut, bench)
    model = UARTBridgeModel(ScriptedTarget(), addr_width=12)
    assert model.transact(chunks[0]) == bytes([abort | BridgeStatus.BAD_COMMAND])
    assert model.transact(chunks[1]) == bytes([abort | BridgeStatus.TIMEOUT])


def test_bridge_with_host_port_example(seed):
    """The bridge masters the host port's own example target; bytes match the model's."""
    rng = np.random.default_rng(seed)
    depth = 32
    bridge = UARTBridge(addr_width=HostPortExample.ADDR_WIDTH, timeout=40)
    target = HostPortExample(depth=depth)
    m = Module()
    m.submodules.bridge, m.submodules.target = bridge, target
    wiring.connect(m, bridge.axi, target.axi)
    mem = HostPortExample.MEM
    words = [int(x) for x in rng.integers(0, 1 << 32, depth)]
    chunks = [
        write_req(mem, words),
        read_req(mem, depth),
        write_req(HostPortExample.SCRATCH, [0xCAFEF00D, 1, 2]),  # ID is read-only: SLVERR
        read_req(HostPortExample.SCRATCH, 3),
        read_req(mem + 4 * depth - 8, 4),                          # runs off the memory
        bytes([I]),
    ]
    model = UARTBridgeModel(HostPortExampleModel(depth=depth), addr_width=12)
    want = [model.transact(c) for c in chunks]

    async def bench(ctx):
        got = await _run_bridge(ctx, bridge, chunks, rng)
        assert got == want
        assert got[1][:-1] == struct.pack(f"<{depth}I", *words)
        assert got[2] == bytes([BridgeStatus.SLVERR])

    run_testbench(m, bench)


# A constructor that raises leaves an instance that is never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("kwargs,message", [
    ({"addr_width": 2, "timeout": 100}, "Address width must be an integer from 3 to 32, not 2"),
    ({"addr_width": 12, "timeout": 15}, "from 16 to 2**32, not 15"),
    ({"addr_width": 12, "timeout": 1.5e3}, "from 16 to 2**32, not 1500.0"),
])
def test_bridge_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")) as info:
        UARTBridge(**kwargs)
    del info
    gc.collect()


def test_bridge_model_rejects_bad_width():
    with pytest.raises(ValueError, match="from 3 to 32, not 40"):
        UARTBridgeModel(ScriptedTarget(), addr_width=40)
