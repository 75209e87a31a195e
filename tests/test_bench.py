"""The plumbing of ``fetta bench`` on tiny sizes (benchmarks themselves are never timed tests)."""

import io
import json

import numpy as np
import pytest

from fetta import bench
from fetta.cli import main
from fetta.hw.config import AcceleratorConfig
from fetta.search.mapper import choose_layouts, map_contraction

SMALL = AcceleratorConfig(lanes=8, depth=64)


def test_model_case_reports_the_mapped_program():
    case = bench.ModelCase("tiny", ("bik", (3, 5, 12)), ("bkj", (3, 12, 6)), ("bij", (3, 5, 6)),
                           SMALL, shift=2)
    assert case.macs == 3 * 5 * 12 * 6
    assert case.expr == "bik,bkj->bij"
    row = bench.run_model_case(case, seed=3)
    program = map_contraction(*choose_layouts(case.a, case.b, case.c, SMALL), SMALL, shift=2)
    assert row["macs"] == 3 * 5 * 12 * 6
    assert row["cycles"] == program.cycles + program.halt_cycles
    assert row["utilization"] == pytest.approx(row["macs"] / (row["cycles"] * 8))
    assert row["macs_per_second"] == pytest.approx(row["macs"] / row["run_seconds"])
    assert row["checked"]


def test_tiled_matmul_sums_its_tiles():
    row = bench.run_tiled_matmul(8, 24, 12, tile=(4, 6), config=SMALL, shift=3, seed=1)
    single = map_contraction(*choose_layouts(("ik", (4, 24)), ("kj", (24, 6)), ("ij", (4, 6)),
                                             SMALL), SMALL, shift=3)
    assert row["tiles"] == 4
    assert row["macs"] == 8 * 24 * 12
    assert row["cycles"] == 4 * (single.cycles + single.halt_cycles)
    assert row["name"] == "matmul 8x24x12 as 4 tiles of 4x24x6"


def test_tiled_matmul_rejects_a_tile_that_does_not_divide():
    with pytest.raises(ValueError, match=r"tile \(4, 5\) must divide the output 8x12"):
        bench.run_tiled_matmul(8, 24, 12, tile=(4, 5), config=SMALL)


def test_run_benchmarks_runs_the_chosen_sections_in_order():
    calls = []

    def fake(name):
        def run(quick, *, out):
            calls.append((name, quick))
            print(f"ran {name}", file=out)
            return {"value": len(calls)}
        return run

    out = io.StringIO()
    results = bench.run_benchmarks(("search", "model"), quick=True, out=out,
                                   runners={n: fake(n) for n in bench.SECTIONS})
    assert calls == [("model", True), ("search", True)]
    assert list(results) == ["model", "search"]
    assert results["search"]["value"] == 2
    assert results["model"]["section_seconds"] >= 0
    text = out.getvalue()
    assert text.index("== model ==") < text.index("ran model") < text.index("== search ==")


def test_run_benchmarks_rejects_unknown_sections():
    with pytest.raises(ValueError, match="sections must be among model, .*, not 'speed'"):
        bench.run_benchmarks(("model", "speed"), out=io.StringIO())


def test_cli_rejects_unknown_section(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--only", "speed"])
    assert "invalid choice: 'speed'" in capsys.readouterr().err


def test_cli_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--only", "search", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    assert document["quick"] is True
    assert list(document["sections"]) == ["search"]
    assert document["machine"]["cores"] >= 1
    assert "== search ==" in capsys.readouterr().out


def test_search_section_covers_every_network():
    from fetta.search.layers import load_layers
    networks = sum(len(layer.networks()) for layer in load_layers())
    out = io.StringIO()
    result = bench.bench_search(quick=True, out=out)
    assert len(result["networks"]) == networks
    assert len(result["training"]) == len(load_layers())
    assert all(r["joint_macs"] <= r["independent_macs"] for r in result["training"])
    assert "stage 1 on all" in out.getvalue()


@pytest.mark.rtl
def test_rtl_section_runs_the_contraction_in_verilator():
    """One run of the benchmark contraction on the default configuration's Verilog (the build
    is shared with the accelerator tests): its result equals numpy and its cycles the mapper's."""
    config = AcceleratorConfig()
    a, b, c = bench.RTL_CASE
    program = map_contraction(*choose_layouts(a, b, c, config), config, shift=6)
    out = io.StringIO()
    row = bench.bench_rtl(quick=True, out=out)
    assert row["accelerator_cycles"] == program.cycles + program.halt_cycles
    assert row["macs"] == int(np.prod([*a[1], b[1][1]]))
    assert row["run"]["cycles"] >= program.cycles + program.halt_cycles
    assert row["whole"]["cycles"] > row["load"]["cycles"] + row["run"]["cycles"]
    assert "cycles/s" in out.getvalue()


def test_reduction_resource_table_has_a_row_per_lane_count():
    lines = bench._reduction_table((8,)).splitlines()
    assert len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:3] == ["8", "8", "6"]   # 2 log2 L stages of BIRRD for L >= 8
    assert int(cells[4].replace(",", "")) > 0


def _small_b6():
    from fetta.search.layers import load_layers
    layer = next(x for x in load_layers() if x.id == "B6")
    return layer.scaled(tokens=4, max_mode=2, max_rank=2, id="B6")


def test_stage2_section_prints_the_benchmark_table(monkeypatch):
    from fetta.search import stage2
    real, seen = stage2.benchmark_stage2, []

    def benchmark_stage2(quick=False):
        seen.append(quick)
        return real([_small_b6()], tokens=4, k=1)

    monkeypatch.setattr(stage2, "benchmark_stage2", benchmark_stage2)
    out = io.StringIO()
    result = bench.bench_stage2(quick=True, out=out)
    assert seen == [True]
    assert [r["layer"] for r in result["rows"]] == ["B6"]
    assert "| B6 | tt | 4 |" in out.getvalue()


def test_stage2_benchmark_gives_a_layer_that_does_not_fit_a_row_with_the_reason():
    from fetta.hw.config import AcceleratorConfig
    from fetta.search import stage2
    rows = stage2.benchmark_stage2([_small_b6()], AcceleratorConfig(depth=2), tokens=4, k=1)
    assert set(rows[0]) == {"layer", "format", "tokens", "error", "seconds"}
    assert "rows" in rows[0]["error"]
    table = stage2.stage2_table(rows)
    assert "| B6 | tt | 4 | " + "does not fit | " * 9 in table
    assert table.rstrip().endswith("B6: " + rows[0]["error"])


def test_a_failing_section_is_reported_and_the_others_still_run():
    def broken(quick, *, out):
        raise AssertionError("the model's result differs from numpy")

    def fine(quick, *, out):
        return {"value": 1}

    out = io.StringIO()
    results = bench.run_benchmarks(("model", "search"), out=out,
                                   runners={"model": broken, "search": fine})
    assert results["model"]["error"] == "AssertionError: the model's result differs from numpy"
    assert results["search"]["value"] == 1
    assert "model FAILED: AssertionError" in out.getvalue()


def test_cli_exit_status_is_1_when_a_section_fails(monkeypatch, capsys):
    def broken(quick, *, out):
        raise RuntimeError("no")

    monkeypatch.setitem(bench._RUNNERS, "stage2", broken)
    assert main(["bench", "--only", "stage2"]) == 1
    assert "FAILED: stage2" in capsys.readouterr().out
