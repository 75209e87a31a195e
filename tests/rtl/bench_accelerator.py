"""cocotb bench: the accelerator system's Verilog runs the hand-written programs like the model.

The host is cocotbext-axi's AXI4-Lite master on the system's ``axi`` port, with random pauses on
every channel; every case is checked against numpy (the case's expectations) and the model
(results, status, cause and all four counters).
"""

import json
import os
import sys
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb_util import reset
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerator_programs import (build, load_case, load_model, random_case,  # noqa: E402
                                  read_rows, run_and_check, run_and_compare)
from fetta.hw import isa  # noqa: E402
from fetta.hw.config import AcceleratorConfig  # noqa: E402
from fetta.sim.model import Machine  # noqa: E402


class HostBus:
    """Word reads and writes through cocotbext-axi's AXI4-Lite master; counts SLVERR responses."""

    def __init__(self, dut, rng, pause=0.2):
        self.axi = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "axi", bus_separator="__"),
                                 dut.clk, dut.rst)
        for channel in (self.axi.write_if.aw_channel, self.axi.write_if.w_channel,
                        self.axi.write_if.b_channel, self.axi.read_if.ar_channel,
                        self.axi.read_if.r_channel):
            channel.set_pause_generator(_pauses(np.random.default_rng(rng.integers(1 << 32)), pause))
        self.errors = 0

    async def read(self, address):
        response = await self.axi.read(address, 4)
        self.errors += response.resp != AxiResp.OKAY
        return int.from_bytes(response.data, "little")

    async def write(self, address, value):
        response = await self.axi.write(address, (value & 0xFFFF_FFFF).to_bytes(4, "little"))
        self.errors += response.resp != AxiResp.OKAY


def _pauses(rng, p):
    while True:
        yield bool(rng.random() < p)


@cocotb.test()
async def programs_match_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(p["config"])
    seed = p["seed"]
    dut._log.info(f"FETTA_SEED={seed}")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    rng = np.random.default_rng(seed)
    bus = HostBus(dut, rng)
    await reset(dut)
    assert await bus.read(isa.CSR["ID"][0]) == isa.ID_VALUE
    assert await bus.read(isa.CSR["LANES"][0]) == config.lanes
    machine = Machine(config)
    for k, name in enumerate(p["cases"]):
        case = build(name, config, seed + k)
        await load_case(bus, config, case)
        load_model(machine, case)
        got = await run_and_check(bus, config, case, machine)
        dut._log.info(f"{name}: {got}")
        if got["status"] & 4:
            await bus.write(isa.CSR["CTRL"][0], 2)
            machine.clear()
            assert await bus.read(isa.CSR["STATUS"][0]) & 0b110 == 0
    # Random programs: loop nests, strides, regions, multicasts, reductions, masks, rounding.
    for _ in range(p["random"]):
        case = random_case(config, rng, window=8)
        await load_case(bus, config, case)
        load_model(machine, case)
        got = await run_and_compare(bus, config, case, machine, window=8)
        if got["status"] & 4:
            await bus.write(isa.CSR["CTRL"][0], 2)
            machine.clear()
    # A sample of rows anywhere in the scratchpad agrees with the model's.
    for _ in range(12):
        region, row = int(rng.integers(config.regions)), int(rng.integers(config.depth - 2))
        rows = await read_rows(bus, config, region, row, 2)
        np.testing.assert_array_equal(rows, machine.scratchpad[region, row:row + 2])
    assert bus.errors == 0
    # Outside the windows, the host port answers SLVERR.
    await bus.read(isa.WINDOWS["SCRATCHPAD"][0] + 4 * config.words)
    assert bus.errors == 1
