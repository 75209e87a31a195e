import json
import time
from importlib import resources

import numpy as np
import opt_einsum
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetta.search import csse
from fetta.search.layers import load_layers
from fetta.search.tensornet import Tensor, TensorNetwork



def _specs_and_layers():
    specs = json.loads((resources.files("fetta.search") / "workloads" / "tnn_layers.json")
                       .read_text(encoding="utf-8"))["layers"]
    return list(zip(specs, load_layers(), strict=True))


SPECS_AND_LAYERS = _specs_and_layers()


def _reference_macs(net):
    """MACs of opt_einsum's exact DP path, replayed by the IR (not by the search)."""
    inputs = [t.indices for t in net.tensors]
    dp = opt_einsum.DynamicProgramming(minimize="flops", search_outer=True)
    path = dp(inputs, net.output, net.sizes)
    return net.path_macs(path)


def _random_arrays(net, rng):
    return {t.name: rng.standard_normal(net.shape(t.name)) for t in net.tensors}


# --- the benchmark layers -------------------------------------------------------------------

@pytest.mark.parametrize("spec, layer", SPECS_AND_LAYERS, ids=lambda v: getattr(v, "id", ""))
def test_forward_optimum_and_sequential_match_workload_table(spec, layer):
    assert spec["id"] == layer.id
    net = layer.forward_network()
    best = csse.optimal_tree(net)
    assert best.macs == spec["opt_forward_macs"]
    assert best.macs == _reference_macs(net)
    assert net.path_macs(best.path) == best.macs
    seq = csse.sequential_tree(net)
    assert seq.macs == spec["seq_forward_macs"]
    assert net.path_macs(net.sequential_path()) == seq.macs


def _layer_networks():
    return [pytest.param(net, id=f"{layer.id}-{kind}")
            for layer in load_layers() for kind, net in layer.networks().items()]


@pytest.mark.parametrize("net", _layer_networks())
def test_every_layer_network_matches_dynamic_programming(net):
    trees = csse.search(net, 4)
    assert trees[0].macs == _reference_macs(net)
    assert net.path_macs(trees[0].path) == trees[0].macs
    assert csse.reference_tree(net).macs == trees[0].macs
    assert csse.greedy_tree(net).macs >= trees[0].macs
    assert csse.sequential_tree(net).macs >= trees[0].macs


@pytest.mark.parametrize("layer", [layer for _, layer in SPECS_AND_LAYERS], ids=lambda v: v.id)
def test_k_best_sorted_distinct_and_evaluate(layer):
    # Small sizes keep the arrays tiny; the structure (and the ranking machinery) is the layer's.
    net = layer.forward_network()
    small = TensorNetwork(net.tensors, {i: 2 + (n % 2) for n, i in enumerate(net.sizes)},
                          net.output)
    trees = csse.search(small, 12)
    assert len(trees) == 12
    costs = [t.macs for t in trees]
    assert costs == sorted(costs)
    assert len({t.key for t in trees}) == len(trees)
    rng = np.random.default_rng(1)
    arrays = _random_arrays(small, rng)
    want = small.contract(arrays)
    for tree in trees:
        assert small.path_macs(tree.path) == tree.macs
        np.testing.assert_allclose(tree.evaluate(arrays), want, rtol=1e-10, atol=1e-10)


def test_benchmark_rows_from_layers():
    layer = SPECS_AND_LAYERS[0][1]
    rows = csse.benchmark_search([layer])
    assert [r["network"] for r in rows] == list(layer.networks())
    for r in rows:
        assert r["macs"] <= r["greedy_macs"] and r["macs"] <= r["sequential_macs"]
        assert r["seconds"] >= 0


# --- brute force on random small networks -------------------------------------------------

def _brute_force(net):
    """Every pairwise order, as {tree: MACs}; a tree is nested frozensets of tensor names."""
    out = set(net.output)
    trees = {}

    def rec(items, macs):
        # items: list of (tree, indices)
        if len(items) == 1:
            tree = items[0][0]
            assert trees.setdefault(tree, macs) == macs  # one tree, one cost, whatever the order
            return
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                (ta, ia), (tb, ib) = items[a], items[b]
                rest = [items[c] for c in range(len(items)) if c not in (a, b)]
                needed = out.union(*(ix for _, ix in rest))
                joint = ia | ib
                cost = 1
                for i in joint:
                    cost *= net.sizes[i]
                rec(rest + [(frozenset((ta, tb)), frozenset(joint & needed))], macs + cost)

    rec([(t.name, frozenset(t.indices)) for t in net.tensors], 0)
    return trees


def _as_frozen(nested):
    if isinstance(nested, str):
        return nested
    return frozenset((_as_frozen(nested[0]), _as_frozen(nested[1])))


@st.composite
def networks(draw, max_tensors=6, outer_only=False, no_dangling=False):
    n = draw(st.integers(1, max_tensors))
    letters = "abcdefgh"
    sizes = {c: draw(st.integers(1, 4)) for c in letters}
    if outer_only:
        pool = list(letters)
        tensors = []
        for k in range(n):
            m = draw(st.integers(0, min(2, len(pool))))
            tensors.append(Tensor(f"T{k}", tuple(pool[:m])))
            del pool[:m]
        used = [i for t in tensors for i in t.indices]
        output = tuple(draw(st.permutations(used)))
    else:
        tensors = []
        for k in range(n):
            ix = draw(st.lists(st.sampled_from(letters), max_size=4, unique=True))
            tensors.append(Tensor(f"T{k}", tuple(ix)))
        used = list(dict.fromkeys(i for t in tensors for i in t.indices))
        counts = {i: sum(i in t.indices for t in tensors) for i in used}
        if no_dangling:
            must = [i for i in used if counts[i] == 1]
            extra = draw(st.lists(st.sampled_from(used), unique=True)) if used else []
            output = tuple(dict.fromkeys(must + extra))
        else:
            output = tuple(draw(st.lists(st.sampled_from(used), unique=True))) if used else ()
    return TensorNetwork(tensors, sizes, output)


def _check_against_brute_force(net, k):
    every = _brute_force(net)
    trees = csse.search(net, k)
    ranked = sorted(every.values())
    assert [t.macs for t in trees] == ranked[:k]
    assert len({t.key for t in trees}) == len(trees)
    for t in trees:
        assert every[_as_frozen(t.nested)] == t.macs
    return trees


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks(), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_search_equals_brute_force(net, k, seed):
    trees = _check_against_brute_force(net, k)
    arrays = _random_arrays(net, np.random.default_rng(seed))
    np.testing.assert_allclose(trees[0].evaluate(arrays), net.contract(arrays),
                               rtol=1e-9, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(networks(outer_only=True), st.integers(1, 4))
def test_outer_product_only_networks(net, k):
    _check_against_brute_force(net, k)


@settings(max_examples=40, deadline=None)
@given(networks(max_tensors=7, no_dangling=True))
def test_search_equals_opt_einsum_dp(net):
    if len(net.tensors) == 1:
        return
    assert csse.optimal_tree(net).macs == _reference_macs(net)


def test_hyperedge_kept_until_last_holder():
    # b in three tensors and the output; R in three tensors only.
    net = TensorNetwork([Tensor("x", ("b", "i")), Tensor("u", ("i", "R")),
                         Tensor("v", ("R", "b")), Tensor("w", ("R", "p"))],
                        {"b": 5, "i": 3, "R": 2, "p": 7}, ("b", "p"))
    tree = csse.ContractionTree(net, (("x", "u"), ("v", "w")))
    first, second, last = tree.steps
    assert first.indices == ("b", "R")  # i summed, b and R still needed
    assert first.macs == 5 * 3 * 2
    assert second.indices == ("b", "R", "p")  # R still shared with x*u
    assert second.macs == 2 * 5 * 7
    assert last.indices == ("b", "p") and last.summed == ("R",)
    assert last.macs == 5 * 2 * 7
    assert tree.macs == 30 + 70 + 70


def test_ten_tensor_network_is_fast():
    # A ring of ten tensors with a hyperedge through all of them; timed but not asserted on
    # time (see print_benchmark for the figures); the assertion is the exact DP result.
    letters = "abcdefghij"
    tensors = [Tensor(f"T{k}", (letters[k], letters[(k + 1) % 10], "z")) for k in range(10)]
    sizes = {c: 2 + k % 3 for k, c in enumerate(letters)} | {"z": 3}
    net = TensorNetwork(tensors, sizes, ("a", "z"))
    start = time.perf_counter()
    trees = csse.search(net, 4)
    print(f"10-tensor ring, k=4: {1e3 * (time.perf_counter() - start):.1f} ms")
    assert trees[0].macs == _reference_macs(net)
    assert [t.macs for t in trees] == sorted(t.macs for t in trees)


# --- baselines and errors -----------------------------------------------------------------

def test_baselines_return_trees():
    spec, layer = SPECS_AND_LAYERS[4]
    net = layer.forward_network()
    greedy = csse.greedy_tree(net)
    assert isinstance(greedy, csse.ContractionTree)
    assert net.path_macs(greedy.path) == greedy.macs
    ref = csse.reference_tree(net)
    assert ref.macs == spec["opt_forward_macs"]
    seq = csse.sequential_tree(net)
    assert seq.nested == ((((((("x", "G1"), "G2"), "G3"), "G4"), "G5"), "G6"))


def test_single_tensor_network():
    net = TensorNetwork([Tensor("x", ("a", "b"))], {"a": 2, "b": 3}, ("b",))
    (tree,) = csse.search(net, 3)
    assert tree.steps == () and tree.macs == 0 and tree.result == "x"
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(tree.evaluate({"x": a}), a.sum(axis=0))


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_search_rejects_bad_k(k):
    net = SPECS_AND_LAYERS[0][1].forward_network()
    with pytest.raises(ValueError, match=rf"number of trees to keep must be a positive integer, "
                                         rf"not {k!r}"):
        csse.search(net, k)


def test_evaluate_names_missing_arrays():
    tree = csse.optimal_tree(SPECS_AND_LAYERS[0][1].forward_network())
    with pytest.raises(ValueError, match=r"No array given for tensor\(s\) \['G2', 'G3'\]"):
        tree.evaluate({"x": 0, "G1": 0})


def test_tree_rejects_bad_nesting():
    net = SPECS_AND_LAYERS[0][1].forward_network()
    with pytest.raises(ValueError, match=r"must use every tensor of the network once"):
        csse.ContractionTree(net, (("x", "G1"), "G2"))
    with pytest.raises(ValueError, match=r"must be a tensor name or a pair, not \('x', 'G1', "
                                         r"'G2'\)"):
        csse.ContractionTree(net, (("x", "G1", "G2"), "G3"))


def test_reference_tree_rejects_one_tensor_sums():
    # opt_einsum sums an index held by one tensor in a one-tensor step first.
    net = TensorNetwork([Tensor("x", ("a", "b")), Tensor("y", ("b", "c"))],
                        {"a": 2, "b": 3, "c": 4}, ("c",))
    with pytest.raises(ValueError, match=r"pair of distinct positions among 2 tensors, not \(0,\)"):
        csse.reference_tree(net)
    assert csse.optimal_tree(net).macs == 2 * 3 * 4  # a is summed in the pairwise step


def test_tree_from_path_rejects_bad_paths():
    net = SPECS_AND_LAYERS[0][1].forward_network()
    with pytest.raises(ValueError, match=r"pair of distinct positions among 4 tensors, not \(0,\)"):
        csse.tree_from_path(net, [(0,)])
    with pytest.raises(ValueError, match=r"not \(1, 1\)"):
        csse.tree_from_path(net, [(1, 1)])
    with pytest.raises(ValueError, match=r"contract the network to one tensor, not leave 2"):
        csse.tree_from_path(net, [(0, 1), (0, 1)])


def test_random_ten_tensor_networks_match_opt_einsum_dp():
    rng = np.random.default_rng(7)
    for n in (9, 10):
        net = csse.random_network(n, rng)
        assert csse.optimal_tree(net).macs == _reference_macs(net)


def test_search_subcommand(tmp_path, capsys):
    import argparse
    parser = argparse.ArgumentParser(prog="fetta")
    csse.register(parser.add_subparsers(dest="command"))
    path = tmp_path / "layer.json"
    path.write_text(json.dumps(SPECS_AND_LAYERS[5][0]))
    args = parser.parse_args(["search", str(path), "--k", "2"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "7,004,160" in out  # the layer's forward optimum, from the workload table
    assert "core_grad:4" in out and "21,012,480" in out  # joint step: three forward passes
