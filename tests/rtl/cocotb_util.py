"""Shared pieces of the cocotb benches."""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

__all__ = ["reset", "start_driver"]


async def reset(dut, *, cycles=3):
    """Hold ``dut.rst`` for ``cycles`` rising edges of ``dut.clk``, release it, wait one more edge."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def start_driver(dut, *, pause):
    """Start the clock of an accelerator system, reset it and return ``(params, config, driver)``:
    the bench's ``FETTA_PARAMS``, its configuration and a host driver over cocotbext-axi with
    random pauses (probability ``pause``) seeded by ``params["seed"]``."""
    from fetta.hw.config import AcceleratorConfig
    from fetta.sim.driver import Driver, RTLBackend
    params = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(params["config"])
    dut._log.info(f"FETTA_SEED={params['seed']}")
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    backend = RTLBackend(dut, pause=pause, seed=params["seed"])
    await reset(dut)
    return params, config, Driver(backend, config)
