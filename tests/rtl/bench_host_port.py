"""cocotb bench: the host port example's Verilog under cocotbext-axi's AXI4-Lite master.

Random back-pressure and idle cycles on all five channels; every response and every read value is
compared with :class:`HostPortExampleModel`.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from fetta.hw.host_port import AXI4LiteResponse, HostPortExample, HostPortExampleModel


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
