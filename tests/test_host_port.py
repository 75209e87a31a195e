import argparse
import asyncio
import gc
import sys
from pathlib import Path

import numpy as np
import pytest

from fetta.hw import isa
from fetta.hw.accelerator import Accelerator, AcceleratorSystem, Datapath, Timing
from fetta.hw.config import AcceleratorConfig
from fetta.hw.host_port import (AXI4LiteResponse, AXI4LiteSignature, HostPort, HostPortExample,
                                HostPortExampleModel, RegisterBusSignature)
from fetta.hw.uart_bridge import BridgeStatus
from fetta.search.layout import TensorLayout
from fetta.sim.driver import (Driver, DriverTimeout, HostBusError, LinkBackend, ModelBackend,
                              RegisterAccess, RTLBackend, describe, register, run_sync)
from fetta.sim.rtl import RTLBuild

from accelerator_programs import CASES, build
from sim_util import run_testbench

sys.path.insert(0, str(Path(__file__).resolve().parent / "rtl"))
from bench_host_port import check_case, drive_case  # noqa: E402

OKAY, SLVERR = AXI4LiteResponse.OKAY, AXI4LiteResponse.SLVERR


class Target:
    """A register-bus target played by the testbench: a word memory with random stalls and errors.

    It checks the bus discipline (never a read and a write at once; a handshaked request holds
    its address and data until ``ack``; a fixed-latency request lasts one cycle) and logs every
    access it serves as ``(kind, word address, data, mask, err)``.
    """

    def __init__(self, bus, *, read_latency, rng, p_ack=0.5, p_err=0.0):
        self.bus = bus
        self.latency = read_latency
        self.rng = rng
        self.p_ack = p_ack
        self.p_err = p_err
        self.mem = {}
        self.log = []
        self._held = None       # request seen in the previous cycle without ack
        self._pipe = []         # fixed latency: reads waiting for their data cycle
        self._previous_en = False

    def _value(self, addr):
        return self.mem.get(addr, addr * 0x01010101 ^ 0x5A5A5A5A)

    def _serve(self, kind, addr, data, mask, err):
        if kind == "w" and not err:
            bits = sum(0xFF << 8 * i for i in range(4) if mask >> i & 1)
            self.mem[addr] = (self._value(addr) & ~bits) | (data & bits)
        value = self._value(addr) if kind == "r" and not err else 0
        self.log.append((kind, addr, data if kind == "w" else value, mask if kind == "w" else 0,
                         err))
        return value

    def step(self, ctx):
        """Answer this cycle's request; call once per cycle before the clock edge."""
        bus = self.bus
        r_en, w_en = ctx.get(bus.r_en), ctx.get(bus.w_en)
        assert not (r_en and w_en), "read and write requested together"
        request = None
        if r_en or w_en:
            request = ("w" if w_en else "r", ctx.get(bus.addr), ctx.get(bus.w_data) if w_en else 0,
                       ctx.get(bus.w_mask) if w_en else 0)
        err = bool(self.rng.random() < self.p_err)
        if self.latency is None:
            if self._held is not None:
                assert request == self._held, f"request changed before ack: {self._held} -> {request}"
            ack = request is not None and bool(self.rng.random() < self.p_ack)
            ctx.set(bus.ack, ack)
            ctx.set(bus.err, ack and err)
            value = self._serve(*request, err) if ack else 0
            ctx.set(bus.r_data, value if ack else int(self.rng.integers(1 << 32)))
            self._held = request if request is not None and not ack else None
            return
        assert not (request and self._previous_en), "fixed-latency request longer than a cycle"
        self._previous_en = request is not None
        ctx.set(bus.err, 0)
        ctx.set(bus.r_data, int(self.rng.integers(1 << 32)))
        if request and request[0] == "w":
            ctx.set(bus.err, err)
            self._serve(*request, err)
        elif request:
            self._pipe.append([self.latency, request, err])
        for item in self._pipe:
            if item[0] == 0:
                ctx.set(bus.r_data, self._serve(*item[1], item[2]))
                ctx.set(bus.err, item[2])
        self._pipe = [[n - 1, r, e] for n, r, e in self._pipe if n > 0]


class Manager:
    """An AXI4-Lite manager for the Amaranth simulator, cycle by cycle, with programmable stalls.

    Accesses wait in per-channel queues; ``valid(channel, cycle)`` and ``ready(channel, cycle)``
    decide in which cycles a channel may present valid or accept a response. It checks the slave's
    side of the protocol: once ``bvalid``/``rvalid`` rise they hold, with stable payload, until
    the handshake. Records the cycle of every handshake.
    """

    def __init__(self, axi, *, valid=None, ready=None):
        self.axi = axi
        self.valid = valid or (lambda channel, cycle: True)
        self.ready = ready or (lambda channel, cycle: True)
        self.aw, self.w, self.ar = [], [], []
        self.b, self.r = [], []        # responses: (resp, cycle) and (data, resp, cycle)
        self.fired = {"aw": [], "w": [], "ar": []}
        self.writes = self.reads = 0
        self._shown = {}               # channel -> payload shown since it rose
        self._up = {"aw": False, "w": False, "ar": False}
        self.cycle = 0

    def write(self, address, value, strobe=0xF):
        self.aw.append(address)
        self.w.append((value, strobe))
        self.writes += 1

    def read(self, address):
        self.ar.append(address)
        self.reads += 1

    @property
    def done(self):
        return len(self.b) == self.writes and len(self.r) == self.reads

    def _present(self, ctx, name, queue, payload):
        axi = self.axi
        # AXI: once valid is up it stays up until the handshake.
        up = bool(queue) and (self._up[name] or self.valid(name, self.cycle))
        self._up[name] = up
        ctx.set(getattr(axi, f"{name}valid"), up)
        if up:
            payload(queue[0])
        return up and ctx.get(getattr(axi, f"{name}ready"))

    def _response(self, ctx, name, fields):
        axi = self.axi
        valid = ctx.get(getattr(axi, f"{name}valid"))
        ready = bool(self.ready(name, self.cycle))
        ctx.set(getattr(axi, f"{name}ready"), ready)
        shown = tuple(ctx.get(getattr(axi, f)) for f in fields)
        if name in self._shown:
            assert valid, f"{name}valid fell before its handshake (cycle {self.cycle})"
            assert shown == self._shown[name], \
                f"{name} payload changed while stalled: {self._shown[name]} -> {shown}"
        if valid and ready:
            self._shown.pop(name, None)
            return shown
        if valid:
            self._shown[name] = shown
        return None

    def step(self, ctx):
        """Drive and sample one cycle; call once per cycle before the clock edge."""
        axi = self.axi

        def aw(address):
            ctx.set(axi.awaddr, address)

        def w(item):
            ctx.set(axi.wdata, item[0])
            ctx.set(axi.wstrb, item[1])

        def ar(address):
            ctx.set(axi.araddr, address)

        fire = {"aw": self._present(ctx, "aw", self.aw, aw),
                "w": self._present(ctx, "w", self.w, w),
                "ar": self._present(ctx, "ar", self.ar, ar)}
        b = self._response(ctx, "b", ("bresp",))
        r = self._response(ctx, "r", ("rdata", "rresp"))
        for name, queue in (("aw", self.aw), ("w", self.w), ("ar", self.ar)):
            if fire[name]:
                queue.pop(0)
                self._up[name] = False
                self.fired[name].append(self.cycle)
        if b is not None:
            self.b.append((AXI4LiteResponse(b[0]), self.cycle))
        if r is not None:
            self.r.append((r[0], AXI4LiteResponse(r[1]), self.cycle))
        self.cycle += 1


async def run(ctx, manager, *parts, timeout=5000):
    """Step ``manager`` (and targets in ``parts``) until every access has its response."""
    while not manager.done:
        assert manager.cycle < timeout, "the host port stopped answering"
        for part in parts:
            part.step(ctx)
        manager.step(ctx)
        await ctx.tick()


def _random(rng, p):
    return lambda channel, cycle: bool(rng.random() < p)


# Handshake corner cases, one at a time, against a testbench target.

def _port(read_latency=1, regions=((0, 0x100),)):
    return HostPort(addr_width=12, regions=regions, read_latency=read_latency)


@pytest.mark.parametrize("aw_at,w_at", [(0, 6), (6, 0), (3, 3)])
def test_write_address_and_data_in_either_order(aw_at, w_at):
    dut = _port()
    rng = np.random.default_rng(0)
    schedule = {"aw": aw_at, "w": w_at, "ar": 0}
    manager = Manager(dut.axi, valid=lambda channel, cycle: cycle >= schedule[channel])
    target = Target(dut.bus, read_latency=1, rng=rng)

    async def bench(ctx):
        manager.write(0x24, 0xDEADBEEF, 0b0101)
        await run(ctx, manager, target)
        assert manager.fired["aw"] == [aw_at] and manager.fired["w"] == [w_at]
        assert manager.b == [(OKAY, max(aw_at, w_at) + dut.write_response_latency)]
        assert target.log == [("w", 0x24 // 4, 0xDEADBEEF, 0b0101, False)]

    run_testbench(dut, bench)


def test_write_waits_for_both_halves():
    """A lone write address or write data never reaches the register bus."""
    dut = _port()
    target = Target(dut.bus, read_latency=1, rng=np.random.default_rng(0))

    async def bench(ctx):
        for name, value in (("awaddr", 0x10), ("awvalid", 1)):
            ctx.set(getattr(dut.axi, name), value)
        for _ in range(8):
            target.step(ctx)
            await ctx.tick()
        ctx.set(dut.axi.awvalid, 0)
        assert not ctx.get(dut.axi.awready), "the write address buffer holds one entry"
        assert ctx.get(dut.axi.wready)
        for _ in range(8):
            target.step(ctx)
            await ctx.tick()
        assert target.log == [] and not ctx.get(dut.axi.bvalid)

    run_testbench(dut, bench)


@pytest.mark.parametrize("read_latency", [0, 1, 3, None])
def test_read_latency_property(read_latency):
    dut = _port(read_latency)
    manager = Manager(dut.axi)
    # A handshaked target that always acknowledges at once has no wait states.
    target = Target(dut.bus, read_latency=read_latency, rng=np.random.default_rng(0), p_ack=1.0)

    async def bench(ctx):
        manager.read(0x40)
        await run(ctx, manager, target)
        (value, resp, cycle), = manager.r
        assert (resp, cycle) == (OKAY, manager.fired["ar"][0] + dut.read_response_latency)
        assert value == target.log[0][2] and target.log[0][:2] == ("r", 0x10)

    run_testbench(dut, bench)


@pytest.mark.parametrize("read_latency", [0, 2, None])
def test_throughput_without_stalls(read_latency):
    """Back to back: a write every 3 cycles, a read every 3 + read_latency, and a write and a read
    together every 4 + read_latency once under way (as documented)."""
    dut = _port(read_latency)
    manager = Manager(dut.axi)
    target = Target(dut.bus, read_latency=read_latency, rng=np.random.default_rng(0), p_ack=1.0)
    mixed = {}

    async def bench(ctx):
        for k in range(16):
            manager.write(4 * k, k)
        await run(ctx, manager, target)
        for k in range(16):
            manager.read(4 * k)
        await run(ctx, manager, target)
        start = {name: len(cycles) for name, cycles in manager.fired.items()}
        for k in range(16):
            manager.write(4 * k, k)
            manager.read(4 * k + 64)
        await run(ctx, manager, target)
        mixed.update({name: cycles[start[name]:] for name, cycles in manager.fired.items()})

    run_testbench(dut, bench)
    assert set(np.diff(manager.fired["aw"][:16])) == {3}
    assert set(np.diff(manager.fired["ar"][:16])) == {3 + (read_latency or 0)}
    assert [value for value, _, _ in manager.r[:16]] == list(range(16))
    # The first pair of the mixed run starts from idle; after it, one pair per period.
    for name in ("aw", "ar"):
        assert len(mixed[name]) == 16
        assert set(np.diff(mixed[name])[1:]) == {4 + (read_latency or 0)}, name


def test_stalled_responses_hold_and_block_the_next_access():
    """With B and R stalled, the next write and read are accepted but wait for the responses."""
    dut = _port()
    manager = Manager(dut.axi, ready=lambda channel, cycle: cycle >= 30)
    target = Target(dut.bus, read_latency=1, rng=np.random.default_rng(0))

    async def bench(ctx):
        manager.write(0x0, 1)
        manager.write(0x4, 2)
        manager.write(0x8, 3)
        manager.read(0x0)
        manager.read(0x4)
        manager.read(0x8)
        await run(ctx, manager, target)
        # Responses hold from their first cycle until the stall ends (checked by the manager).
        assert [c for _, c in manager.b][0] == 30 and [c for *_, c in manager.r][0] == 30
        # Only the first access of each direction and the second one's capture happen before.
        assert manager.fired["aw"][0] == 0 and manager.fired["aw"][1] < 30 < manager.fired["aw"][2]
        assert manager.fired["ar"][0] == 0 and manager.fired["ar"][1] < 30 < manager.fired["ar"][2]
        assert manager.b[1][1] > 30 and manager.r[1][2] > 30
        assert [resp for resp, _ in manager.b] == [OKAY] * 3
        assert [(v, resp) for v, resp, _ in manager.r] == [(1, OKAY), (2, OKAY), (3, OKAY)]

    run_testbench(dut, bench)


@pytest.mark.parametrize("read_latency", [1, None])
def test_out_of_range_completes_with_slverr(read_latency):
    dut = HostPort(addr_width=12, regions=[(0x400, 0x400), (0x100, 0x10)],
                   read_latency=read_latency, count_width=2)
    assert dut.regions == ((0x100, 0x10), (0x400, 0x400))
    assert dut.in_range(0x10C) and not dut.in_range(0x110) and not dut.in_range(0x800)
    manager = Manager(dut.axi)
    target = Target(dut.bus, read_latency=read_latency, rng=np.random.default_rng(0))
    outside = [0x0FC, 0x110, 0x3FC, 0x800, 0xFFC]
    inside = [0x100, 0x10C, 0x400, 0x7FC]

    async def bench(ctx):
        for address in outside + inside:
            manager.write(address, address)
            manager.read(address)
        await run(ctx, manager, target)
        want = [SLVERR] * len(outside) + [OKAY] * len(inside)
        assert [resp for resp, _ in manager.b] == want
        assert [resp for _, resp, _ in manager.r] == want
        assert all(value == 0 for value, _, _ in manager.r[:len(outside)])
        assert [value for value, _, _ in manager.r[len(outside):]] == inside
        # Nothing outside reaches the target.
        assert sorted({addr * 4 for _, addr, *_ in target.log}) == inside
        assert ctx.get(dut.error) == 1
        assert ctx.get(dut.error_count) == 3, "saturates at its 2-bit maximum"
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert (ctx.get(dut.error), ctx.get(dut.error_count)) == (0, 0)

    run_testbench(dut, bench)


def test_target_error_is_slverr_and_counted():
    dut = _port(None)
    rng = np.random.default_rng(3)
    manager = Manager(dut.axi)
    target = Target(dut.bus, read_latency=None, rng=rng, p_err=0.5)

    async def bench(ctx):
        for k in range(20):
            manager.write(4 * k, k)
            manager.read(4 * k)
        await run(ctx, manager, target)
        writes = [err for kind, *_, err in target.log if kind == "w"]
        reads = [err for kind, *_, err in target.log if kind == "r"]
        assert [resp == SLVERR for resp, _ in manager.b] == writes
        assert [resp == SLVERR for _, resp, _ in manager.r] == reads
        assert 0 < sum(writes) < 20 and 0 < sum(reads) < 20
        assert ctx.get(dut.error_count) == sum(writes) + sum(reads)

    run_testbench(dut, bench)


@pytest.mark.parametrize("read_latency", [0, 2, None])
def test_random_traffic_with_back_pressure(read_latency, seed):
    """Concurrent reads and writes, random valid/ready on all five channels and random stalls."""
    rng = np.random.default_rng(seed)
    dut = HostPort(addr_width=10, regions=((0x000, 0x200), (0x300, 0x80)),
                   read_latency=read_latency)
    manager = Manager(dut.axi, valid=_random(rng, 0.6), ready=_random(rng, 0.6))
    target = Target(dut.bus, read_latency=read_latency, rng=rng, p_ack=0.5, p_err=0.1)
    writes = [(int(a) * 4 + int(rng.integers(4)), int(rng.integers(1 << 32)), int(rng.integers(16)))
              for a in rng.integers(0, 256, 60)]
    reads = [int(a) * 4 + int(rng.integers(4)) for a in rng.integers(0, 256, 60)]

    async def bench(ctx):
        for (address, value, strobe), raddress in zip(writes, reads):
            manager.write(address, value, strobe)
            manager.read(raddress)
        await run(ctx, manager, target)

    run_testbench(dut, bench)
    served_w = [entry for entry in target.log if entry[0] == "w"]
    served_r = [entry for entry in target.log if entry[0] == "r"]
    want_w = [(a >> 2, v, s) for a, v, s in writes if dut.in_range(a)]
    assert [entry[1:4] for entry in served_w] == want_w
    assert [entry[1] for entry in served_r] == [a >> 2 for a in reads if dut.in_range(a)]
    errors = iter(entry[4] for entry in served_w)
    assert [resp for resp, _ in manager.b] == [
        SLVERR if not dut.in_range(a) or next(errors) else OKAY for a, _, _ in writes]
    served = iter(served_r)
    want_r = []
    for address in reads:
        if not dut.in_range(address):
            want_r.append((0, SLVERR))
        else:
            _, _, value, _, err = next(served)
            want_r.append((0, SLVERR) if err else (value, OKAY))
    assert [(v, resp) for v, resp, _ in manager.r] == want_r
    assert 3 <= sum(not dut.in_range(a) for a in reads) <= 57


# The example design (real gateware behind the port) against its model.

@pytest.mark.parametrize("read_latency", [0, 1, 3, None])
def test_example_matches_model(read_latency, seed):
    rng = np.random.default_rng(seed)
    dut = HostPortExample(depth=16, read_latency=read_latency)
    model = HostPortExampleModel(depth=16)
    manager = Manager(dut.axi, valid=_random(rng, 0.7), ready=_random(rng, 0.7))
    addresses = ([0x000, 0x004, 0x008, 0x00C, 0x7FC, 0x840, 0xFFC]
                 + [0x800 + 4 * k for k in range(16)])

    async def bench(ctx):
        for k in range(120):
            address = int(rng.choice(addresses)) + int(rng.integers(4))
            if rng.random() < 0.5:
                value, strobe = int(rng.integers(1 << 32)), int(rng.integers(16))
                manager.write(address, value, strobe)
                await run(ctx, manager)
                assert manager.b[-1][0] == model.write(address, value, strobe), (k, hex(address))
            else:
                manager.read(address)
                await run(ctx, manager)
                assert manager.r[-1][:2] == model.read(address), (k, hex(address))

    run_testbench(dut, bench)
    failed = [resp for resp, _ in manager.b] + [resp for _, resp, _ in manager.r]
    assert 0 < failed.count(SLVERR) < len(failed), "the stimulus must mix good and bad accesses"


# Parameters.

@pytest.mark.parametrize("make,message", [
    (lambda: AXI4LiteSignature(addr_width=2), "Address width must be an integer from 3 to 32, not 2"),
    (lambda: AXI4LiteSignature(addr_width=12, data_width=16), "Data width must be 32 or 64, not 16"),
    (lambda: RegisterBusSignature(addr_width=0, read_latency=1),
     "Word address width must be an integer from 1 to 30, not 0"),
    (lambda: RegisterBusSignature(addr_width=8, read_latency=9),
     "Read latency must be None or an integer from 0 to 8, not 9"),
    (lambda: HostPort(addr_width=12, read_latency=-1),
     "Read latency must be None or an integer from 0 to 8, not -1"),
    (lambda: HostPort(addr_width=33), "Address width must be an integer from 3 to 32, not 33"),
    (lambda: HostPort(addr_width=12, count_width=0),
     "Count width must be an integer from 1 to 32, not 0"),
    (lambda: HostPort(addr_width=12, regions=[]), r"Regions must not be empty, not \[\]"),
    (lambda: HostPort(addr_width=12, regions=[(2, 4)]), "inside the 4096-byte address space, not \\(2, 4\\)"),
    (lambda: HostPort(addr_width=12, regions=[(0, 0)]), "not \\(0, 0\\)"),
    (lambda: HostPort(addr_width=12, regions=[(0xFFC, 8)]), "not \\(4092, 8\\)"),
    (lambda: HostPort(addr_width=12, regions=[(0x10, 0x10), (0, 0x14)]),
     "Regions must not overlap, not \\(0, 20\\) and \\(16, 16\\)"),
    (lambda: HostPortExample(depth=3), "Depth must be a power of two from 2 to 256, not 3"),
    (lambda: HostPortExample(read_latency=4),
     "Read latency must be None or an integer from 0 to 3, not 4"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()
    gc.collect()  # the half-built component warns when collected; let it do so here


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_regions_must_be_pairs():
    with pytest.raises(TypeError, match="Regions must be a sequence of \\(base, size\\) pairs, not 5"):
        HostPort(addr_width=12, regions=5)
    gc.collect()


def test_signatures_compare_by_parameters():
    assert AXI4LiteSignature(addr_width=12) == AXI4LiteSignature(addr_width=12)
    assert AXI4LiteSignature(addr_width=12) != AXI4LiteSignature(addr_width=13)
    assert RegisterBusSignature(addr_width=8, read_latency=None) != \
        RegisterBusSignature(addr_width=8, read_latency=0)
    assert "ack" in RegisterBusSignature(addr_width=8, read_latency=None).members
    assert "ack" not in RegisterBusSignature(addr_width=8, read_latency=1).members


@pytest.mark.rtl
@pytest.mark.parametrize("read_latency", [1, None])
def test_example_in_verilator(read_latency, seed):
    """cocotbext-axi's master with random back-pressure on every channel, against the model."""
    config = {"depth": 32, "read_latency": read_latency}
    build = RTLBuild(name="host_port_example", config=config,
                     elaborate=lambda: HostPortExample(**config))
    assert build.test("bench_host_port", testcase="host_port_matches_model",
                      params={"depth": 32, "seed": seed}) == 1


# The driver.

SMALL = AcceleratorConfig(lanes=4, acc_width=16, depth=32, prog_depth=32, dist_routes=8,
                          red_routes=4)


class SimHostBus(RegisterAccess):
    """The accelerator's handshaked host bus in the Amaranth simulator, as a driver backend."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus

    async def _access(self, address, write, value=0):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.addr, address >> 2)
        ctx.set(bus.w_data, value)
        ctx.set(bus.w_mask, 0xF)
        ctx.set(bus.w_en if write else bus.r_en, 1)
        for _ in range(16):
            ack, data, err = ctx.get(bus.ack), ctx.get(bus.r_data), ctx.get(bus.err)
            await ctx.tick()
            if ack:
                break
        else:
            raise AssertionError(f"no ack at {address:#x}")
        ctx.set(bus.w_en, 0)
        ctx.set(bus.r_en, 0)
        if err:
            raise HostBusError(address, write=write)
        return data

    async def _read32(self, address):
        return await self._access(address, False)

    async def _write32(self, address, value):
        await self._access(address, True, value)


def _probe_accesses(config, rng):
    """Reads and writes over the whole register map: every CSR offset, each window's edges and
    random words of it, values beyond the field widths."""
    dp = Datapath(config)
    sizes = {"CSR": 0x1000, "PROGRAM": 8 * config.prog_depth,
             "DIST_ROUTES": 4 * dp.dist_words * config.dist_routes,
             "RED_ROUTES": 4 * dp.red_words * config.red_routes, "SCRATCHPAD": 4 * config.words}
    accesses = [("r", offset, 0) for offset in range(0, 0x100, 4)] + [("r", 0xFFC, 0)]
    for name, (offset, access, _) in isa.CSR.items():
        if name != "CTRL":
            accesses.append(("w", offset, int(rng.integers(1 << 32))))
            accesses.append(("r", offset, 0))
    for name, (base, _) in isa.WINDOWS.items():
        if name == "CSR":
            continue
        edges = [base, base + sizes[name] - 4, base + sizes[name], base - 4]
        edges += [base + 4 * int(k) for k in rng.integers(0, sizes[name] // 4, 6)]
        for address in edges:
            accesses.append(("w", address, int(rng.integers(1 << 32))))
            accesses.append(("r", address, 0))
    return accesses


def test_model_backend_answers_like_the_rtl(seed):
    """Register-level: every probe gets the same value or the same rejection from both."""
    rng = np.random.default_rng(seed)
    accesses = _probe_accesses(SMALL, rng)
    model = ModelBackend(SMALL)
    dut = Accelerator(SMALL)
    got = []

    async def bench(ctx):
        rtl = SimHostBus(ctx, dut.host)
        for kind, address, value in accesses:
            try:
                if kind == "r":
                    got.append(await rtl.read32(address))
                else:
                    await rtl.write32(address, value)
                    got.append(None)
            except HostBusError:
                got.append("rejected")

    run_testbench(dut, bench)
    want = []
    for kind, address, value in accesses:
        try:
            want.append(run_sync(model.read32(address)) if kind == "r"
                        else run_sync(model.write32(address, value)))
        except HostBusError:
            want.append("rejected")
    mismatches = [(kind, hex(address), value, g, w)
                  for (kind, address, value), g, w in zip(accesses, got, want) if g != w]
    assert not mismatches, mismatches[:10]
    assert 10 < want.count("rejected") < len(want) // 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_driver_on_model_gives_the_expected_results(name, seed):
    case = build(name, SMALL, seed)
    driver = run_sync(Driver.connect(ModelBackend(SMALL)))
    assert driver.config == SMALL
    check_case(run_sync(drive_case(driver, case)), case)


def test_driver_same_script_on_model_and_simulated_rtl(seed):
    """One driver script on the model and on the accelerator's RTL in the Amaranth simulator."""
    cases = [build(name, SMALL, seed + k)
             for k, name in enumerate(["matmul_grouped", "saturation", "copy_relayout"])]
    model = run_sync(Driver.connect(ModelBackend(SMALL)))
    want = [run_sync(drive_case(model, case)) for case in cases]
    dut = Accelerator(SMALL)
    got = []

    async def bench(ctx):
        driver = await Driver.connect(SimHostBus(ctx, dut.host))
        for case in cases:
            got.append(await drive_case(driver, case))

    run_testbench(dut, bench)
    for case, g, w in zip(cases, got, want):
        check_case(g, case)
        assert (g["status"], g["counters"], g["error"]) == (w["status"], w["counters"], w["error"])


def test_tensors_round_trip_and_leave_gaps_alone(seed):
    rng = np.random.default_rng(seed)
    # Rows of `i` four apart leave a gap row between them for another tensor.
    layout = TensorLayout(name="T", indices=("i", "j"), sizes=(3, 6), lanes=4,
                          lane_indices=(("j", 3),), row_strides={"i": 4, "j": 1},
                          region=2, base=5)
    assert layout.rows_needed > 6, "the layout must have gaps"
    driver = Driver(ModelBackend(SMALL), SMALL)
    sentinel = np.full((SMALL.depth, SMALL.lanes), -7)
    run_sync(driver.write_rows(2, 0, sentinel))
    array = rng.integers(SMALL.word_min, SMALL.word_max + 1, (3, 6))
    run_sync(driver.write_tensor(array, layout))
    np.testing.assert_array_equal(run_sync(driver.read_tensor(layout)), array)
    # The same tensor placed elsewhere by the overrides.
    run_sync(driver.write_tensor(array[::-1], layout, region=1, base_row=20))
    np.testing.assert_array_equal(
        run_sync(driver.read_tensor(layout.placed(region=1, base=20))), array[::-1])
    np.testing.assert_array_equal(run_sync(driver.read_tensor(layout)), array)
    rows = run_sync(driver.read_rows(2, 0, SMALL.depth))
    used = np.unique(layout.positions()[0]) + 5
    untouched = np.setdiff1d(np.arange(SMALL.depth), used)
    assert (rows[untouched] == -7).all()
    assert (rows[used][:, 3] == 0).all(), "padding lanes of used rows hold 0"


class _FakeLink:
    """A blocking link (the interface of the board's UART link) over the model backend."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = 0

    def read32(self, address):
        self.calls += 1
        if address == 0x7000:
            raise IOError("no answer within the timeout")
        try:
            return run_sync(self.backend.read32(address))
        except HostBusError as e:
            error = IOError("read failed: SLVERR")
            error.status = BridgeStatus.SLVERR
            raise error from e

    def write32(self, address, value):
        self.calls += 1
        run_sync(self.backend.write32(address, value))

    def read_block(self, address, count):
        self.calls += 1
        return run_sync(self.backend.read_block(address, count))

    def write_block(self, address, words):
        self.calls += 1
        run_sync(self.backend.write_block(address, words))


def test_link_backend_runs_the_same_script(seed):
    case = build("batched_transposed", SMALL, seed)
    link = _FakeLink(ModelBackend(SMALL))
    driver = run_sync(Driver.connect(LinkBackend(link)))
    check_case(run_sync(drive_case(driver, case)), case)
    assert link.calls > 10
    with pytest.raises(HostBusError, match="read at 0x5000 rejected: read failed: SLVERR"):
        run_sync(driver.backend.read32(0x5000))
    # A link failure is not a rejected access: it propagates as it is.
    with pytest.raises(OSError, match="no answer within the timeout") as info:
        run_sync(driver.backend.read32(0x7000))
    assert not isinstance(info.value, HostBusError)


def test_start_wait_clear_and_errors():
    driver = Driver(ModelBackend(SMALL), SMALL)
    with pytest.raises(DriverTimeout, match="no DONE after 3 status polls"):
        run_sync(driver.wait(3))
    run_sync(driver.load_program([isa.encode(isa.Opcode.NOP), 0xF]))
    status, counters, error = run_sync(driver.run())
    assert status.done and status.error and error == (isa.Cause.ILLEGAL, 1)
    with pytest.raises(RuntimeError, match="START refused: the accelerator is in error"):
        run_sync(driver.start())
    run_sync(driver.clear())
    assert run_sync(driver.error()) is None and not run_sync(driver.status()).done
    run_sync(driver.load_program([isa.encode(isa.Opcode.HALT)], at=1))
    status, counters, error = run_sync(driver.run())
    assert status.done and error is None
    t = Timing.from_config(SMALL)
    assert counters == {"cycles": 2 * t.instr, "busy": 0, "macs": 0, "stalls": 0}
    with pytest.raises(HostBusError, match="write at 0x0 rejected: ID is read-only"):
        run_sync(driver.backend.write32(0, 1))
    with pytest.raises(HostBusError, match="read at 0x3fffffc rejected: outside every window"):
        run_sync(driver.backend.read32(0x3FFFFFC))


@pytest.mark.parametrize("call,error,message", [
    (lambda d: d.backend.read32(2), ValueError,
     "Address must be a word-aligned integer from 0 to 2\\*\\*32 - 4, not 2"),
    (lambda d: d.backend.write32(0x50, -1), ValueError,
     "Word must be an integer from 0 to 2\\*\\*32 - 1, not -1"),
    (lambda d: d.backend.read_block(0, -1), ValueError,
     "Count must be a non-negative integer, not -1"),
    (lambda d: d.load_program([0] * 33), ValueError,
     "A program of 33 instructions at 0 does not fit prog_depth = 32"),
    (lambda d: d.load_program([1 << 64]), ValueError,
     "Instruction words must be 64-bit unsigned, not 18446744073709551616"),
    (lambda d: d.load_routes(dist={8: 0}), ValueError,
     "DIST_ROUTES entry must be from 0 to 7, not 8"),
    (lambda d: d.write_rows(0, 0, np.zeros((2, 3), int)), ValueError,
     "Rows must have shape \\(rows, 4\\), not \\(2, 3\\)"),
    (lambda d: d.write_rows(0, 0, np.full((1, 4), 128)), ValueError,
     "Row values must be signed 8-bit integers, from -128 to 127, not 128"),
    (lambda d: d.write_rows(0, 0, np.full((1, 4), 1.5)), ValueError,
     "Row values must be integers, not an array of float64"),
    (lambda d: d.write_rows(0, 0, [[0, -129, 300, 1]]), ValueError,
     "Row values must be signed 8-bit integers, from -128 to 127, not -129"),
    (lambda d: d.write_rows(4, 0, np.zeros((1, 4), int)), ValueError,
     "Region must be from 0 to 3, not 4"),
    (lambda d: d.read_rows(0, 31, 2), ValueError, "Rows 31 to 31 \\+ 2 do not fit depth = 32"),
])
def test_driver_rejects_bad_arguments(call, error, message):
    driver = Driver(ModelBackend(SMALL), SMALL)
    with pytest.raises(error, match=message):
        run_sync(call(driver))


def test_driver_and_backends_reject_bad_objects():
    with pytest.raises(TypeError, match="Backend must be a RegisterAccess, not 5"):
        Driver(5, SMALL)
    with pytest.raises(TypeError, match="Config must be an AcceleratorConfig, not None"):
        Driver(ModelBackend(SMALL), None)
    with pytest.raises(TypeError, match="Model backend needs a Machine or an AcceleratorConfig, "
                                        "not 'x'"):
        ModelBackend("x")
    with pytest.raises(TypeError, match="Link must have a read32\\(\\) method, not 3"):
        LinkBackend(3)
    with pytest.raises(ValueError, match="Pause probability must be from 0 to 1 \\(excluded\\), "
                                         "not 1.0"):
        RTLBackend(None, pause=1.0)


def test_connect_checks_the_id():
    backend = ModelBackend(SMALL)
    with pytest.raises(IOError, match="ID register reads 0x00000000, not 0x46455441"):
        run_sync(Driver.connect(LinkBackend(_ZeroLink())))
    assert run_sync(Driver.connect(backend)).config == SMALL


class _ZeroLink:
    def read32(self, address):
        return 0

    write32 = read_block = write_block = read32


def test_run_sync_refuses_suspending_coroutines():
    async def suspends():
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="the coroutine suspended"):
        run_sync(suspends())


@pytest.mark.rtl
def test_driver_on_rtl_through_axi_matches_model(seed):
    """The same driver script on the accelerator's Verilog behind its AXI4-Lite port (cocotbext-axi
    master, random back-pressure on every channel) and on the model: identical results, status
    and counters, and equal to each case's numpy expectations."""
    config = AcceleratorConfig()
    # The same build as the accelerator's own Verilator test (same name and configuration).
    build_ = RTLBuild(name="accelerator_system", config=config.to_dict(),
                      elaborate=lambda: AcceleratorSystem(config))
    cases = ["matmul_grouped", "illegal_opcode", "batched_transposed", "saturation"]
    assert build_.test("bench_host_port", testcase="driver_matches_model",
                       params={"config": config.to_dict(), "seed": seed, "pause": 0.3,
                               "cases": cases}) == 1


def test_host_subcommand_reports_the_model(capsys, tmp_path):
    parser = argparse.ArgumentParser(prog="fetta")
    register(parser.add_subparsers(dest="command"))
    config = tmp_path / "small.toml"
    config.write_text("lanes = 4\nacc_width = 16\ndepth = 32\nprog_depth = 32\n"
                      "dist_routes = 8\nred_routes = 4\n")
    args = parser.parse_args(["host", "--model", "--config", str(config)])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("accelerator: L = 4, W = 8, accumulators 16 bits, 4 regions x 32 rows")
    assert "status: idle" in out and "counters: cycles 0, busy 0, macs 0, stalls 0" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["host"])


def test_describe_reports_an_error():
    driver = Driver(ModelBackend(SMALL), SMALL)
    run_sync(driver.load_program([isa.encode(isa.Opcode.NOP), 0xF]))
    run_sync(driver.run())
    text = run_sync(describe(driver))
    assert "status: done, error" in text and "error: ILLEGAL at instruction 1" in text
    assert f"counters: cycles {2 * Timing.from_config(SMALL).instr}," in text


def test_in_constant_range_every_bound():
    """``in_constant_range`` against Python's comparison: every 5-bit value, every pair of bounds
    (including bounds outside the value's range)."""
    from amaranth import Module, Signal
    from fetta.hw.host_port import in_constant_range
    value = Signal(5)
    bounds = [(lo, hi) for lo in range(-1, 34) for hi in range(-1, 34)]
    m = Module()
    hits = [Signal(name=f"hit_{k}") for k in range(len(bounds))]
    for hit, (lo, hi) in zip(hits, bounds):
        m.d.comb += hit.eq(in_constant_range(value, lo, hi))

    async def bench(ctx):
        for x in range(32):
            ctx.set(value, x)
            got = [ctx.get(hit) for hit in hits]
            assert got == [int(lo <= x < hi) for lo, hi in bounds], x

    run_testbench(m, bench, clock=False)
