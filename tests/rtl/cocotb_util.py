"""Shared pieces of the cocotb benches."""

from cocotb.triggers import RisingEdge

__all__ = ["reset"]


async def reset(dut, *, cycles=3):
    """Hold ``dut.rst`` for ``cycles`` rising edges of ``dut.clk``, release it, wait one more edge."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
