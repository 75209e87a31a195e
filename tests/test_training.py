import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetta.search import csse, training
from fetta.search.layers import FORMATS, layer_from_spec, load_layers
from fetta.search.tensornet import Tensor, TensorNetwork

LAYERS = load_layers()


def _small(layer):
    return layer.scaled(tokens=3, max_mode=3, max_rank=2)


def _random_inputs(layer, rng):
    arrays = dict(layer.random_cores(rng, scale=1.0))
    arrays["x"] = rng.standard_normal(tuple(layer.tokens if i == "b" else layer.sizes[i]
                                            for i in layer.x_indices))
    arrays["dy"] = rng.standard_normal(tuple(layer.tokens if i == "b" else layer.sizes[i]
                                             for i in layer.y_indices))
    return arrays


def _check_gradients(layer, schedule, arrays):
    nets = layer.networks()
    got = schedule.evaluate(arrays)
    fwd = nets["forward"]
    np.testing.assert_allclose(got["y"], fwd.contract({t.name: arrays[t.name]
                                                       for t in fwd.tensors}),
                               rtol=1e-10, atol=1e-12)
    want = {"dx": nets["input_grad"]}
    want.update({f"d{name}": nets[f"core_grad:{k}"]
                 for k, name in enumerate(layer.core_names, start=1)})
    for grad, net in want.items():
        if grad not in schedule.outputs:
            continue
        ref = net.contract({t.name: arrays[t.name] for t in net.tensors})
        # Entries that cancel to near zero differ between contraction orders by rounding of
        # the largest terms, hence an absolute tolerance scaled to the result.
        scale = float(np.abs(ref).max(initial=0.0))
        np.testing.assert_allclose(got[grad], ref, rtol=1e-10, atol=1e-12 * max(scale, 1.0),
                                   err_msg=grad)
    return got


def test_all_five_formats_are_covered():
    assert {layer.format for layer in LAYERS} == set(FORMATS)


@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v.id)
def test_gradients_equal_gradient_networks(layer, seed):
    small = _small(layer)
    rng = np.random.default_rng(seed)
    arrays = _random_inputs(small, rng)
    # Several forward trees, so that the backward DAG takes several shapes.
    for tree in csse.search(small.forward_network(), 4):
        schedule = training.training_schedule(tree)
        got = _check_gradients(small, schedule, arrays)
        assert set(got) == {"y", "dx"} | {f"d{n}" for n in small.core_names}


@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v.id)
def test_planned_step_is_three_forwards_and_valid(layer):
    schedule = training.plan_training_step(layer, k=4)
    fwd = layer.forward_network()
    assert schedule.forward_macs == csse.optimal_tree(fwd).macs
    assert schedule.macs == 3 * schedule.forward_macs
    assert schedule.macs == schedule.forward_macs + schedule.backward_macs
    n = len(fwd.tensors)
    assert [s.kind for s in schedule.steps] == ["forward"] * (n - 1) + ["backward"] * 2 * (n - 1)
    available = set(schedule.inputs)
    for s in schedule.steps:
        assert s.left in available and s.right in available
        assert set(s.indices) <= set(s.left_indices) | set(s.right_indices)
        # MACs of each step as the IR counts a pairwise step.
        assert s.macs == fwd.pair_macs(s.left_indices, s.right_indices)
        assert schedule.indices[s.left] == s.left_indices
        assert schedule.indices[s.right] == s.right_indices
        available.add(s.result)
    for k, name in enumerate(layer.core_names):
        assert schedule.indices[schedule.outputs[f"d{name}"]] == layer.cores[k].indices
    assert schedule.indices[schedule.outputs["dx"]] == layer.x_indices


def test_six_core_tt_layer_matches_note():
    # Figures of the 6-core TT layer B5 from the design notes.
    (b5,) = [layer for layer in LAYERS if layer.id == "B5"]
    assert training.independent_macs(b5) == 3_272_736_768
    assert training.plan_training_step(b5).macs == 1_227_276_288


def test_without_input_gradient(seed):
    (b6,) = [layer for layer in LAYERS if layer.id == "B6"]
    small = _small(b6)
    full = training.plan_training_step(small, k=1)
    first = training.plan_training_step(small, k=1, input_grad=False)
    assert "dx" not in first.outputs and "dx" in full.outputs
    assert all(s.result != "dx" for s in first.steps)
    assert first.macs < full.macs
    _check_gradients(small, first, _random_inputs(small, np.random.default_rng(seed)))


def test_liveness():
    (b5,) = [layer for layer in LAYERS if layer.id == "B5"]
    schedule = training.plan_training_step(b5, k=1)
    live = schedule.live
    assert len(live) == len(schedule.steps)
    for t, s in enumerate(schedule.steps):
        assert {s.left, s.right, s.result} <= set(live[t])
    # A tensor is live over one interval, and only before its last use or if it is an output.
    outputs = set(schedule.outputs.values())
    last_use = {}
    for t, s in enumerate(schedule.steps):
        last_use[s.left] = last_use[s.right] = t
    times = {}
    for t, names in enumerate(live):
        for n in names:
            times.setdefault(n, []).append(t)
    for n, ts in times.items():
        assert ts == list(range(ts[0], ts[-1] + 1)), n
        if n not in outputs:
            assert ts[-1] == last_use[n], n
    assert set(live[-1]) >= outputs
    # Every forward intermediate except the output is read backward.
    fwd_results = [s.result for s in schedule.steps if s.kind == "forward"]
    assert set(schedule.kept) == set(fwd_results[:-1])
    assert schedule.peak_live_elements == max(
        sum(schedule.elements[n] for n in names) for names in live)
    assert schedule.peak_live_bytes(2) == 2 * schedule.peak_live_elements
    assert schedule.elements["x"] == b5.tokens * b5.in_features


def test_k_best_choice_never_worse_than_first_tree():
    for layer in LAYERS:
        first = training.training_schedule(csse.optimal_tree(layer.forward_network()))
        chosen = training.plan_training_step(layer, k=6)
        assert (chosen.macs, chosen.peak_live_elements) <= (first.macs,
                                                            first.peak_live_elements)


def test_benchmark_rows_and_table():
    rows = training.benchmark_training(LAYERS[:2], k=2)
    assert [r["layer"] for r in rows] == ["B1", "B2"]
    for r in rows:
        assert r["joint_macs"] == 3 * r["forward_macs"]
        assert r["independent_macs"] == sum(csse.optimal_tree(n).macs for n in
                                            LAYERS[0 if r["layer"] == "B1" else 1]
                                            .networks().values())
    out = io.StringIO()
    training.print_training_benchmark(rows, file=out)
    assert "B2" in out.getvalue() and "34,603,008" in out.getvalue()


def test_errors():
    layer = layer_from_spec({"format": "tt", "in_modes": [2, 2], "out_modes": [2], "ranks":
                             [1, 2, 2, 1], "tokens": 2})
    tree = csse.optimal_tree(layer.forward_network())
    with pytest.raises(TypeError, match=r"must be a ContractionTree, not 'x'"):
        training.training_schedule("x")
    with pytest.raises(ValueError, match=r"with respect to the leaves \['x', 'G1', 'G2', 'G3'\], "
                                         r"not 'G9'"):
        training.training_schedule(tree, wrt=["G9"])
    with pytest.raises(ValueError, match=r"Gradient name 'x' collides"):
        training.training_schedule(tree, grad_output="x")
    clash = TensorNetwork([Tensor("x", ("a", "b")), Tensor("dx", ("b", "c"))],
                          {"a": 2, "b": 2, "c": 2}, ("a", "c"))
    with pytest.raises(ValueError, match=r"Gradient name 'dx' collides"):
        training.training_schedule(csse.optimal_tree(clash))
    lone = TensorNetwork([Tensor("x", ("a",))], {"a": 2}, ("a",))
    with pytest.raises(ValueError, match=r"at least two tensors, not 1"):
        training.training_schedule(csse.optimal_tree(lone))
    dangling = TensorNetwork([Tensor("x", ("a", "b")), Tensor("G1", ("b", "c"))],
                             {"a": 2, "b": 2, "c": 2}, ("c",))
    with pytest.raises(ValueError, match=r"Index 'a' of tensor 'x' appears in no other tensor"):
        training.training_schedule(csse.optimal_tree(dangling))
    schedule = training.training_schedule(tree)
    with pytest.raises(ValueError, match=r"No array given for tensor\(s\) \['dy'\]"):
        schedule.evaluate({"x": 0, "G1": 0, "G2": 0, "G3": 0})
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=rf"Bytes per element must be a positive integer, "
                                             rf"not {bad!r}"):
            schedule.peak_live_bytes(bad)
    with pytest.raises(ValueError, match=r"input_grad must be a bool, not 1"):
        training.plan_training_step(layer, input_grad=1)


@pytest.mark.parametrize("tokens", [1, None])
def test_each_gradient_network_costs_one_forward(tokens):
    # The unrooted-tree argument of docs/csse.md: swapping a leaf and the output keeps every cost.
    for layer in LAYERS:
        forward = csse.optimal_tree(layer.forward_network(tokens)).macs
        assert training.independent_macs(layer, tokens) == len(layer.networks()) * forward


@st.composite
def layer_specs(draw):
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = st.integers(1, 3)
    d_in = draw(st.integers(2 if fmt == "tr" else 1, 3))
    d_out = d_in if fmt in ("ttm", "tr") else draw(st.integers(1, 3))
    rank = st.integers(1, 3)
    if fmt == "tt":
        ranks = [1] + [draw(rank) for _ in range(d_in + d_out - 1)] + [1]
    elif fmt == "ttm":
        ranks = [1] + [draw(rank) for _ in range(d_in - 1)] + [1]
    elif fmt == "tr":
        ring = draw(rank)
        ranks = [ring] + [draw(rank) for _ in range(d_in - 1)] + [ring]
    elif fmt == "tucker":
        ranks = [draw(rank) for _ in range(d_in + d_out)]
    else:
        ranks = [draw(rank)]
    return {"format": fmt, "in_modes": [draw(mode) for _ in range(d_in)],
            "out_modes": [draw(mode) for _ in range(d_out)], "ranks": ranks,
            "tokens": draw(st.integers(1, 3))}


@settings(max_examples=40, deadline=None)
@given(layer_specs(), st.integers(1, 3), st.booleans(), st.integers(0, 2**32 - 1))
def test_random_layers(spec, k, input_grad, seed):
    layer = layer_from_spec(spec)
    schedule = training.plan_training_step(layer, k=k, input_grad=input_grad)
    assert ("dx" in schedule.outputs) == input_grad
    if input_grad:
        assert schedule.macs == 3 * schedule.forward_macs
    _check_gradients(layer, schedule, _random_inputs(layer, np.random.default_rng(seed)))


@pytest.mark.parametrize("layer", [v for v in LAYERS if len(v.cores) <= 4], ids=lambda v: v.id)
def test_no_pairwise_dag_beats_reverse_mode(layer):
    fwd = layer.forward_network()
    assert training.exhaustive_joint_macs(fwd) == training.plan_training_step(layer, k=1).macs
    # Without dx the exhaustive search must not do worse than reverse mode either.
    first = training.plan_training_step(layer, k=1, input_grad=False)
    assert training.exhaustive_joint_macs(fwd, wrt=layer.core_names) <= first.macs


def test_exhaustive_joint_on_random_networks():
    # A fixed sample of networks of 2 to 4 tensors with hyperedges and outer products.
    rng = np.random.default_rng(1)
    letters = list("abcdefg")
    for _ in range(150):
        tensors = [Tensor(f"T{k}", tuple(rng.choice(letters, size=int(rng.integers(1, 4)),
                                                    replace=False)))
                   for k in range(int(rng.integers(2, 5)))]
        counts = {}
        for t in tensors:
            for i in t.indices:
                counts[i] = counts.get(i, 0) + 1
        out = [i for i in counts if counts[i] == 1 or rng.random() < 0.3]
        net = TensorNetwork(tensors, {c: int(rng.integers(1, 6)) for c in letters}, out)
        best = csse.optimal_tree(net)
        assert training.exhaustive_joint_macs(net) == training.training_schedule(best).macs


def test_exhaustive_joint_errors():
    big = load_layers()[4].forward_network()
    with pytest.raises(ValueError, match=r"networks of 2 to 5 tensors, not 7"):
        training.exhaustive_joint_macs(big)
    dangling = TensorNetwork([Tensor("x", ("a", "b")), Tensor("G1", ("b", "c"))],
                             {"a": 2, "b": 2, "c": 2}, ("c",))
    with pytest.raises(ValueError, match=r"Index 'a' of tensor 'x' appears in no other tensor"):
        training.exhaustive_joint_macs(dangling)
