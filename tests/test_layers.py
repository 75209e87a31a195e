import copy
import itertools
import json
from math import prod
from pathlib import Path

import numpy as np
import opt_einsum as oe
import pytest
from hypothesis import given, settings, strategies as st

from fetta.search.layers import (CPLayer, FORMATS, TensorRingLayer, TNNLayer, TTLayer, TTMLayer,
                                 TuckerLayer, layer_from_spec, load_layers)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "search" / "workloads" / "tnn_layers.json"
SHARED = REPO.parent / "shared" / "workloads" / "tnn_layers.json"
BENCH = json.loads(SHIPPED.read_text())["layers"]


# --- Independent definitions of the formats, written from the textbook formulas. ---

def _expected_core_shapes(fmt, in_modes, out_modes, ranks):
    modes = list(in_modes) + list(out_modes)
    if fmt == "tt":
        shapes = [[ranks[k], n, ranks[k + 1]] for k, n in enumerate(modes)]
        shapes[0], shapes[-1] = shapes[0][1:], shapes[-1][:-1]
    elif fmt in ("ttm", "tr"):
        shapes = [[ranks[k], m, n, ranks[k + 1]] for k, (m, n) in enumerate(zip(in_modes, out_modes))]
        if fmt == "ttm":
            shapes[0], shapes[-1] = shapes[0][1:], shapes[-1][:-1]
            if len(shapes) == 1:
                shapes = [[in_modes[0], out_modes[0]]]
    elif fmt == "tucker":
        shapes = [list(ranks)] + [[n, r] for n, r in zip(modes, ranks)]
    else:
        shapes = [[n, ranks[0]] for n in modes]
    return [tuple(s) for s in shapes]


def _reference_weight(fmt, in_modes, out_modes, ranks, cores):
    """W[(in multi-index), (out multi-index)] entry by entry."""
    g = [cores[f"G{k + 1}"] for k in range(len(cores))]
    modes = list(in_modes) + list(out_modes)
    d_in = len(in_modes)
    w = np.zeros(modes)
    for idx in itertools.product(*(range(n) for n in modes)):
        ins, outs = idx[:d_in], idx[d_in:]
        if fmt == "tt":
            m = np.ones((1, 1))
            for k, n in enumerate(idx):
                m = m @ g[k].reshape(ranks[k], modes[k], ranks[k + 1])[:, n, :]
            w[idx] = m[0, 0]
        elif fmt in ("ttm", "tr"):
            m = np.eye(ranks[0])
            for k, (a, b) in enumerate(zip(ins, outs)):
                core = g[k].reshape(ranks[k], in_modes[k], out_modes[k], ranks[k + 1])
                m = m @ core[:, a, b, :]
            w[idx] = np.trace(m)
        elif fmt == "tucker":
            t = g[0]
            for k, n in enumerate(idx):
                t = np.tensordot(g[k + 1][n, :], t, axes=([0], [0]))
            w[idx] = t
        else:
            w[idx] = np.sum(np.prod([g[k][n, :] for k, n in enumerate(idx)], axis=0))
    return w.reshape(prod(in_modes), prod(out_modes))


@st.composite
def layer_specs(draw, formats=tuple(FORMATS)):
    fmt = draw(st.sampled_from(formats))
    mode, rank = st.integers(1, 3), st.integers(1, 3)
    d_in = draw(st.integers(2 if fmt == "tr" else 1, 3))
    d_out = d_in if fmt in ("ttm", "tr") else draw(st.integers(1, 3))
    in_modes = draw(st.lists(mode, min_size=d_in, max_size=d_in))
    out_modes = draw(st.lists(mode, min_size=d_out, max_size=d_out))
    if fmt == "tt":
        ranks = [1] + draw(st.lists(rank, min_size=d_in + d_out - 1, max_size=d_in + d_out - 1)) + [1]
    elif fmt == "ttm":
        ranks = [1] + draw(st.lists(rank, min_size=d_in - 1, max_size=d_in - 1)) + [1]
    elif fmt == "tr":
        ring = draw(rank)
        ranks = [ring] + draw(st.lists(rank, min_size=d_in - 1, max_size=d_in - 1)) + [ring]
    elif fmt == "tucker":
        ranks = draw(st.lists(rank, min_size=d_in + d_out, max_size=d_in + d_out))
    else:
        ranks = [draw(rank)]
    return {"format": fmt, "in_modes": in_modes, "out_modes": out_modes, "ranks": ranks,
            "tokens": draw(st.integers(1, 4))}


def _setup(spec, seed):
    layer = layer_from_spec(spec)
    rng = np.random.default_rng(seed)
    cores = layer.random_cores(rng)
    x = rng.normal(size=(layer.tokens, layer.in_features))
    dy = rng.normal(size=(layer.tokens, layer.out_features))
    return layer, rng, cores, x, dy


def _forward(layer, cores, x):
    y = layer.forward_network().contract({"x": x.reshape((layer.tokens,) + layer.in_modes), **cores})
    return y.reshape(layer.tokens, layer.out_features)


# --- The five formats against the independent definitions. ---

@settings(max_examples=40, deadline=None)
@given(spec=layer_specs(), seed=st.integers(0, 2**32 - 1))
def test_forward_and_input_grad_equal_dense_products(spec, seed):
    layer, _, cores, x, dy = _setup(spec, seed)
    assert [layer.core_shape(n) for n in layer.core_names] == _expected_core_shapes(
        spec["format"], spec["in_modes"], spec["out_modes"], spec["ranks"])
    w = _reference_weight(spec["format"], spec["in_modes"], spec["out_modes"], spec["ranks"], cores)
    np.testing.assert_allclose(layer.dense_weight(cores), w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_forward(layer, cores, x), x @ w, rtol=1e-10, atol=1e-12)
    dx = layer.input_grad_network().contract(
        {"dy": dy.reshape((layer.tokens,) + layer.out_modes), **cores})
    np.testing.assert_allclose(dx.reshape(layer.tokens, -1), dy @ w.T, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(spec=layer_specs(), seed=st.integers(0, 2**32 - 1))
def test_core_grads_equal_finite_differences(spec, seed):
    """dG_K of L = sum(dy * y): central differences on random entries and along a direction."""
    layer, rng, cores, x, dy = _setup(spec, seed)

    def loss(changed):
        return float(np.sum(dy * _forward(layer, changed, x)))

    arrays = {"x": x.reshape((layer.tokens,) + layer.in_modes),
              "dy": dy.reshape((layer.tokens,) + layer.out_modes)}
    networks = layer.core_grad_networks()
    assert len(networks) == len(layer.cores)
    eps = 1e-3
    for core, network in zip(layer.cores, networks):
        assert network.output == core.indices
        assert {t.name for t in network.tensors} == {"x", "dy"} | set(layer.core_names) - {core.name}
        grad = network.contract({**arrays, **{n: a for n, a in cores.items() if n != core.name}})
        assert grad.shape == cores[core.name].shape
        scale = max(1.0, float(np.abs(grad).max()))
        for _ in range(3):
            at = tuple(int(rng.integers(n)) for n in grad.shape)
            plus, minus = dict(cores), dict(cores)
            plus[core.name] = cores[core.name].copy()
            minus[core.name] = cores[core.name].copy()
            plus[core.name][at] += eps
            minus[core.name][at] -= eps
            assert abs((loss(plus) - loss(minus)) / (2 * eps) - grad[at]) < 1e-7 * scale
        direction = rng.normal(size=grad.shape)
        plus = dict(cores, **{core.name: cores[core.name] + eps * direction})
        minus = dict(cores, **{core.name: cores[core.name] - eps * direction})
        want = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(want - np.sum(grad * direction)) < 1e-7 * scale * direction.size


@settings(max_examples=25, deadline=None)
@given(spec=layer_specs())
def test_networks_of_a_training_step(spec):
    layer = layer_from_spec(spec)
    d_in, d_out = len(spec["in_modes"]), len(spec["out_modes"])
    x_idx = ("b",) + tuple("ijklmn"[:d_in])
    y_idx = ("b",) + tuple("pqrstu"[:d_out])
    nets = layer.networks(tokens=7)
    assert list(nets) == ["forward", "input_grad"] + [f"core_grad:{k + 1}"
                                                      for k in range(len(layer.cores))]
    assert nets["forward"].tensor("x").indices == x_idx and nets["forward"].output == y_idx
    assert nets["input_grad"].tensor("dy").indices == y_idx and nets["input_grad"].output == x_idx
    assert all(net.sizes["b"] == 7 for net in nets.values())
    assert layer.forward_network().sizes["b"] == spec["tokens"]
    assert layer.core_names == tuple(f"G{k + 1}" for k in range(len(layer.cores)))
    assert layer.to_spec()["forward"] == nets["forward"].einsum()
    assert layer_from_spec(layer.to_spec()) == layer


def test_random_cores_default_scale_gives_unit_output_variance():
    layer = TTMLayer(in_modes=[4, 4, 4], out_modes=[4, 4, 4], ranks=[1, 3, 3, 1], tokens=1)
    rng = np.random.default_rng(5)
    mean_square = np.mean([np.mean(layer.dense_weight(layer.random_cores(rng)) ** 2)
                           for _ in range(50)])
    assert 0.5 < mean_square * layer.in_features < 2.0
    fixed = layer.random_cores(rng, scale=0.25)
    assert all(a.dtype == np.float64 for a in fixed.values())
    assert 0.2 < np.std(np.concatenate([a.ravel() for a in fixed.values()])) < 0.3


# --- The 12 benchmark layers. ---

@pytest.mark.parametrize("spec", BENCH, ids=[s["id"] for s in BENCH])
def test_benchmark_layer_matches_json(spec):
    layer = layer_from_spec(spec)
    assert type(layer) is FORMATS[spec["format"]] and layer.id == spec["id"]
    assert [list(layer.core_shape(n)) for n in layer.core_names] == spec["core_shapes"]
    forward = layer.forward_network()
    assert forward.einsum() == spec["forward"]
    shapes = [forward.shape(t.name) for t in forward.tensors]
    path, _ = oe.contract_path(forward.einsum(), *shapes, shapes=True,
                               optimize=oe.DynamicProgramming(minimize="flops", search_outer=True))
    assert forward.path_macs(path) == spec["opt_forward_macs"]
    assert forward.path_macs(forward.sequential_path()) == spec["seq_forward_macs"]
    assert layer.sequential_forward_macs() == spec["seq_forward_macs"]
    assert layer.dense_macs() == spec["dense_macs"]


@pytest.mark.parametrize("spec", BENCH, ids=[s["id"] for s in BENCH])
def test_scaled_benchmark_layer_networks_are_consistent(spec):
    """Every network of a small copy of each benchmark structure agrees with its dense weight."""
    layer = layer_from_spec(spec).scaled(3, max_mode=2, max_rank=2)
    rng = np.random.default_rng(int(spec["id"][1:]))
    cores = layer.random_cores(rng)
    w = layer.dense_weight(cores)
    if layer.in_features * layer.out_features <= 4096:
        np.testing.assert_allclose(w, _reference_weight(layer.format, layer.in_modes,
                                                        layer.out_modes, layer.ranks, cores),
                                   rtol=1e-10, atol=1e-12)
    x = rng.normal(size=(3, layer.in_features))
    dy = rng.normal(size=(3, layer.out_features))
    arrays = {"x": x.reshape((3,) + layer.in_modes), "dy": dy.reshape((3,) + layer.out_modes)}
    nets = layer.networks()
    np.testing.assert_allclose(nets["forward"].contract({"x": arrays["x"], **cores}).reshape(3, -1),
                               x @ w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        nets["input_grad"].contract({"dy": arrays["dy"], **cores}).reshape(3, -1), dy @ w.T,
        rtol=1e-10, atol=1e-12)
    # L = sum(dy * (x @ W)) is linear in each core: the directional derivative along V is
    # L(G_K + V) - L(G_K), exactly up to rounding.
    base = np.sum(dy * (x @ w))
    for k, name in enumerate(layer.core_names, start=1):
        grad = nets[f"core_grad:{k}"].contract(
            {**arrays, **{n: a for n, a in cores.items() if n != name}})
        direction = rng.normal(size=grad.shape)
        moved = np.sum(dy * (x @ layer.dense_weight(dict(cores, **{name: cores[name] + direction}))))
        assert moved - base == pytest.approx(np.sum(grad * direction), rel=1e-9, abs=1e-9)


def test_load_layers_default_is_the_benchmark_set():
    layers = load_layers()
    assert [layer.id for layer in layers] == [f"B{k}" for k in range(1, 13)]


def test_load_layers_accepts_one_object_a_list_or_a_layers_object(tmp_path):
    one, many, wrapped = tmp_path / "one.json", tmp_path / "many.json", tmp_path / "wrapped.json"
    one.write_text(json.dumps(BENCH[2]))
    many.write_text(json.dumps(BENCH[:3]))
    wrapped.write_text(json.dumps({"layers": BENCH[5:7]}))
    assert [layer.id for layer in load_layers(one)] == ["B3"]
    assert [layer.id for layer in load_layers(str(many))] == ["B1", "B2", "B3"]
    assert [layer.id for layer in load_layers(wrapped)] == ["B6", "B7"]
    bad = tmp_path / "bad.json"
    bad.write_text("3")
    with pytest.raises(TypeError, match="must hold a layer spec, a list of them or an object "
                                        "with a 'layers' list, not int"):
        load_layers(bad)


@pytest.mark.skipif(not SHARED.exists(), reason="no shared workloads beside the repository")
def test_shipped_json_equals_shared_copy():
    assert json.loads(SHIPPED.read_text()) == json.loads(SHARED.read_text())


def test_scaled_keeps_structure():
    for layer in load_layers():
        small = layer.scaled()
        assert type(small) is type(layer) and small.id == f"{layer.id}-scaled"
        assert small.tokens == 4 and max(small.in_modes + small.out_modes) <= 3
        assert small.forward_network().einsum() == layer.forward_network().einsum()
        assert max(small.ranks) <= 2
        kept = layer.scaled(None, max_mode=None, max_rank=None, id="same")
        assert (kept.in_modes, kept.out_modes, kept.ranks, kept.tokens) == \
            (layer.in_modes, layer.out_modes, layer.ranks, layer.tokens)
    ring = TensorRingLayer(in_modes=[3, 3], out_modes=[3, 3], ranks=[5, 4, 5], tokens=2)
    assert ring.scaled(max_rank=3).ranks == (3, 3, 3)
    with pytest.raises(ValueError, match="max_rank must be a positive integer, not 0"):
        ring.scaled(max_rank=0)


def test_core_shape_and_lookup():
    layer = TuckerLayer(in_modes=[5, 6], out_modes=[7], ranks=[2, 3, 4], tokens=1)
    assert layer.core_shape("G1") == (2, 3, 4) and layer.core_shape("G4") == (7, 4)
    assert layer.params == 24 + 10 + 18 + 28
    with pytest.raises(KeyError, match="No core named 'G5'"):
        layer.core_shape("G5")


# --- Bad specs: errors name the field and quote the value. ---

@pytest.mark.parametrize("cls,kwargs,error,message", [
    (TTMLayer, dict(in_modes=[2, 2], out_modes=[2], ranks=[1, 2, 1]), ValueError,
     r"out_modes of a 'ttm' layer must have as many modes as in_modes \(2\), not \[2\]"),
    (TensorRingLayer, dict(in_modes=[2], out_modes=[2], ranks=[2, 2]), ValueError,
     r"in_modes of a 'tr' layer must have at least 2 modes, not \[2\]"),
    (TensorRingLayer, dict(in_modes=[2, 2], out_modes=[2, 2], ranks=[2, 3, 4]), ValueError,
     r"must start and end with the same ring rank, not \[2, 3, 4\]"),
    (TTLayer, dict(in_modes=[2], out_modes=[2], ranks=[1, 3, 2]), ValueError,
     r"ranks of a 'tt' layer must start and end with 1, not \[1, 3, 2\]"),
    (TTMLayer, dict(in_modes=[2, 2], out_modes=[2, 2], ranks=[2, 3, 1]), ValueError,
     r"ranks of a 'ttm' layer must start and end with 1, not \[2, 3, 1\]"),
    (TTLayer, dict(in_modes=[2], out_modes=[2, 2], ranks=[1, 3, 1]), ValueError,
     r"must have 4 entries \(one more than the number of cores\), not \[1, 3, 1\]"),
    (TuckerLayer, dict(in_modes=[2], out_modes=[2], ranks=[3]), ValueError,
     r"must have 2 entries \(one per mode\), not \[3\]"),
    (CPLayer, dict(in_modes=[2], out_modes=[2], ranks=[3, 3]), ValueError,
     r"must have 1 entries \(the CP rank\), not \[3, 3\]"),
    (CPLayer, dict(in_modes=[2] * 7, out_modes=[2], ranks=[3]), ValueError,
     r"in_modes may have at most 6 modes, not \[2, 2, 2, 2, 2, 2, 2\]"),
    (CPLayer, dict(in_modes=[2], out_modes=(), ranks=[3]), ValueError,
     r"out_modes must not be empty, not \(\)"),
    (CPLayer, dict(in_modes="22", out_modes=[2], ranks=[3]), TypeError,
     "in_modes must be a list of positive integers, not '22'"),
    (CPLayer, dict(in_modes=[2], out_modes=[2.0], ranks=[3]), TypeError,
     r"out_modes\[0\] must be a positive integer, not 2.0"),
    (CPLayer, dict(in_modes=[2], out_modes=[2], ranks=[-3]), ValueError,
     r"ranks\[0\] must be a positive integer, not -3"),
])
def test_layer_constructors_reject_bad_fields(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(tokens=1, **kwargs)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(tokens=0), ValueError, "tokens must be a positive integer, not 0"),
    (dict(tokens=True), TypeError, "tokens must be a positive integer, not True"),
    (dict(tokens=1, id=3), TypeError, "id must be a string, not 3"),
])
def test_layer_rejects_bad_tokens_and_id(kwargs, error, message):
    with pytest.raises(error, match=message):
        CPLayer(in_modes=[2], out_modes=[2], ranks=[2], **kwargs)
    if "id" not in kwargs:
        layer = CPLayer(in_modes=[2], out_modes=[2], ranks=[2], tokens=1)
        with pytest.raises(error, match=message):
            layer.forward_network(kwargs["tokens"])


def test_base_class_is_abstract():
    with pytest.raises(TypeError, match="TNNLayer is abstract; use one of TTLayer, TTMLayer, "
                                        "TuckerLayer, CPLayer, TensorRingLayer"):
        TNNLayer(in_modes=[2], out_modes=[2], ranks=[1], tokens=1)


def test_layer_from_spec_rejects_non_dicts_and_prefixes_the_id():
    with pytest.raises(TypeError, match=r"A layer spec must be a dict, not \[1\]"):
        layer_from_spec([1])
    spec = dict(BENCH[0], ranks=[1, 8, 0, 1])
    with pytest.raises(ValueError, match=r"layer 'B1': ranks\[2\] must be a positive integer, not 0"):
        layer_from_spec(spec)


_MISSING = object()
_bad_scalars = st.one_of(st.integers(max_value=0), st.floats(allow_nan=False), st.booleans(),
                         st.none(), st.text(max_size=3))


@st.composite
def bad_specs(draw):
    """A valid spec with one field spoiled; returns (spec, field, value the message must quote)."""
    spec = draw(layer_specs())
    fmt = spec["format"]
    layer = layer_from_spec(spec)
    kinds = ["missing", "format", "element", "not_a_list", "empty", "tokens", "ranks_length",
             "too_many_modes", "dense_macs", "core_shapes", "forward", "in_features"]
    if fmt in ("tt", "ttm", "tr"):
        kinds.append("boundary")
    if fmt in ("ttm", "tr"):
        kinds.append("unequal_d")
    kind = draw(st.sampled_from(kinds))
    if kind == "missing":
        field = draw(st.sampled_from(["format", "in_modes", "out_modes", "ranks", "tokens"]))
        del spec[field]
        return spec, field, _MISSING
    if kind == "format":
        value = draw(st.one_of(st.text(max_size=6), st.integers()).filter(lambda v: v not in FORMATS))
        spec["format"] = value
        return spec, "format", value
    if kind in ("element", "not_a_list", "empty", "too_many_modes"):
        field = draw(st.sampled_from(["in_modes", "out_modes", "ranks"]))
        if kind == "element":
            k = draw(st.integers(0, len(spec[field]) - 1))
            value = draw(_bad_scalars)
            spec[field][k] = value
            return spec, f"{field}[{k}]", value
        if kind == "not_a_list":
            value = draw(st.one_of(st.integers(), st.text(max_size=4), st.none()))
        elif kind == "empty":
            value = []
        else:
            field = draw(st.sampled_from(["in_modes", "out_modes"]))
            value = [2] * draw(st.integers(7, 9))
        spec[field] = value
        return spec, field, value
    if kind == "tokens":
        spec["tokens"] = value = draw(_bad_scalars)
        return spec, "tokens", value
    if kind == "ranks_length":
        spec["ranks"] = spec["ranks"] + [1] if draw(st.booleans()) else spec["ranks"][:-1] or [1, 1]
        return spec, "ranks", spec["ranks"]
    if kind == "boundary":
        ranks = spec["ranks"]
        end = draw(st.sampled_from([0, -1]))
        ranks[end] = ranks[end] + draw(st.integers(1, 5))
        return spec, "ranks", ranks
    if kind == "unequal_d":
        spec["out_modes"] = spec["out_modes"] + [2] if draw(st.booleans()) else \
            spec["out_modes"][:-1] or [2, 2, 2, 2]
        return spec, "out_modes", spec["out_modes"]
    if kind == "dense_macs":
        spec["dense_macs"] = value = layer.dense_macs() + draw(st.integers(1, 10))
        return spec, "dense_macs", value
    if kind == "core_shapes":
        shapes = [list(layer.core_shape(n)) for n in layer.core_names]
        shapes[draw(st.integers(0, len(shapes) - 1))][0] += 1
        spec["core_shapes"] = shapes
        return spec, "core_shapes", shapes
    if kind == "forward":
        spec["forward"] = value = layer.forward_network().einsum().replace("b", "c")
        return spec, "forward", value
    field = draw(st.sampled_from(["in_features", "out_features"]))
    spec[field] = value = getattr(layer, field) * draw(st.integers(2, 5))
    return spec, field, value


@settings(max_examples=200, deadline=None)
@given(case=bad_specs())
def test_bad_specs_raise_errors_naming_field_and_value(case):
    spec, field, value = case
    with pytest.raises((TypeError, ValueError)) as info:
        layer_from_spec(copy.deepcopy(spec))
    message = str(info.value)
    if value is _MISSING:
        assert f"missing field {field!r}" in message, message
    else:
        assert field in message and repr(value) in message, message


def test_layer_equality_and_repr():
    a = TTMLayer(in_modes=[2, 3], out_modes=[3, 2], ranks=[1, 2, 1], tokens=3, id="t")
    b = TTMLayer(in_modes=(2, 3), out_modes=(3, 2), ranks=(1, 2, 1), tokens=3, id="t")
    assert a == b and hash(a) == hash(b) and a != a.scaled()
    assert repr(a) == ("TTMLayer(in_modes=(2, 3), out_modes=(3, 2), ranks=(1, 2, 1), tokens=3, "
                       "id='t')")
    assert isinstance(a, TNNLayer) and a.x_indices == ("b", "i", "j")


def _run_cli(argv):
    import argparse

    from fetta.search import layers
    parser = argparse.ArgumentParser(prog="fetta")
    layers.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_layers_command_reports_the_benchmark_figures(capsys, tmp_path):
    assert _run_cli(["layers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [s["id"] for s in BENCH]
    for row, spec in zip(rows, BENCH):
        for field in ("forward", "dense_macs", "seq_forward_macs", "opt_forward_macs", "tokens"):
            assert row[field] == spec[field], (spec["id"], field)
        assert row["params"] == sum(prod(s) for s in spec["core_shapes"])
    one = tmp_path / "b6.json"
    one.write_text(json.dumps(BENCH[5]))
    assert _run_cli(["layers", str(one), "--tokens", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 and table[1].split()[:3] == ["B6", "tt", "1"]
    assert "bij,iA,AjB,BpC,Cq->bpq" in table[1]
