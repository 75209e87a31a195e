"""Benchmarks of the generator, the model, the RTL simulation and the search: ``fetta bench``.

Sections (``--only`` selects some, by name):

* ``model``: model speed in MACs per second. Large pairwise contractions are mapped with
  :func:`fetta.search.mapper.choose_layouts` and :func:`~fetta.search.mapper.map_contraction` and
  run on :class:`fetta.sim.model.Machine`; one matrix product of more than 10**9 MACs runs as tiles
  that fit the scratchpad. Every result is compared bit for bit with numpy and every cycle count
  with the mapper's prediction.
* ``rtl``: RTL simulation speed in cycles per second. A mapped contraction of a few thousand
  cycles runs on the default configuration's Verilog in Verilator through cocotb, driven by
  :class:`fetta.sim.driver.Driver` over :class:`~fetta.sim.driver.RTLBackend`; the Verilator build
  is timed apart (or reported as reused).
* ``search``: stage 1 search time per network and the joint training step table.
* ``stage2``: the stage 2 gain per benchmark layer, from :mod:`fetta.sim.run` when it provides
  ``benchmark_stage2``.
* ``resources`` (opt-in): Yosys cell counts of the distribution network.
* ``fpga`` (opt-in): the ULX3S bitstream build report (LUTs, flip-flops, DSPs, BRAMs, Fmax).

Every section returns a JSON-able dict; ``--json FILE`` writes them all, with the machine and the
command line.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["SECTIONS", "DEFAULT_SECTIONS", "ModelCase", "model_cases", "run_model_case",
           "run_tiled_matmul", "bench_model", "bench_rtl", "bench_search", "bench_stage2",
           "bench_resources", "bench_fpga", "run_benchmarks", "register"]

#: Every section, in the order they run.
SECTIONS = ("model", "rtl", "search", "stage2", "resources", "fpga")
#: Sections run without ``--only`` (the slow, opt-in ones left out).
DEFAULT_SECTIONS = ("model", "rtl", "search", "stage2")


class ModelCase:
    """One pairwise contraction ``C = sum A * B`` for the model benchmark.

    Parameters
    ----------
    name : str
    a, b, c : (str, tuple of int)
        Index names and extents of A, B and C (as :func:`fetta.search.mapper.choose_layouts`).
    config : AcceleratorConfig
    shift : int
        Requantizer shift (large sums are scaled down rather than saturated).
    """

    def __init__(self, name, a, b, c, config, *, shift=0):
        self.name, self.a, self.b, self.c, self.config, self.shift = name, a, b, c, config, shift

    @property
    def expr(self):
        return f"{self.a[0]},{self.b[0]}->{self.c[0]}"

    @property
    def macs(self):
        sizes = {}
        for ix, sz in (self.a, self.b, self.c):
            sizes.update(zip(ix, sz))
        return int(np.prod(list(sizes.values()), dtype=object))


def _config(**kwargs):
    from fetta.hw.config import AcceleratorConfig
    return AcceleratorConfig(**kwargs)


def model_cases(quick=False):
    """The single contractions of the model benchmark (smaller ones with ``quick``)."""
    big = _config(lanes=32, depth=8192)
    default = _config()
    if quick:
        return [
            ModelCase("matmul 32x512x32", ("ik", (32, 512)), ("kj", (512, 32)), ("ij", (32, 32)),
                      default, shift=9),
            ModelCase("matmul 64x4096x64", ("ik", (64, 4096)), ("kj", (4096, 64)),
                      ("ij", (64, 64)), big, shift=12),
        ]
    return [
        ModelCase("matmul 32x512x32", ("ik", (32, 512)), ("kj", (512, 32)), ("ij", (32, 32)),
                  default, shift=9),
        ModelCase("matmul 64x4096x64", ("ik", (64, 4096)), ("kj", (4096, 64)), ("ij", (64, 64)),
                  big, shift=12),
        ModelCase("TT core Y[b,j,s] = X[b,i,r] G[r,i,j,s]", ("bir", (1024, 16, 8)),
                  ("rijs", (8, 16, 16, 8)), ("bjs", (1024, 16, 8)), big, shift=9),
        ModelCase("batched C[b,i,j] = A[b,i,k] B[b,k,j]", ("bik", (256, 16, 64)),
                  ("bkj", (256, 64, 16)), ("bij", (256, 16, 16)), big, shift=10),
        ModelCase("outer C[b,i,j] = A[b,i] B[b,j]", ("bi", (1024, 16)), ("bj", (1024, 16)),
                  ("bij", (1024, 16, 16)), big, shift=0),
    ]


def _random_operands(layouts, config, rng):
    return [rng.integers(config.word_min, config.word_max + 1, lay.shape) for lay in layouts]


def _golden(expr, A, B, shift, config):
    from fetta.sim.golden import requantize
    # Sums stay below 2**53 here, so the float product is exact and fast.
    exact = np.rint(np.einsum(expr, A.astype(np.float64), B.astype(np.float64),
                              optimize=True)).astype(np.int64)
    return requantize(exact, shift, config.width, acc_width=config.sum_width)[0]


def run_model_case(case, *, seed=0, check=True):
    """Map ``case``, run it on the model, check it; return a row of figures.

    Returns
    -------
    dict
        ``name``, ``lanes``, ``depth``, ``macs``, ``cycles`` (the model's ``CYCLES`` counter),
        ``utilization`` (``macs / (cycles * L)``), ``map_seconds``, ``run_seconds`` (the model's
        :meth:`~fetta.sim.model.Machine.run` only), ``macs_per_second`` (MACs / run seconds).

    Raises
    ------
    AssertionError
        If the model's result or cycle count differs from numpy or the mapper's prediction.
    """
    from fetta.search.mapper import choose_layouts, map_contraction
    from fetta.sim.model import Machine
    config = case.config
    start = time.perf_counter()
    la, lb, lc = choose_layouts(case.a, case.b, case.c, config)
    program = map_contraction(la, lb, lc, config, shift=case.shift)
    map_seconds = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    A, B = _random_operands((la, lb), config, rng)
    machine = Machine(config)
    machine.write_rows(la.region, la.base, la.pack(A))
    machine.write_rows(lb.region, lb.base, lb.pack(B))
    program.load(machine)
    start = time.perf_counter()
    result = machine.run()
    run_seconds = time.perf_counter() - start
    cycles = result.counters.cycles
    if check:
        got = lc.unpack(machine.read_rows(lc.region, lc.base, lc.rows_needed))
        want = _golden(case.expr, A, B, case.shift, config)
        if result.error or cycles != program.cycles + program.halt_cycles:
            raise AssertionError(f"{case.name}: the model ran {cycles} cycles (error "
                                 f"{result.error}), the mapper predicted "
                                 f"{program.cycles + program.halt_cycles}")
        if not np.array_equal(got, want):
            raise AssertionError(f"{case.name}: the model's result differs from numpy")
    return {"name": case.name, "lanes": config.lanes, "depth": config.depth, "macs": program.macs,
            "cycles": cycles, "utilization": program.macs / (cycles * config.lanes),
            "map_seconds": map_seconds, "run_seconds": run_seconds,
            "macs_per_second": program.macs / run_seconds, "checked": check}


def run_tiled_matmul(m, k, n, *, tile=(64, 64), config=None, shift=12, seed=0, check=True):
    """``C[m, n] = A[m, k] B[k, n]`` on the model as output tiles of ``tile`` rows and columns.

    One program (mapped once, as every tile has the same shape) runs per tile; the B tile stays
    in its region while the A tiles of its column pass. Operands are random signed words.

    Returns
    -------
    dict
        As :func:`run_model_case`, summed over the tiles, with ``tiles`` and ``total_seconds``
        (loading and reading back included).
    """
    from fetta.search.mapper import choose_layouts, map_contraction
    from fetta.sim.model import Machine
    config = _config(lanes=32, depth=8192) if config is None else config
    tm, tn = tile
    if m % tm or n % tn:
        raise ValueError(f"tile {tile!r} must divide the output {m}x{n}")
    begin = time.perf_counter()
    la, lb, lc = choose_layouts(("ik", (tm, k)), ("kj", (k, tn)), ("ij", (tm, tn)), config)
    program = map_contraction(la, lb, lc, config, shift=shift)
    map_seconds = time.perf_counter() - begin
    rng = np.random.default_rng(seed)
    A = rng.integers(config.word_min, config.word_max + 1, (m, k))
    B = rng.integers(config.word_min, config.word_max + 1, (k, n))
    C = np.zeros((m, n), dtype=np.int64)
    machine = Machine(config)
    program.load(machine)
    run_seconds, cycles = 0.0, 0
    for j in range(0, n, tn):
        machine.write_rows(lb.region, lb.base, lb.pack(B[:, j:j + tn]))
        for i in range(0, m, tm):
            machine.write_rows(la.region, la.base, la.pack(A[i:i + tm]))
            start = time.perf_counter()
            result = machine.run()
            run_seconds += time.perf_counter() - start
            if result.error or result.counters.cycles != program.cycles + program.halt_cycles:
                raise AssertionError(f"tile ({i}, {j}): the model ran {result.counters.cycles} "
                                     f"cycles (error {result.error}), the mapper predicted "
                                     f"{program.cycles + program.halt_cycles}")
            cycles += result.counters.cycles
            C[i:i + tm, j:j + tn] = lc.unpack(machine.read_rows(lc.region, lc.base, lc.rows_needed))
    total_seconds = time.perf_counter() - begin
    if check and not np.array_equal(C, _golden("ik,kj->ij", A, B, shift, config)):
        raise AssertionError(f"tiled matmul {m}x{k}x{n}: the model's result differs from numpy")
    macs = m * k * n
    tiles = (m // tm) * (n // tn)
    return {"name": f"matmul {m}x{k}x{n} as {tiles} tiles of {tm}x{k}x{tn}", "lanes": config.lanes,
            "depth": config.depth, "macs": macs, "cycles": cycles,
            "utilization": macs / (cycles * config.lanes), "map_seconds": map_seconds,
            "run_seconds": run_seconds, "macs_per_second": macs / run_seconds, "tiles": tiles,
            "total_seconds": total_seconds, "checked": check}


def bench_model(quick=False, *, out=None):
    """The ``model`` section: single contractions, then the tiled product of 2**30 MACs."""
    out = sys.stdout if out is None else out
    rows = [run_model_case(case) for case in model_cases(quick)]
    rows.append(run_tiled_matmul(512, 4096, 512))
    print(f"{'contraction':<46} {'L':>3} {'MACs':>14} {'cycles':>12} {'util.':>6} "
          f"{'run s':>7} {'MACs/s':>10}", file=out)
    for r in rows:
        print(f"{r['name']:<46} {r['lanes']:>3} {r['macs']:>14,} {r['cycles']:>12,} "
              f"{r['utilization']:>6.1%} {r['run_seconds']:>7.2f} {r['macs_per_second']:>10.3g}",
              file=out)
    return {"rows": rows}


# RTL simulation speed.

#: The RTL benchmark's contraction: 65 536 MACs, 4 137 cycles on the default configuration.
RTL_CASE = (("ik", (32, 128)), ("kj", (128, 16)), ("ij", (32, 16)))


def bench_rtl(quick=False, *, out=None, build_root=None, fresh_build=None):
    """The ``rtl`` section: a mapped contraction on the default configuration in Verilator.

    The contraction (:data:`RTL_CASE`) is loaded over AXI4-Lite, run once (``quick``) or ten times,
    read back and compared with numpy; the ``CYCLES`` counter must equal the mapper's prediction.

    Parameters
    ----------
    build_root : path, optional
        Parent of the build folders (default: the shared ``build/rtl`` cache).
    fresh_build : bool, optional
        Build in a new temporary folder so that the Verilator build is timed (default: unless
        ``quick``, which reuses a cached build when there is one).
    """
    out = sys.stdout if out is None else out
    from fetta.hw.accelerator import AcceleratorSystem
    from fetta.sim.rtl import RTLBuild
    config = _config()
    fresh_build = not quick if fresh_build is None else fresh_build
    tmp = tempfile.TemporaryDirectory(prefix="fetta-bench-") if fresh_build else None
    root = tmp.name if tmp is not None else build_root
    try:
        build = RTLBuild(name="accelerator_system", config=config.to_dict(),
                         elaborate=lambda: AcceleratorSystem(config), root=root)
        reused = (build.build_dir / ".built").exists()
        start = time.perf_counter()
        build.build()
        build_seconds = time.perf_counter() - start
        a, b, c = RTL_CASE
        result_file = Path(tempfile.mkstemp(prefix="fetta-rtl-", suffix=".json")[1])
        params = {"config": config.to_dict(), "a": a, "b": b, "c": c, "shift": 6, "seed": 1,
                  "repeats": 1 if quick else 10, "out": str(result_file)}
        start = time.perf_counter()
        build.test("fetta.bench", testcase="rtl_speed", params=params,
                   bench_dir=Path(__file__).resolve().parent.parent)
        process_seconds = time.perf_counter() - start
        row = json.loads(result_file.read_text())
        result_file.unlink()
    finally:
        if tmp is not None:
            tmp.cleanup()
    row.update({"build_seconds": None if reused else build_seconds, "build_reused": reused,
                "build_fresh": fresh_build,
                "process_seconds": process_seconds, "lanes": config.lanes})
    if reused:
        print("Verilator build: reused from the cache", file=out)
    elif fresh_build:
        print(f"Verilator build (Verilog, Verilator, C++ compile): {build_seconds:.1f} s", file=out)
    else:
        print(f"Verilator build into the shared cache: {build_seconds:.1f} s (includes any wait for "
              f"another process building the same configuration)", file=out)
    print(f"contraction {row['name']}: {row['macs']:,} MACs", file=out)
    print(f"{'phase':<36} {'cycles':>9} {'wall s':>8} {'cycles/s':>10}", file=out)
    for phase in ("load", "run", "whole"):
        p = row[phase]
        print(f"{p['what']:<36} {p['cycles']:>9,} {p['seconds']:>8.2f} "
              f"{p['cycles'] / p['seconds']:>10.4g}", file=out)
    print(f"simulator process (start-up included): {process_seconds:.1f} s", file=out)
    return row


async def rtl_speed(dut):
    """cocotb test: load, run and check one mapped contraction, timing each phase."""
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge, Timer
    from fetta.hw.config import AcceleratorConfig
    from fetta.search.mapper import choose_layouts, map_contraction
    from fetta.sim.driver import Driver, RTLBackend
    p = json.loads(os.environ["FETTA_PARAMS"])
    config = AcceleratorConfig.from_dict(p["config"])
    a, b, c = ((ix, tuple(sz)) for ix, sz in (p["a"], p["b"], p["c"]))
    la, lb, lc = choose_layouts(a, b, c, config)
    program = map_contraction(la, lb, lc, config, shift=p["shift"])
    rng = np.random.default_rng(p["seed"])
    A, B = _random_operands((la, lb), config, rng)
    period = 10
    cocotb.start_soon(Clock(dut.clk, period, unit="ns").start())
    driver = Driver(RTLBackend(dut), config)

    def now():
        return time.perf_counter(), int(cocotb.simtime.get_sim_time("ns")) // period

    t0, c0 = now()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await driver.write_tensor(A, la)
    await driver.write_tensor(B, lb)
    await driver.load_program(program.image())
    await driver.load_routes(dist=dict(program.dist_routes), red=dict(program.red_routes))
    t1, c1 = now()
    run_seconds, run_cycles = 0.0, 0
    for _ in range(p["repeats"]):
        # START, then only the clock runs while the accelerator computes: no bus traffic, and a
        # timer rather than a callback per clock edge.
        ts, cs = now()
        await driver.start()
        await Timer(period * (program.cycles + program.halt_cycles + 4), unit="ns")
        te, ce = now()
        run_seconds += te - ts
        run_cycles += ce - cs
        status = await driver.status()
        counters = await driver.counters()
        assert status.done and not status.error, status
        assert counters["cycles"] == program.cycles + program.halt_cycles, counters
    got = await driver.read_tensor(lc)
    t3, c3 = now()
    want = _golden(f"{a[0]},{b[0]}->{c[0]}", A, B, p["shift"], config)
    assert np.array_equal(got, want), "the RTL's result differs from numpy"
    row = {
        "name": f"{a[0]},{b[0]}->{c[0]} {'x'.join(map(str, a[1]))} . {'x'.join(map(str, b[1]))}",
        "macs": program.macs, "accelerator_cycles": counters["cycles"],
        "load": {"what": "load over AXI4-Lite (cocotbext-axi)", "cycles": c1 - c0,
                 "seconds": t1 - t0},
        "repeats": p["repeats"],
        "run": {"what": f"{p['repeats']} run(s), START to HALT", "cycles": run_cycles,
                "seconds": run_seconds},
        "whole": {"what": "whole test (load, run, read back)", "cycles": c3 - c0,
                  "seconds": t3 - t0},
    }
    Path(p["out"]).write_text(json.dumps(row))


# A cocotb test only inside the simulator, so that the command line does not need cocotb.
try:
    import cocotb as _cocotb
    if _cocotb.is_simulation:
        rtl_speed = _cocotb.test()(rtl_speed)
except ImportError:
    pass


# Search.

def bench_search(quick=False, *, out=None):
    """The ``search`` section: stage 1 per network and the joint training step table."""
    out = sys.stdout if out is None else out
    from fetta.search.csse import benchmark_search, print_benchmark
    from fetta.search.training import benchmark_training, print_training_benchmark
    start = time.perf_counter()
    rows = benchmark_search()
    search_seconds = time.perf_counter() - start
    print_benchmark(rows, file=out)
    print(f"stage 1 on all {len(rows)} networks: {search_seconds:.2f} s", file=out)
    print(file=out)
    start = time.perf_counter()
    training = benchmark_training(k=1 if quick else 8)
    training_seconds = time.perf_counter() - start
    print_training_benchmark(training, file=out)
    print(f"training steps (k = {1 if quick else 8}): {training_seconds:.2f} s", file=out)
    return {"networks": rows, "search_seconds": search_seconds, "training": training,
            "training_k": 1 if quick else 8, "training_seconds": training_seconds}


def bench_stage2(quick=False, *, out=None):
    """The ``stage2`` section: the stage 2 gain per benchmark layer
    (:func:`fetta.search.stage2.benchmark_stage2`; scaled layers with ``quick``)."""
    from fetta.search.stage2 import benchmark_stage2, print_stage2_benchmark
    out = sys.stdout if out is None else out
    start = time.perf_counter()
    rows = benchmark_stage2(quick=quick)
    seconds = time.perf_counter() - start
    print_stage2_benchmark(rows, file=out)
    print(f"stage 2 benchmark: {seconds:.1f} s", file=out)
    return {"rows": rows, "seconds": seconds}


def bench_resources(quick=False, *, out=None):
    """The ``resources`` section: Yosys cell counts of the networks."""
    out = sys.stdout if out is None else out
    from fetta.hw import distribution
    lanes = (8, 16) if quick else (8, 16, 32, 64)
    start = time.perf_counter()
    table = distribution.resource_table(lanes=lanes, widths=(8, 16))
    print("Distribution network (Benes with multicast):", file=out)
    print(table, file=out)
    result = {"distribution": table}
    from fetta.hw import reduction
    if hasattr(reduction, "resource_table"):
        table = reduction.resource_table()
    else:
        table = _reduction_table(lanes)
    print("\nReduction network (BIRRD-style):", file=out)
    print(table, file=out)
    result["reduction"] = table
    result["seconds"] = time.perf_counter() - start
    return result


def _reduction_table(lanes, width=8):
    """Markdown table of Yosys cells of :class:`fetta.hw.reduction.ReductionNetwork`."""
    from fetta.hw.reduction import ReductionNetwork
    from fetta.sim.resources import yosys_stats
    rows = ["| lanes | width | stages | latency | flip-flops | `$add` | `$pmux` | all cells |",
            "|---|---|---|---|---|---|---|---|"]
    for count in lanes:
        dut = ReductionNetwork(lanes=count, width=width)
        cells = yosys_stats(dut)
        flops = sum(n for kind, n in cells.items() if "DFF" in kind)
        rows.append(f"| {count} | {width} | {dut.stages} | {dut.latency} | {flops:,} "
                    f"| {cells['$add']:,} | {cells['$pmux']:,} | {sum(cells.values()):,} |")
    return "\n".join(rows)


def bench_fpga(quick=False, *, out=None, board="ulx3s"):
    """The ``fpga`` section: build the board's bitstream (in ``build/bench/<board>``, apart from
    ``make bitstream``'s folder) and print its report."""
    out = sys.stdout if out is None else out
    from fetta.boards.build import build_board, format_report
    report = build_board(board, build_dir=Path("build") / "bench" / board)
    print(format_report(report), end="", file=out)
    return report


_RUNNERS = {"model": bench_model, "rtl": bench_rtl, "search": bench_search,
            "stage2": bench_stage2, "resources": bench_resources, "fpga": bench_fpga}


def machine_info():
    """The host: cores, load, platform and the versions that matter."""
    import amaranth
    info = {"cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "amaranth": amaranth.__version__}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def run_benchmarks(sections=DEFAULT_SECTIONS, *, quick=False, out=None, runners=None):
    """Run ``sections`` in the order of :data:`SECTIONS`; return ``{section: result}``.

    Each result carries its wall time as ``"section_seconds"`` when it is a dict. A section that
    raises (a failed check included) does not stop the others: its result is
    ``{"error": "<type>: <message>"}`` and the error is printed. ``runners`` replaces the section
    functions (by name), for tests.
    """
    out = sys.stdout if out is None else out
    runners = dict(_RUNNERS, **(runners or {}))
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"sections must be among {', '.join(SECTIONS)}, not {unknown[0]!r}")
    results = {}
    for name in SECTIONS:
        if name not in sections:
            continue
        print(f"== {name} ==", file=out)
        start = time.perf_counter()
        try:
            result = runners[name](quick, out=out)
        except Exception as e:  # noqa: BLE001 - reported, and the exit status says so
            result = {"error": f"{type(e).__name__}: {e}"}
            print(f"{name} FAILED: {result['error']}", file=out)
        seconds = time.perf_counter() - start
        if isinstance(result, dict):
            result["section_seconds"] = seconds
        print(f"({name}: {seconds:.1f} s)\n", file=out, flush=True)
        results[name] = result
    return results


def register(sub):
    """Add the ``bench`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``).

    ``fetta bench [--quick] [--only NAME ...] [--json FILE]``.
    """
    parser = sub.add_parser("bench", help="benchmarks: model, RTL simulation, search, FPGA",
                            description="Measure the model's MACs/s, the RTL simulation's cycles/s, "
                                        "the search and, on request, resources and the FPGA build.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes (about two minutes with a cached Verilator build)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=SECTIONS,
                        help=f"sections to run, among {', '.join(SECTIONS)} "
                             f"(default: {' '.join(DEFAULT_SECTIONS)})")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    parser.set_defaults(run=_run)


def _run(args):
    sections = tuple(args.only) if args.only else DEFAULT_SECTIONS
    info = machine_info()
    print(f"fetta bench on {info['cores']} cores, {info['platform']}, Python {info['python']}, "
          f"numpy {info['numpy']}, load average {info.get('load_average')}\n", flush=True)
    start = time.perf_counter()
    results = run_benchmarks(sections, quick=args.quick)
    info["seconds"] = time.perf_counter() - start
    try:
        info["load_average_end"] = os.getloadavg()
    except OSError:
        pass
    if args.json:
        document = {"command": " ".join(["fetta"] + sys.argv[1:]), "machine": info,
                    "quick": args.quick, "sections": results}
        Path(args.json).write_text(json.dumps(document, indent=1, default=str))
    failed = [name for name, r in results.items() if isinstance(r, dict) and "error" in r]
    print(f"total {info['seconds']:.1f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="fetta")
    register(parser.add_subparsers(dest="command", required=True))
    arguments = parser.parse_args()
    sys.exit(arguments.run(arguments))
