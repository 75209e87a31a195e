"""cocotb bench: the host link (boards/host_link.py) against the Verilog of a board's LinkTop.

The link's blocking calls run in a thread (``cocotb.task.bridge``); its serial port is
:class:`SimSerial`, whose bytes a cocotb UART driver puts on the ``rx`` pin and a UART monitor
takes off the ``tx`` pin, bit by bit at the board's divisor.
"""

import collections
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from fetta.boards.host_link import LinkError, UARTLink
from fetta.hw.host_port import AXI4LiteResponse, HostPortExample, HostPortExampleModel
from fetta.hw.uart import uart_frame
from fetta.hw.uart_bridge import BridgeCommand, BridgeStatus


class SimSerial:
    """A pyserial-like port whose far end is the simulated board.

    ``read(n)`` waits (in simulated time) until ``n`` bytes have arrived or ``timeout`` cycles
    pass without a new byte, like pyserial's inter-byte behaviour with a timeout.
    """

    def __init__(self, dut, *, divisor, timeout):
        self.dut = dut
        self.divisor = divisor
        self.timeout = timeout
        self.to_board = collections.deque()
        self.from_board = collections.deque()
        self.sent = 0
        self.busy = False

    def write(self, data):
        self.to_board.extend(bytes(data))
        return len(data)

    def read(self, n):
        return resume(self._read)(n)

    def flush(self):
        resume(self._flush)()

    async def _flush(self):
        while self.to_board or self.busy:
            await ClockCycles(self.dut.clk, self.divisor)

    async def _read(self, n):
        waited = 0
        while len(self.from_board) < n and waited < self.timeout:
            before = len(self.from_board)
            await ClockCycles(self.dut.clk, self.divisor)
            waited = 0 if len(self.from_board) != before else waited + self.divisor
        return bytes(self.from_board.popleft() for _ in range(min(n, len(self.from_board))))

    async def drive(self):
        """Put queued bytes on the board's ``rx`` pin, back to back, one frame each."""
        self.dut.rx.value = 1
        while True:
            if not self.to_board:
                await ClockCycles(self.dut.clk, self.divisor)
                continue
            self.busy = True
            for level in uart_frame(self.to_board.popleft()):
                self.dut.rx.value = level
                await ClockCycles(self.dut.clk, self.divisor)
            self.busy = False
            self.sent += 1

    async def monitor(self):
        """Decode frames on the board's ``tx`` pin, sampling each bit in its middle."""
        while True:
            await FallingEdge(self.dut.tx)
            await ClockCycles(self.dut.clk, self.divisor // 2)
            assert int(self.dut.tx.value) == 0, "glitch on tx"
            byte = 0
            for i in range(8):
                await ClockCycles(self.dut.clk, self.divisor)
                byte |= int(self.dut.tx.value) << i
            await ClockCycles(self.dut.clk, self.divisor)
            assert int(self.dut.tx.value) == 1, "tx stop bit low"
            self.from_board.append(byte)


async def _start(dut, p):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.rx.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    port = SimSerial(dut, divisor=p["divisor"], timeout=4 * p["timeout"])
    cocotb.start_soon(port.drive())
    cocotb.start_soon(port.monitor())
    return port


def _expect_error(call, flag):
    try:
        call()
    except LinkError as e:
        assert e.status is not None and e.status & flag, (e, flag)
        return e
    raise AssertionError(f"expected a LinkError with {flag!r}")


@cocotb.test()
async def host_link_end_to_end(dut):
    p = json.loads(os.environ["FETTA_PARAMS"])
    rng = np.random.default_rng(p["seed"])
    port = await _start(dut, p)
    depth = p["depth"]
    mem = HostPortExample.MEM
    model = HostPortExampleModel(depth=depth)
    start = get_sim_time("ns")

    def host():
        link = UARTLink(port)
        info = link.ident()
        assert info == {"version": 1, "addr_width": HostPortExample.ADDR_WIDTH}, info

        # Single registers.
        assert link.read32(HostPortExample.ID_REG) == HostPortExample.ID
        link.write32(HostPortExample.SCRATCH, 0x12345678)
        assert link.read32(HostPortExample.SCRATCH) == 0x12345678
        model.write(HostPortExample.SCRATCH, 0x12345678)

        # The whole memory window as one burst each way.
        words = rng.integers(0, 1 << 32, depth, dtype=np.uint64)
        link.write_block(mem, words)
        for k, w in enumerate(words):
            model.write(mem + 4 * k, int(w))
        got = link.read_block(mem, depth)
        assert np.array_equal(got, words.astype(np.uint32)), (got, words)

        # Errors are reported, and the link carries on after each.
        _expect_error(lambda: link.write32(HostPortExample.ID_REG, 1), BridgeStatus.SLVERR)
        model.write(HostPortExample.ID_REG, 1)
        e = _expect_error(lambda: link.read_block(mem + 4 * depth - 8, 4), BridgeStatus.SLVERR)
        assert np.array_equal(e.data[:2], words[-2:].astype(np.uint32))
        for k in range(4):
            model.read(mem + 4 * depth - 8 + 4 * k)
        _expect_error(lambda: link.read32(1 << HostPortExample.ADDR_WIDTH), BridgeStatus.RANGE)
        port.write(bytes([0x00, BridgeCommand.READ.value]))
        _expect_error(lambda: link.read32(0), BridgeStatus.BAD_COMMAND)
        assert link.ident()["addr_width"] == HostPortExample.ADDR_WIDTH

        # Random accesses against the host port's model, responses included.
        for _ in range(p["accesses"]):
            address = int(rng.choice([0, 4, 8, 12, 0x400, mem + 4 * int(rng.integers(0, depth))]))
            count = int(rng.integers(1, 4))
            if rng.random() < 0.5:
                values = [int(x) for x in rng.integers(0, 1 << 32, count, dtype=np.uint64)]
                resps = [model.write(address + 4 * k, v) for k, v in enumerate(values)]
                call = lambda: link.write_block(address, values)
                want = None
            else:
                answers = [model.read(address + 4 * k) for k in range(count)]
                resps = [r for _, r in answers]
                want = [d for d, _ in answers]
                call = lambda: link.read_block(address, count)
            failed = any(r != AXI4LiteResponse.OKAY for r in resps)
            if failed:
                e = _expect_error(call, BridgeStatus.SLVERR)
                if want is not None:
                    assert [int(x) for x in e.data] == want
            else:
                got = call()
                if want is not None:
                    assert [int(x) for x in got] == want
        # The sticky error flag and count agree with the model after all that.
        assert link.read32(HostPortExample.ERROR) == model.read(HostPortExample.ERROR)[0]
        return port.sent

    sent = await bridge(host)()
    cycles = (get_sim_time("ns") - start) / 10
    dut._log.info(f"{sent} bytes to the board in {cycles:.0f} cycles")


@cocotb.test()
async def host_link_to_accelerator(dut):
    """Registers and memory windows of the accelerator through the serial link."""
    from fetta.hw.config import AcceleratorConfig
    from fetta.hw.isa import CSR, HOST_ADDR_WIDTH, ID_VALUE, WINDOWS

    p = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(p["config"])
    rng = np.random.default_rng(p["seed"])
    port = await _start(dut, p)
    csr = lambda name: WINDOWS["CSR"][0] + CSR[name][0]

    def host():
        link = UARTLink(port)
        assert link.ident()["addr_width"] == HOST_ADDR_WIDTH + 2
        # The identification registers, read as one burst: they describe the configuration.
        names = ["ID", "LANES", "WIDTH", "ACC_WIDTH", "REGIONS", "DEPTH", "LOOP_LEVELS",
                 "PROG_DEPTH", "DIST_ROUTES", "RED_ROUTES"]
        got = link.read_block(csr("ID"), len(names)).tolist()
        want = [ID_VALUE, config.lanes, config.width, config.acc_width, config.regions,
                config.depth, config.loop_levels, config.prog_depth, config.dist_routes,
                config.red_routes]
        assert got == want, (got, want)
        link.write32(csr("SEED"), 0xC0FFEE01)
        assert link.read32(csr("SEED")) == 0xC0FFEE01
        _expect_error(lambda: link.write32(csr("ID"), 0), BridgeStatus.SLVERR)

        # A tensor of non-negative words into the scratchpad, one burst each way.
        n = config.lanes * min(config.depth, 16)
        base = WINDOWS["SCRATCHPAD"][0] + 4 * config.depth * config.lanes    # region 1
        values = rng.integers(0, 1 << (config.width - 1), n)
        link.write_block(base, values)
        assert link.read_block(base, n).tolist() == values.tolist()

        # Program memory holds 64-bit instructions as word pairs.
        prog = rng.integers(0, 1 << 32, 2 * 4, dtype=np.uint64)
        link.write_block(WINDOWS["PROGRAM"][0], prog)
        assert np.array_equal(link.read_block(WINDOWS["PROGRAM"][0], 8), prog)
        # Past the end of the scratchpad window: the host port answers SLVERR.
        end = WINDOWS["SCRATCHPAD"][0] + WINDOWS["SCRATCHPAD"][1]
        _expect_error(lambda: link.read_block(end - 4, 2), BridgeStatus.RANGE)
        _expect_error(lambda: link.read32(0x1000000), BridgeStatus.SLVERR)

    await bridge(host)()


@cocotb.test()
async def contraction_over_link(dut):
    """A compiled contraction through the host driver over the serial link equals numpy."""
    from fetta.hw.config import AcceleratorConfig
    from fetta.search.mapper import choose_layouts, map_contraction
    from fetta.sim.driver import Driver, LinkBackend, run_sync
    from fetta.sim.golden import requantize

    p = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(p["config"])
    rng = np.random.default_rng(p["seed"])
    port = await _start(dut, p)
    shift = 2
    a, b, c = choose_layouts(("ik", (4, 12)), ("kj", (12, 4)), ("ij", (4, 4)), config)
    program = map_contraction(a, b, c, config, shift=shift)
    # Operands of at most 48 in magnitude: sums of 12 products (at most 27648) stay within the
    # 16-bit accumulators of this configuration, so no seed saturates.
    A = rng.integers(-48, 48, (4, 12))
    B = rng.integers(-48, 48, (12, 4))
    exact = np.einsum("ik,kj->ij", A.astype(np.int64), B.astype(np.int64))
    want = requantize(exact, shift, config.width, acc_width=config.sum_width)[0]

    def host():
        driver = run_sync(Driver.connect(LinkBackend(UARTLink(port))))
        run_sync(driver.write_tensor(A, a))
        run_sync(driver.write_tensor(B, b))
        run_sync(driver.load_program(program.image()))
        run_sync(driver.load_routes(dist=dict(program.dist_routes), red=dict(program.red_routes)))
        _, counters, error = run_sync(driver.run())
        assert error is None, error
        got = run_sync(driver.read_tensor(c))
        np.testing.assert_array_equal(got, want)
        assert counters["cycles"] == program.cycles + program.halt_cycles, counters
        assert counters["macs"] == program.issued_macs, counters

    await bridge(host)()
