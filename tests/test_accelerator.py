import contextlib
import dataclasses
import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from fetta.hw import isa
from fetta.hw.accelerator import Accelerator, AcceleratorSystem, Timing
from fetta.hw.ce import ce_model
from fetta.hw.ce_array import CEArray
from fetta.hw.config import AcceleratorConfig
from fetta.hw.isa import Cause
from fetta.hw.scratchpad import Scratchpad
from fetta.sim.model import Machine
from fetta.sim.rtl import RTLBuild

from accelerator_programs import (build, load_case, load_model, random_case, read_rows,
                                  run_and_check, run_and_compare, start_and_wait)
from sim_util import run_testbench

SMALL = AcceleratorConfig(lanes=4, acc_width=16, depth=32, prog_depth=32, dist_routes=8, red_routes=4)


@contextlib.contextmanager
def rejected():
    """Expect a constructor to raise; collect the half-built component without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        yield
        gc.collect()


class SimBus:
    """The host bus driven from an Amaranth testbench (two cycles per access)."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus
        self.errors = 0

    async def _access(self, address, *, write, value=0, mask=0xF):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.addr, address >> 2)
        ctx.set(bus.w_data, value)
        ctx.set(bus.w_mask, mask)
        ctx.set(bus.w_en if write else bus.r_en, 1)
        for _ in range(8):
            await ctx.tick()
            if ctx.get(bus.ack):
                break
        else:
            raise AssertionError("no ack")
        data, err = ctx.get(bus.r_data), ctx.get(bus.err)
        ctx.set(bus.w_en, 0)
        ctx.set(bus.r_en, 0)
        await ctx.tick()
        self.errors += err
        return data, err

    async def read(self, address):
        return (await self._access(address, write=False))[0]

    async def write(self, address, value):
        await self._access(address, write=True, value=value)


def test_rtl_runs_every_case_like_the_model(seed):
    """Every hand-written program, one after the other in one simulation (CLEAR after each error),
    against numpy and the model: results, status, cause, counters."""
    dut = Accelerator(SMALL)
    machine = Machine(SMALL)
    names = ["copy_relayout", "illegal_opcode", "matmul_grouped", "saturation", "batched_transposed",
             "address_range", "copy_relayout"]

    async def bench(ctx):
        bus = SimBus(ctx, dut.host)
        for k, name in enumerate(names):
            case = build(name, SMALL, seed + k)
            await load_case(bus, SMALL, case)
            load_model(machine, case)
            got = await run_and_check(bus, SMALL, case, machine)
            if got["status"] & 4:
                # Refused while ERROR: START does nothing.
                await bus.write(isa.CSR["CTRL"][0], 1)
                assert await bus.read(isa.CSR["STATUS"][0]) & 0b111 == 0b110
                await bus.write(isa.CSR["CTRL"][0], 2)
                machine.clear()
                assert await bus.read(isa.CSR["STATUS"][0]) & 0b110 == 0
                assert await bus.read(isa.CSR["CAUSE"][0]) == 0
        # The whole scratchpad agrees with the model's.
        for region in range(SMALL.regions):
            rows = await read_rows(bus, SMALL, region, 0, SMALL.depth)
            np.testing.assert_array_equal(rows, machine.scratchpad[region], err_msg=f"region {region}")
        assert bus.errors == 0

    run_testbench(dut, bench)


# 16-bit operands with 48-bit accumulators, the default for W = 16.
SMALL16 = AcceleratorConfig(lanes=4, width=16, depth=32, prog_depth=32, dist_routes=8, red_routes=4)


@pytest.mark.parametrize("config", [SMALL, SMALL16], ids=["w8", "w16"])
def test_rtl_random_programs_like_the_model(config, seed):
    """Random loop nests, strides, regions, multicasts, reductions, masks and rounding."""
    rng = np.random.default_rng(seed)
    dut = Accelerator(config)
    machine = Machine(config)

    async def bench(ctx):
        bus = SimBus(ctx, dut.host)
        for _ in range(3):
            case = random_case(config, rng)
            await load_case(bus, config, case)
            load_model(machine, case)
            got = await run_and_compare(bus, config, case, machine)
            if got["status"] & 4:
                await bus.write(isa.CSR["CTRL"][0], 2)
                machine.clear()

    run_testbench(dut, bench)


def test_rtl_host_bus_errors_and_registers():
    dut = Accelerator(SMALL)
    t = Timing.from_config(SMALL)

    async def bench(ctx):
        bus = SimBus(ctx, dut.host)
        assert await bus.read(isa.CSR["ID"][0]) == isa.ID_VALUE
        assert await bus.read(isa.CSR["LANES"][0]) == SMALL.lanes
        assert await bus.read(isa.CSR["DIST_WORDS"][0]) == dut.datapath.dist_words
        # Read-only register, unmapped address, partial write, region beyond the last: err.
        for address, write in ((isa.CSR["LANES"][0], True), (0x800, False), (0x0FF0000, False),
                               (isa.WINDOWS["PROGRAM"][0] + 8 * SMALL.prog_depth, False),
                               (isa.WINDOWS["SCRATCHPAD"][0] + 4 * SMALL.words, False)):
            _, err = await bus._access(address, write=write, value=1)
            assert err, hex(address)
        _, err = await bus._access(isa.CSR["ENTRY"][0], write=True, value=3, mask=0b0011)
        assert err
        # Registers and memories read back what was written.
        await bus.write(isa.CSR["SEED"][0], 0xDEADBEEF)
        assert await bus.read(isa.CSR["SEED"][0]) == 0xDEADBEEF
        await bus.write(isa.WINDOWS["PROGRAM"][0] + 12, 0x12345678)
        assert await bus.read(isa.WINDOWS["PROGRAM"][0] + 12) == 0x12345678
        assert await bus.read(isa.WINDOWS["PROGRAM"][0] + 8) == 0
        red_base = isa.WINDOWS["RED_ROUTES"][0]
        await bus.write(red_base + 4 * (dut.datapath.red_words + 1), 0xCAFE)
        assert await bus.read(red_base + 4 * (dut.datapath.red_words + 1)) == 0xCAFE
        # A long program: while it runs, windows are refused and CSRs answer.
        program = isa.assemble("loop level=0 count=300 stride_a=0 stride_b=0\n"
                               "step levels=1 red=1\nhalt", SMALL)
        base = isa.WINDOWS["PROGRAM"][0]
        for i, w in enumerate(program):
            await bus.write(base + 8 * i, w & 0xFFFFFFFF)
            await bus.write(base + 8 * i + 4, w >> 32)
        await bus.write(isa.CSR["ENTRY"][0], 0)
        await bus.write(isa.CSR["CTRL"][0], 1)
        assert await bus.read(isa.CSR["STATUS"][0]) & 1
        _, err = await bus._access(isa.WINDOWS["SCRATCHPAD"][0], write=False)
        assert err
        got = await start_and_wait(bus)
        assert got["cause"] == 0
        assert got["cycles"] == 2 * t.instr + t.step_cycles(300)

    run_testbench(dut, bench)


def test_rtl_narrow_counters_wrap_like_the_model(seed):
    """16-bit counters wrap in the RTL as in the model (a STEP of more than 2**16 beats); route
    tables of a few entries (combinational reads) read back every word written, padding too."""
    from accelerator_programs import _identity_red
    from test_model import long_step_program
    config = AcceleratorConfig(lanes=4, acc_width=16, regions=3, depth=16, loop_levels=2,
                               prog_depth=16, dist_routes=2, red_routes=1, counter_width=16)
    dut = Accelerator(config)
    dp = dut.datapath
    program = long_step_program([300, 220])
    red = _identity_red(config, dp)
    machine = Machine(config)
    machine.load_program(program)
    machine.set_red_route(0, red)
    want = machine.run().counters
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        bus = SimBus(ctx, dut.host)
        for window, words in (("DIST_ROUTES", dp.dist_words * config.dist_routes),
                              ("RED_ROUTES", dp.red_words * config.red_routes)):
            base = isa.WINDOWS[window][0]
            values = [int(v) for v in rng.integers(0, 1 << 32, words)]
            for j, v in enumerate(values):
                await bus.write(base + 4 * j, v)
            assert [await bus.read(base + 4 * j) for j in range(words)] == values, window
        base = isa.WINDOWS["PROGRAM"][0]
        for i, w in enumerate(program):
            await bus.write(base + 8 * i, w & 0xFFFFFFFF)
            await bus.write(base + 8 * i + 4, w >> 32)
        for j in range(dp.red_words):
            await bus.write(isa.WINDOWS["RED_ROUTES"][0] + 4 * j, (red >> 32 * j) & 0xFFFFFFFF)
        await bus.write(isa.CSR["CTRL"][0], 1)
        while not await bus.read(isa.CSR["STATUS"][0]) & 2:
            for _ in range(1000):
                await ctx.tick()
        got = {}
        for name in ("CYCLES", "BUSY", "MACS", "STALLS"):
            assert await bus.read(isa.CSR[f"{name}_HI"][0]) == 0
            got[name.lower()] = await bus.read(isa.CSR[f"{name}_LO"][0])
        assert got == dataclasses.asdict(want)
        assert bus.errors == 0

    assert want.cycles < Timing.from_config(config).step_cycles(300 * 220)   # it wrapped
    run_testbench(dut, bench)


def one_route(case):
    """``case`` with distribution entry 0 for B as for A (a configuration of one entry)."""
    program = []
    for word in case.program:
        opcode, fields = isa.decode(word)
        if opcode == isa.Opcode.STEP:
            word = isa.encode(opcode, **{**fields, "route_b": fields["route_a"]})
        program.append(word)
    return dataclasses.replace(case, program=program,
                               dist_routes={0: case.dist_routes[0]})


def test_rtl_board_configuration_like_the_model(seed):
    """The iCEBreaker's reduced configuration (one loop level, a register every third
    distribution stage, route tables of one entry, 16-bit counters): steps out of the region at
    either end, and random one-step programs, against the model."""
    from fetta.boards.platforms import ICEBREAKER_CONFIG
    config = AcceleratorConfig(**ICEBREAKER_CONFIG)
    rng = np.random.default_rng(seed)
    dut = Accelerator(config)
    machine = Machine(config)
    above = build("address_range", config, seed)
    # The first A row lies one before the region: a negative extent from base 2.
    below = dataclasses.replace(above, name="below_region", program=isa.assemble(
        "base region_a=0 region_b=1 region_c=2 base_a=2 base_b=0 base_c=0\n"
        "loop level=0 count=4 stride_a=-1 stride_b=1 stride_c=1\n"
        "step levels=1 red=0 route_a=0 route_b=0 route_c=0\nhalt", config), expect=[])
    cases = [above, below] + [one_route(random_case(dataclasses.replace(config, dist_routes=2),
                                                    rng, steps=1)) for _ in range(4)]

    async def bench(ctx):
        bus = SimBus(ctx, dut.host)
        for case in cases:
            await load_case(bus, config, case)
            load_model(machine, case)
            if case.name == "random":
                await run_and_compare(bus, config, case, machine)
            else:
                got = await run_and_check(bus, config, case, machine)
                assert got["cause"] == Cause.ADDRESS.value
            # CLEAR both: the error and the sticky QSAT flag.
            await bus.write(isa.CSR["CTRL"][0], 2)
            machine.clear()

    run_testbench(dut, bench)


def test_scratchpad_regions_and_masks(seed):
    rng = np.random.default_rng(seed)
    dut = Scratchpad(regions=3, lanes=4, depth=8, width=8)
    mem = np.zeros((3, 8, 4), dtype=np.int64)

    async def bench(ctx):
        # A read shows `latency` cycles after its address, as the rows were before that cycle's
        # write; reads and writes go back to back.
        pending = []
        for k in range(200 + dut.latency - 1):
            region, addr, mask = int(rng.integers(3)), int(rng.integers(8)), int(rng.integers(16))
            row = rng.integers(0, 256, 4)
            ra, rb = rng.choice(3, 2, replace=False)
            aa, ab = int(rng.integers(8)), int(rng.integers(8))
            ctx.set(dut.write.region, region)
            ctx.set(dut.write.addr, addr)
            ctx.set(dut.write.data, [int(v) for v in row])
            ctx.set(dut.write.mask, mask)
            ctx.set(dut.write.en, 1)
            ctx.set(dut.read_a.region, int(ra))
            ctx.set(dut.read_a.addr, aa)
            ctx.set(dut.read_b.region, int(rb))
            ctx.set(dut.read_b.addr, ab)
            pending.append((mem[ra, aa].copy(), mem[rb, ab].copy()))
            await ctx.tick()
            for l in range(4):
                if mask >> l & 1:
                    mem[region, addr, l] = row[l]
            if len(pending) == dut.latency:
                want_a, want_b = pending.pop(0)
                assert list(ctx.get(dut.read_a.data)) == list(want_a), k
                assert list(ctx.get(dut.read_b.data)) == list(want_b), k

    run_testbench(dut, bench)


def test_ce_array_matches_ce_model(seed):
    rng = np.random.default_rng(seed)
    lanes, n = 4, 120
    a = rng.integers(-128, 128, (n, lanes))
    b = rng.integers(-128, 128, (n, lanes))
    a[40:60] = b[40:60] = -128
    first = rng.random(n) < 0.1
    first[0] = True
    dut = CEArray(lanes=lanes, width=8, acc_width=17)
    want = [ce_model(a[:, l], b[:, l], first, acc_width=17) for l in range(lanes)]

    async def bench(ctx):
        # Back to back: after the tick of beat k the accumulators show beat k - latency + 1.
        for k in range(n + dut.latency - 1):
            if k < n:
                ctx.set(dut.i.payload, {"a": [int(x) for x in a[k]], "b": [int(x) for x in b[k]],
                                        "first": int(first[k])})
            ctx.set(dut.i.valid, k < n)
            await ctx.tick()
            j = k - dut.latency + 1
            if j >= 0:
                assert [ctx.get(dut.acc[l]) for l in range(lanes)] == [want[l][0][j] for l in range(lanes)]
                assert ctx.get(dut.overflow) == any(want[l][1][j] for l in range(lanes))

    run_testbench(dut, bench)
    assert any(want[l][1][-1] for l in range(lanes)), "the stimulus must saturate some lane"


@pytest.mark.parametrize("kwargs,message", [
    ({"regions": 9, "lanes": 4, "depth": 8, "width": 8}, "Region count is not valid for a scratchpad: 9"),
    ({"regions": 3, "lanes": 4, "depth": 6, "width": 8}, "Depth is not valid for a scratchpad: 6"),
])
def test_scratchpad_rejects_bad_parameters(kwargs, message):
    with rejected(), pytest.raises(ValueError, match=message):
        Scratchpad(**kwargs)


def test_ce_array_rejects_bad_parameters():
    with rejected(), pytest.raises(ValueError, match="Lane count must be a positive integer, not 0"):
        CEArray(lanes=0, width=8, acc_width=16)
    with rejected(), pytest.raises(ValueError, match="at least 2 \\* width = 16, not 12"):
        CEArray(lanes=4, width=8, acc_width=12)


def test_accelerator_rejects_bad_config():
    with rejected(), pytest.raises(TypeError, match="config must be an AcceleratorConfig, not 4"):
        Accelerator(4)


@pytest.mark.rtl
@pytest.mark.parametrize("config", [
    AcceleratorConfig(),
    AcceleratorConfig(lanes=8, width=16, acc_width=32, depth=128),
], ids=["default", "w16"])
def test_accelerator_in_verilator(config, seed):
    """A configuration's Verilog behind its AXI4-Lite port (the default one, and 16-bit operands),
    in Verilator through cocotb with cocotbext-axi, runs every program like the model (one build,
    all cases in one run)."""
    build = RTLBuild(name="accelerator_system", config=config.to_dict(),
                     elaborate=lambda: AcceleratorSystem(config))
    cases = ["matmul_grouped", "saturation", "batched_transposed", "illegal_opcode",
             "copy_relayout", "address_range", "matmul_grouped"]
    assert build.test("bench_accelerator", params={"config": config.to_dict(), "seed": seed,
                                                   "cases": cases, "random": 6}) == 1


def test_write_verilog_and_sidecar(tmp_path):
    import json
    from fetta.hw.accelerator import write_verilog
    config = AcceleratorConfig(lanes=4, depth=16, prog_depth=16, dist_routes=4, red_routes=4)
    verilog_path, json_path = write_verilog(config, tmp_path, name="acc")
    text = verilog_path.read_text()
    assert "module acc(" in text and "axi__awaddr" in text
    sidecar = json.loads(json_path.read_text())
    assert AcceleratorConfig.from_dict(sidecar["config"]) == config
    assert sidecar["ports"]["axi__awaddr"] == {"width": 27, "direction": "input"}
    assert sidecar["ports"]["axi__rdata"] == {"width": 32, "direction": "output"}
    assert sidecar["timing"]["drain"] == Timing.from_config(config).drain


def test_rtl_rejects_malformed_instructions_like_the_model():
    """Every field rule of docs/isa.md, and a fetch past program memory, in the RTL and the model:
    the same cause, error address and cycle count; CLEAR re-arms the machine each time."""
    c = SMALL
    Op = isa.Opcode
    words = [
        isa.encode(Op.LOOP, level=0, count=0),
        isa.encode(Op.LOOP, level=c.loop_levels, count=1),
        isa.encode(Op.BASE, region_a=1, region_b=1, region_c=2),
        isa.encode(Op.BASE, region_a=0, region_b=1, region_c=c.regions),
        isa.encode(Op.STEP, levels=0),
        isa.encode(Op.STEP, levels=c.loop_levels + 1),
        isa.encode(Op.STEP, levels=1, red=2),
        isa.encode(Op.STEP, levels=1, route_a=c.dist_routes),
        isa.encode(Op.STEP, levels=1, route_b=c.dist_routes),
        isa.encode(Op.STEP, levels=1, route_c=c.red_routes),
        isa.encode(Op.STEP, levels=1, shift=c.sum_width),
        0x7,
    ]
    dut = Accelerator(c)

    async def bench(ctx):
        bus = SimBus(ctx, dut.host)
        base = isa.WINDOWS["PROGRAM"][0]
        machine = Machine(c)
        for k, word in enumerate(words):
            at = k % 4
            program = isa.assemble("nop\n" * at) + [word]
            machine.reset()
            machine.load_program([0] * c.prog_depth)
            machine.load_program(program)
            for i in range(c.prog_depth):
                w = program[i] if i < len(program) else 0
                await bus.write(base + 8 * i, w & 0xFFFFFFFF)
                await bus.write(base + 8 * i + 4, w >> 32)
            result = machine.run()
            got = await start_and_wait(bus)
            assert result.cause == Cause.ILLEGAL and result.err_pc == at, hex(word)
            assert (got["cause"], got["err_pc"], got["cycles"]) == \
                (result.cause.value, result.err_pc, result.counters.cycles), hex(word)
            await bus.write(isa.CSR["CTRL"][0], 2)
        # No HALT: NOPs (zero words) up to the end of program memory, from ENTRY.
        machine.reset()
        machine.load_program([0] * c.prog_depth)
        await bus.write(isa.CSR["ENTRY"][0], c.prog_depth - 3)
        got = await start_and_wait(bus)
        result = machine.run(entry=c.prog_depth - 3)
        assert result.cause == Cause.ADDRESS and result.err_pc == c.prog_depth
        assert (got["cause"], got["err_pc"], got["cycles"]) == \
            (result.cause.value, result.err_pc, result.counters.cycles)

    run_testbench(dut, bench)
