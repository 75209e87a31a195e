import argparse
import json

import pytest

from fetta.hw import isa
from fetta.hw.accelerator import Timing
from fetta.hw.config import AcceleratorConfig
from fetta.search import codegen, csse
from fetta.search.codegen import CodegenError, compile_layer, generate
from fetta.search.layers import layer_summary, load_layers
from fetta.search.stage2 import plan_training

LAYERS = {layer.id: layer for layer in load_layers()}
CONFIG = AcceleratorConfig()


def _small(layer_id, tokens=4):
    layer = LAYERS[layer_id]
    return layer.scaled(tokens=tokens, max_mode=2 if len(layer.in_modes) > 4 else 3)


def test_image_is_one_program_with_merged_routes():
    compiled = compile_layer(_small("B5"), CONFIG, k=1)
    words = [isa.decode(w) for w in compiled.words]
    assert words[-1][0] == isa.Opcode.HALT
    assert all(op != isa.Opcode.HALT for op, _ in words[:-1])
    assert len(words) <= CONFIG.prog_depth
    for opcode, fields in words:
        isa.check(opcode, fields, CONFIG)
    used_dist, used_red = set(), set()
    for opcode, fields in words:
        if opcode == isa.Opcode.STEP:
            used_dist.add(fields["route_a"])
            if not fields["b_one"]:
                used_dist.add(fields["route_b"])
            used_red.add(fields["route_c"])
    # Every entry is used, none is missing and no two hold the same bits.
    assert used_dist == set(compiled.dist_routes) == set(range(len(compiled.dist_routes)))
    assert used_red == set(compiled.red_routes) == set(range(len(compiled.red_routes)))
    assert len(set(compiled.dist_routes.values())) == len(compiled.dist_routes)
    assert len(set(compiled.red_routes.values())) == len(compiled.red_routes)
    # Op ranges tile the image up to the HALT.
    assert compiled.op_words[0][0] == 0 and compiled.op_words[-1][1] == len(words) - 1
    assert all(p[1] == q[0] for p, q in zip(compiled.op_words, compiled.op_words[1:]))


def test_manifest():
    compiled = compile_layer(_small("B1"), CONFIG, k=1, shaping=False)
    roles = {m["role"] for m in compiled.manifest.values()}
    assert {"input", "core", "grad_output", "intermediate", "gradient", "output", "input_grad",
            "core_grad", "copy"} <= roles
    for name, m in compiled.manifest.items():
        layout = compiled.layout(name)
        assert m["region"] == layout.region < CONFIG.regions
        assert m["base"] + m["rows"] <= CONFIG.depth
        assert [tuple(p) for p in m["lanes"]] == list(layout.lane_indices)
        if m["role"] == "copy":
            assert m["source"] in compiled.manifest


def test_program_memory_too_small():
    plan = plan_training(_small("B1"), AcceleratorConfig(prog_depth=16), k=1)
    with pytest.raises(CodegenError, match=r"the training step needs \d+ instructions with HALT; "
                                           r"prog_depth is 16"):
        generate(plan)


def test_route_table_too_small():
    plan = plan_training(_small("B5"), AcceleratorConfig(dist_routes=4), k=1)
    with pytest.raises(CodegenError, match=r"the training step needs \d+ distribution routes; "
                                           r"the table has 4 entries"):
        generate(plan)


def _compile_json(tmp_path, capsys, layer, *flags):
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(layer.to_spec()))
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    codegen.register(sub)
    args = parser.parse_args(["compile", str(path), "--json", "--k", "2", *flags])
    assert args.run(args) == 0
    return json.loads(capsys.readouterr().out)


def test_compile_json_keys(tmp_path, capsys):
    layer = _small("B5")
    data = _compile_json(tmp_path, capsys, layer)
    names = [n["name"] for n in data["networks"]]
    assert names == ["forward", "input_grad"] + [f"core_grad:{k}" for k in range(1, 7)]
    for n in data["networks"]:
        assert {"sequence", "macs", "cycles"} <= set(n)
        assert len(n["sequence"]) >= 1
    total = data["training_step"]
    assert {"macs", "cycles", "utilization"} <= set(total)
    forward = data["networks"][0]
    # The joint step costs three forward passes (every leaf's gradient is taken).
    assert total["macs"] == 3 * forward["macs"]
    halt = Timing.from_config(AcceleratorConfig()).instr
    assert total["cycles"] == sum(s["cycles"] for s in data["steps"]) + halt
    assert 0 < total["utilization"] <= 1


def test_compile_baseline_flags(tmp_path, capsys):
    layer = _small("B5")
    summary = layer_summary(layer)
    net = layer.forward_network()
    runs = {flag: _compile_json(tmp_path, capsys, layer, *flag.split())
            for flag in ("--order=optimal", "--order=sequential", "--order=greedy", "--order=flops",
                         "--no-shaping")}
    forward = {flag: d["networks"][0]["macs"] for flag, d in runs.items()}
    assert forward["--order=sequential"] == summary["seq_forward_macs"]
    assert forward["--order=flops"] == summary["opt_forward_macs"]
    assert forward["--order=greedy"] == csse.greedy_tree(net).macs
    assert forward["--order=sequential"] > forward["--order=flops"]
    cycles = {flag: d["training_step"]["cycles"] for flag, d in runs.items()}
    assert cycles["--order=optimal"] <= min(cycles["--order=flops"], cycles["--order=sequential"])
    assert runs["--no-shaping"]["training_step"]["relayouts"] > 0
    assert runs["--order=optimal"]["training_step"]["relayouts"] == 0
    assert cycles["--no-shaping"] > cycles["--order=optimal"]


def test_compile_text(tmp_path, capsys):
    path = tmp_path / "layer.json"
    path.write_text(json.dumps([_small("B1").to_spec(), _small("B11").to_spec()]))
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    codegen.register(sub)
    args = parser.parse_args(["compile", str(path), "--k", "1"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert out.count("training step:") == 2
    assert "forward" in out and "core_grad:1" in out


def test_compile_cli_error(tmp_path, capsys):
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(LAYERS["B6"].scaled(tokens=2, max_mode=None, max_rank=None).to_spec()))
    config = tmp_path / "small.toml"
    config.write_text("depth = 32\n")
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    codegen.register(sub)
    args = parser.parse_args(["compile", str(path), "--config", str(config), "--no-tile",
                              "--order", "flops"])
    with pytest.raises(ValueError, match=r"layer 'B6-scaled': tensor '.+' needs (at least )?\d+ rows"):
        args.run(args)
