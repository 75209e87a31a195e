"""cocotb bench: compiled training steps on the accelerator system's Verilog.

The host is :class:`fetta.sim.driver.Driver` over :class:`RTLBackend` (cocotbext-axi's AXI4-Lite
master with random pauses). ``FETTA_PARAMS`` holds ``jobs`` (from :func:`fetta.sim.run.rtl_job`):
per job the program image and route entries, and per tile of tokens the rows to write and the
row ranges to read back. For every tile the bench writes the inputs, runs the image to HALT and
reads the tensors; it records rows, counters, error and the saturation flag in the ``results``
JSON file. The comparison with numpy is done by the caller (:func:`fetta.sim.run.run_training`).
"""

import json

import cocotb
from cocotb_util import start_driver



@cocotb.test()
async def training_steps(dut):
    p, config, driver = await start_driver(dut, pause=0.1)
    results = []
    for job in p["jobs"]:
        await driver.load_program(job["words"])
        await driver.load_routes(dist={int(k): v for k, v in job["dist"].items()},
                                 red={int(k): v for k, v in job["red"].items()})
        tiles = []
        for tile in job["tiles"]:
            for region, base, rows in tile["writes"]:
                await driver.write_rows(region, base, rows)
            status, counters, error = await driver.run()
            rows = []
            for region, base, count in tile["reads"]:
                rows.append((await driver.read_rows(region, base, count)).tolist())
            tiles.append({"rows": rows, "counters": counters, "qsat": status.qsat,
                          "error": None if error is None else f"{error[0].name} at {error[1]}"})
            if error is not None:
                await driver.clear()
        results.append({"tiles": tiles})
    with open(p["results"], "w") as f:
        json.dump(results, f)
