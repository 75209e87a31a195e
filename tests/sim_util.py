"""Helpers for Amaranth-simulator tests."""

from amaranth.sim import Simulator


def run_testbench(dut, bench, *, clock=True, vcd=None):
    """Run the async testbench ``bench(ctx)`` on ``dut`` (with a 1 MHz sync clock unless combinational)."""
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
