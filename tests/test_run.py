import argparse
import json

import numpy as np
import pytest

from fetta.hw import isa
from fetta.hw.config import AcceleratorConfig
from fetta.search.codegen import CompiledStep, compile_layer
from fetta.search.layers import load_layers
from fetta.sim import run as runmod
from fetta.sim.run import reference, run_training

LAYERS = {layer.id: layer for layer in load_layers()}
CONFIG = AcceleratorConfig()
#: One scaled layer per format for the RTL: TTM, TT, Tucker, CP, tensor ring.
RTL_LAYERS = ("B1", "B6", "B10", "B11", "B12")


def _small(layer_id, tokens=4):
    layer = LAYERS[layer_id]
    return layer.scaled(tokens=tokens, max_mode=2 if len(layer.in_modes) > 4 else 3)


def _float_check(compiled, inputs):
    """The reference's first op equals float numpy einsum, rounded and saturated by hand."""
    plan = compiled.plan
    values, _ = reference(compiled, inputs)
    op = plan.ops[0]
    a, b, c = (plan.tensors[n] for n in (op.a, op.b, op.c))
    letters = {x: chr(97 + k) for k, x in enumerate(dict.fromkeys(a.indices + b.indices))}
    expr = ",".join("".join(letters[x] for x in t.indices) for t in (a, b)) + "->" + \
        "".join(letters[x] for x in c.indices)
    exact = np.einsum(expr, inputs[op.a].astype(np.float64), inputs[op.b].astype(np.float64))
    want = np.clip(np.round(exact / 2.0 ** op.shift), -128, 127)   # numpy rounds half to even
    np.testing.assert_array_equal(values[op.c], want)


@pytest.mark.parametrize("layer_id", sorted(LAYERS, key=lambda s: int(s[1:])))
def test_training_step_on_the_model(layer_id, seed):
    """Scaled-down benchmark layers: every tensor equals numpy bit for bit, cycles equal the
    prediction."""
    compiled = compile_layer(_small(layer_id), CONFIG, k=2)
    report = run_training(compiled, seed=seed)
    assert report.match, (report.mismatches, report.errors)
    assert report.cycles == report.predicted == compiled.cycles
    roles = {compiled.manifest[n]["role"] for n in report.checked}
    assert {"output", "input_grad", "core_grad", "intermediate"} <= roles
    assert report.qsat == (report.saturated > 0)
    assert set(report.outputs) == set(compiled.plan.schedule.outputs)


def test_reference_against_float_numpy(seed):
    compiled = compile_layer(_small("B1"), CONFIG, k=1)
    _float_check(compiled, runmod.random_inputs(compiled, np.random.default_rng(seed)))


@pytest.mark.parametrize("layer_id", ["B1", "B6"])
def test_no_shaping_baseline_on_the_model(layer_id, seed):
    compiled = compile_layer(_small(layer_id), CONFIG, k=2, shaping=False)
    assert compiled.plan.relayouts > 0
    report = run_training(compiled, seed=seed)
    assert report.match and report.cycles == report.predicted
    assert any(compiled.manifest[n]["role"] == "copy" for n in report.checked)


def test_tiled_step_equals_the_untiled_one(seed):
    layer = _small("B1", tokens=10)
    tiled = compile_layer(layer, AcceleratorConfig(depth=64), k=1)
    assert tiled.plan.tiles > 1 and tiled.plan.total_tokens == 10
    report = run_training(tiled, seed=seed)
    assert report.match and report.cycles == report.predicted
    # The same ops on all 10 tokens at once: per-token results equal the tiles'; core gradients
    # are the sums of the tiles' gradients (each tile requantized on its own).
    inputs = runmod.random_inputs(tiled, np.random.default_rng(seed))
    assert inputs["x"].shape[0] == 10
    values, _ = reference(tiled, inputs)
    outputs = tiled.plan.schedule.outputs
    for key in ("y", "dx"):
        np.testing.assert_array_equal(report.outputs[key], values[outputs[key]])
    assert report.outputs["dG1"].shape == values[outputs["dG1"]].shape


def test_reused_rows_check_the_intact_tensors(seed):
    compiled = compile_layer(_small("B1"), AcceleratorConfig(depth=64), k=1)
    assert compiled.plan.reuse
    report = run_training(compiled, seed=seed)
    assert report.match and report.cycles == report.predicted
    intact = [n for n, m in compiled.manifest.items() if m["intact"]]
    assert len(intact) < len(compiled.manifest)
    assert {compiled.plan.schedule.outputs[k] for k in report.outputs} <= set(report.checked)


def test_stochastic_rounding_stays_within_one_lsb(seed):
    compiled = compile_layer(_small("B6"), CONFIG, k=1, rounding="stochastic")
    report = run_training(compiled, seed=seed)
    assert report.match and report.cycles == report.predicted


def test_a_wrong_program_is_caught(seed):
    compiled = compile_layer(_small("B1"), CONFIG, k=1)
    words = list(compiled.words)
    k = next(k for k, w in enumerate(words) if isa.decode(w)[0] == isa.Opcode.STEP)
    opcode, fields = isa.decode(words[k])
    fields["shift"] -= 1
    words[k] = isa.encode(opcode, **fields)
    broken = CompiledStep(plan=compiled.plan, words=tuple(words), dist_routes=compiled.dist_routes,
                          red_routes=compiled.red_routes, op_words=compiled.op_words,
                          manifest=compiled.manifest)
    report = run_training(broken, seed=seed)
    assert not report.match
    assert (0, compiled.plan.ops[0].c) in report.mismatches


def test_unknown_backend():
    compiled = compile_layer(_small("B1"), CONFIG, k=1)
    with pytest.raises(ValueError, match="backend must be 'model' or 'rtl', not 'fpga'"):
        run_training(compiled, backend="fpga")


def _cli(argv, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    runmod.register(sub)
    args = parser.parse_args(argv)
    status = args.run(args)
    return status, capsys.readouterr().out


def test_run_cli_json(tmp_path, capsys):
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(_small("B11").to_spec()))
    status, out = _cli(["run", str(path), "--json", "--k", "1", "--seed", "5"], capsys)
    data = json.loads(out)
    assert status == 0
    assert data["match"] and data["cycles_match"] and data["cycles"] == data["predicted"]
    assert {"match", "cycles", "predicted", "macs", "utilization"} <= set(data)


def test_run_cli_exits_nonzero_on_a_mismatch(tmp_path, capsys, monkeypatch):
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(_small("B1").to_spec()))
    monkeypatch.setattr(runmod, "reference",
                        lambda compiled, inputs: ({n: v + 1 for n, v in
                                                   reference(compiled, inputs)[0].items()}, 0))
    status, out = _cli(["run", str(path), "--k", "1"], capsys)
    assert status == 1 and "MISMATCH" in out


@pytest.mark.rtl
def test_training_steps_on_rtl(seed):
    """One scaled layer per format on the default configuration's Verilog (one build, one cocotb
    run): every tensor equals numpy and the cycles equal the prediction and the model's."""
    compiled = [compile_layer(_small(layer_id), CONFIG, k=2) for layer_id in RTL_LAYERS]
    jobs = [runmod.rtl_job(c, runmod.random_inputs(c, np.random.default_rng(seed)))
            for c in compiled]
    results = runmod.run_jobs_rtl(CONFIG, jobs, seed=seed)
    for layer_id, c, result in zip(RTL_LAYERS, compiled, results):
        rtl = run_training(c, backend="rtl", seed=seed, results=result)
        model = run_training(c, seed=seed)
        assert rtl.match, (layer_id, rtl.mismatches, rtl.errors)
        assert rtl.cycles == rtl.predicted == model.cycles, layer_id
        for key, value in model.outputs.items():
            np.testing.assert_array_equal(rtl.outputs[key], value, err_msg=f"{layer_id} {key}")


def test_demo_on_the_model(tmp_path):
    import io

    from fetta.demo import demo
    out = io.StringIO()
    assert demo(layer_id="B6", tokens=4, rtl=False, output=tmp_path, k=2, file=out) == 0
    text = out.getvalue()
    assert "model: match" in text and "the order written" in text
    assert (tmp_path / "fetta_accelerator.v").exists()
    with pytest.raises(ValueError, match="layer must be one of B1, .*, not 'B0'"):
        demo(layer_id="B0", rtl=False, output=tmp_path, file=out)


def test_narrow_counters_wrap_and_still_match_the_prediction(seed):
    """With 16-bit counters a step of more than 65,536 cycles reads back wrapped: the report
    compares each tile modulo the counter width, and says so."""
    from fetta.search.stage2 import BENCH_CONFIG
    layer = LAYERS["B8"].scaled(tokens=16, max_mode=4, max_rank=8)
    config = AcceleratorConfig.from_dict({**BENCH_CONFIG.to_dict(), "counter_width": 16})
    compiled = compile_layer(layer, config, k=1)
    assert compiled.plan.tiles == 1 and compiled.cycles > 1 << 16
    report = run_training(compiled, seed=seed)
    assert report.match, (report.mismatches, report.errors)
    assert report.cycles == compiled.cycles % (1 << 16) != report.predicted
    assert report.cycles_match
