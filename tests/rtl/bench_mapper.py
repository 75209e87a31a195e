"""cocotb bench: the mapper's programs on the accelerator system's Verilog.

The host is :class:`fetta.sim.driver.Driver` over :class:`RTLBackend` (cocotbext-axi's AXI4-Lite
master with random pauses). Each case of ``tests/test_mapper.py:rtl_cases`` writes its operands
where their layouts say, loads the program and its route entries, runs, and must give numpy's
result with exactly the cycles and MACs the mapper predicted.
"""

import sys
from pathlib import Path

import cocotb
import numpy as np
from cocotb_util import start_driver


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from test_mapper import rtl_cases  # noqa: E402


@cocotb.test()
async def mapper_programs_match_prediction(dut):
    p, config, driver = await start_driver(dut, pause=0.2)
    for name, program, inputs, out, want in rtl_cases(config, p["seed"]):
        for layout, array in inputs:
            await driver.write_tensor(array, layout)
        await driver.load_program(program.image())
        await driver.load_routes(dist=dict(program.dist_routes), red=dict(program.red_routes))
        status, counters, error = await driver.run()
        dut._log.info(f"{name}: {counters}, predicted {program.cycles + program.halt_cycles}")
        assert error is None, (name, error)
        got = await driver.read_tensor(out)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert counters["cycles"] == program.cycles + program.halt_cycles, (name, counters)
        assert counters["macs"] == program.issued_macs, (name, counters)
