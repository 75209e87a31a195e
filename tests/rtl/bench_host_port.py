"""cocotb benches: the host port under cocotbext-axi's AXI4-Lite master, alone and in front of the
accelerator.

Random back-pressure and idle cycles on all five channels. The example target's responses and read
values are compared with :class:`HostPortExampleModel`; the accelerator, driven through
:class:`fetta.sim.driver.Driver` on :class:`RTLBackend`, with the same driver on the model
(:class:`ModelBackend`) and with the expectations that each program case computes with numpy.
"""

import json
import os
import sys
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotb_util import reset
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from fetta.hw.config import AcceleratorConfig
from fetta.hw.host_port import AXI4LiteResponse, HostPortExample, HostPortExampleModel
from fetta.sim.driver import Driver, HostBusError, ModelBackend, RTLBackend, run_sync

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from accelerator_programs import build  # noqa: E402


def _pauses(rng, level):
    """An endless pattern of pause cycles, paused with probability ``level["p"]`` (changeable)."""
    while True:
        yield bool(rng.random() < level["p"])


class TB:
    def __init__(self, dut, rng, *, pause=0.3):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.axi = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi", bus_separator="__"),
                                 dut.clk, dut.rst)
        self.level = {"p": pause}
        for channel in (self.axi.write_if.aw_channel, self.axi.write_if.w_channel,
                        self.axi.write_if.b_channel, self.axi.read_if.ar_channel,
                        self.axi.read_if.r_channel):
            channel.set_pause_generator(_pauses(np.random.default_rng(rng.integers(1 << 32)),
                                                self.level))

    def write(self, address, data):
        """Start a write; the returned task yields its response."""
        return cocotb.start_soon(self.axi.write(address, data))

    def read(self, address, length=4):
        """Start a read; the returned task yields its response."""
        return cocotb.start_soon(self.axi.read(address, length))

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)


def _resp(resp):
    return AXI4LiteResponse(int(resp))


def _word_access(rng, addresses):
    """A random access of 1 to 4 bytes inside one word: (byte address, bytes)."""
    word = int(rng.choice(addresses))
    start = int(rng.integers(4))
    length = int(rng.integers(1, 5 - start))
    return word + start, bytes(int(b) for b in rng.integers(0, 256, length))


def _strobe(address, length):
    return ((1 << length) - 1) << (address % 4)


def _value(address, data):
    return int.from_bytes(data, "little") << 8 * (address % 4)


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def host_port_matches_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    depth = p["depth"]
    rng = np.random.default_rng(p["seed"])
    tb = TB(dut, rng)
    await tb.reset()
    model = HostPortExampleModel(depth=depth)
    mem = [HostPortExample.MEM + 4 * k for k in range(depth)]
    regs = [HostPortExample.SCRATCH, HostPortExample.ID_REG]
    bad = [0x00C, 0x7FC, HostPortExample.MEM + 4 * depth, 0xFFC]

    # 1. Many writes in flight at once (single words, random byte strobes, some failing).
    accesses = [_word_access(rng, mem + regs + bad) for _ in range(150)]
    tasks = [tb.write(a, d) for a, d in accesses]
    for (address, data), task in zip(accesses, tasks):
        got = await task
        want = model.write(address, _value(address, data), _strobe(address, len(data)))
        assert _resp(got.resp) == want, f"write {address:#x}: {got}"

    # 2. Many reads in flight: every word, the registers, the error register, bad addresses.
    order = mem + regs + bad + [HostPortExample.ERROR] + mem[::-1]
    tasks = [tb.read(a) for a in order]
    for address, task in zip(order, tasks):
        got = await task
        value, want = model.read(address)
        assert (int.from_bytes(got.data, "little"), _resp(got.resp)) == (value, want), \
            f"read {address:#x}: {got}, model {value:#x} {want}"

    # 3. Reads and writes together on disjoint words (no failures, so the order across
    #    directions cannot change any answer), and multi-word block writes through the master.
    low, high = mem[:depth // 2], mem[depth // 2:]
    writes = [_word_access(rng, high) for _ in range(60)]
    reads = [int(rng.choice(low + regs)) for _ in range(60)]
    w_tasks = [tb.write(a, d) for a, d in writes]
    r_tasks = [tb.read(a) for a in reads]
    for address, task in zip(reads, r_tasks):
        got = await task
        value, want = model.read(address)
        assert (int.from_bytes(got.data, "little"), _resp(got.resp)) == (value, want)
    for (address, data), task in zip(writes, w_tasks):
        got = await task
        assert _resp(got.resp) == model.write(address, _value(address, data),
                                              _strobe(address, len(data)))
    block = bytes(int(b) for b in rng.integers(0, 256, 4 * depth - 6))
    await tb.axi.write(HostPortExample.MEM + 3, block)
    for k, byte in enumerate(block):
        address = HostPortExample.MEM + 3 + k
        model.write(address, byte << 8 * (address % 4), 1 << address % 4)
    got = await tb.axi.read(HostPortExample.MEM, 4 * depth)
    assert got.resp == AxiResp.OKAY
    assert list(got.data) == [(model.mem[k // 4] >> 8 * (k % 4)) & 0xFF for k in range(4 * depth)]

    # 4. Clearing the error flag through its register.
    await tb.axi.write_dword(HostPortExample.ERROR, 0)
    assert await tb.axi.read_dword(HostPortExample.ERROR) == 0
    assert model.error_count > 0, "the stimulus must have produced errors before the clear"

    # 5. Throughput without back-pressure, as a figure for the log.
    tb.level["p"] = 0.0
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    start = get_sim_time(unit="ns")
    await tb.axi.write(HostPortExample.MEM, bytes(4 * depth))
    write_cycles = (get_sim_time(unit="ns") - start) / 10 / depth
    start = get_sim_time(unit="ns")
    await tb.axi.read(HostPortExample.MEM, 4 * depth)
    read_cycles = (get_sim_time(unit="ns") - start) / 10 / depth
    dut._log.info("throughput: %.2f cycles per write, %.2f cycles per read", write_cycles,
                  read_cycles)


async def drive_case(driver, case):
    """Load and run a program case through ``driver``; return what the host observes."""
    await driver.load_program(case.program)
    await driver.load_routes(dist=case.dist_routes, red=case.red_routes)
    for region, row, values in case.init:
        await driver.write_rows(region, row, values)
    status, counters, error = await driver.run(seed=case.seed)
    results = [await driver.read_rows(region, row, len(values))
               for region, row, values in case.expect]
    if error is not None:
        await driver.clear()
    return {"status": status, "counters": counters, "error": error, "results": results}


def check_case(observed, case):
    """Compare what the host observed with the case's own (numpy) expectations."""
    assert observed["status"].done and not observed["status"].busy, case.name
    assert observed["counters"]["cycles"] == case.cycles, (case.name, observed["counters"])
    assert observed["counters"]["macs"] == case.macs, (case.name, observed["counters"])
    if case.cause.value:
        assert observed["error"] == (case.cause, case.err_pc), (case.name, observed["error"])
    else:
        assert observed["error"] is None, (case.name, observed["error"])
    for got, (region, row, values) in zip(observed["results"], case.expect):
        np.testing.assert_array_equal(got, values, err_msg=f"{case.name}: region {region}")


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key == "results":
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y)
        else:
            assert a[key] == b[key], (key, a[key], b[key])


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def driver_matches_model(dut):
    """The same driver script on the RTL (AXI with back-pressure) and on the model."""
    p = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(p["config"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    rtl_backend = RTLBackend(dut, pause=p["pause"], seed=p["seed"])
    await reset(dut)
    rtl = await Driver.connect(rtl_backend)
    assert rtl.config == config
    model = run_sync(Driver.connect(ModelBackend(config)))
    for k, name in enumerate(p["cases"]):
        case = build(name, config, p["seed"] + k)
        start = get_sim_time(unit="ns")
        got = await drive_case(rtl, case)
        dut._log.info("%s through the driver: %d cycles of bus traffic, counters %s", name,
                      (get_sim_time(unit="ns") - start) // 10, got["counters"])
        want = run_sync(drive_case(model, case))
        _same(got, want)
        check_case(got, case)
    # Rejected accesses raise on both backends alike.
    beyond = 4 * config.words
    for driver in (rtl, model):
        try:
            await driver.backend.read32(0x4000000 + beyond)
        except HostBusError as e:
            assert e.address == 0x4000000 + beyond and not e.write
        else:
            raise AssertionError("an access beyond the scratchpad must fail")
