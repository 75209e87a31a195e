"""cocotb bench: the accelerator's Verilog runs the hand-written programs like the model does.

Drives the accelerator's host bus directly; every case is checked against numpy (the case's
expectations) and the model (results, status, cause and all four counters).
"""

import json
import os
import sys
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerator_programs import build, load_case, read_rows, run_and_check  # noqa: E402
from fetta.hw import isa  # noqa: E402
from fetta.hw.config import AcceleratorConfig  # noqa: E402
from fetta.sim.model import Machine  # noqa: E402


class HostBus:
    """The accelerator's host bus (handshaked register bus), driven by the testbench."""

    def __init__(self, dut):
        self.dut = dut
        self.errors = 0

    async def _access(self, address, *, write, value=0):
        d = self.dut
        await FallingEdge(d.clk)
        d.host__addr.value = address >> 2
        d.host__w_data.value = value & 0xFFFF_FFFF
        d.host__w_mask.value = 0xF
        (d.host__w_en if write else d.host__r_en).value = 1
        for _ in range(16):
            await RisingEdge(d.clk)
            await ReadOnly()
            if int(d.host__ack.value):
                data, err = int(d.host__r_data.value), int(d.host__err.value)
                break
        else:
            raise AssertionError(f"no ack for address {address:#x}")
        await FallingEdge(d.clk)
        d.host__w_en.value = 0
        d.host__r_en.value = 0
        self.errors += err
        return data

    async def read(self, address):
        return await self._access(address, write=False)

    async def write(self, address, value):
        await self._access(address, write=True, value=value)


def _load_model(machine, case):
    machine.load_program(case.program)
    for entry, bits in case.dist_routes.items():
        machine.set_dist_route(entry, bits)
    for entry, bits in case.red_routes.items():
        machine.set_red_route(entry, bits)
    for region, row, values in case.init:
        machine.write_rows(region, row, values)
    machine.seed = case.seed


@cocotb.test()
async def programs_match_model(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(p["config"])
    seed = p["seed"]
    dut._log.info(f"FETTA_SEED={seed}")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.host__r_en.value = 0
    dut.host__w_en.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    bus = HostBus(dut)
    assert await bus.read(isa.CSR["ID"][0]) == isa.ID_VALUE
    assert await bus.read(isa.CSR["LANES"][0]) == config.lanes
    machine = Machine(config)
    for k, name in enumerate(p["cases"]):
        case = build(name, config, seed + k)
        await load_case(bus, config, case)
        _load_model(machine, case)
        got = await run_and_check(bus, config, case, machine)
        dut._log.info(f"{name}: {got}")
        if got["status"] & 4:
            await bus.write(isa.CSR["CTRL"][0], 2)
            machine.clear()
            assert await bus.read(isa.CSR["STATUS"][0]) & 0b110 == 0
    # A sample of rows anywhere in the scratchpad agrees with the model's.
    rng = np.random.default_rng(seed)
    for _ in range(12):
        region, row = int(rng.integers(config.regions)), int(rng.integers(config.depth - 2))
        rows = await read_rows(bus, config, region, row, 2)
        np.testing.assert_array_equal(rows, machine.scratchpad[region, row:row + 2])
    assert bus.errors == 0
