import itertools
from math import prod

import numpy as np
import opt_einsum as oe
import pytest
from hypothesis import given, settings, strategies as st

from fetta.search.tensornet import Tensor, TensorNetwork


def _brute_force(network, arrays):
    """The contraction by explicit summation over every assignment of the indices."""
    names = list(network.sizes)
    out = np.zeros(tuple(network.sizes[i] for i in network.output))
    for values in itertools.product(*(range(network.sizes[i]) for i in names)):
        at = dict(zip(names, values))
        term = 1.0
        for t in network.tensors:
            term *= arrays[t.name][tuple(at[i] for i in t.indices)]
        out[tuple(at[i] for i in network.output)] += term
    return out


@st.composite
def random_networks(draw, max_tensors=4):
    letters = "abcdef"[:draw(st.integers(1, 5))]
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    tensors = []
    for k in range(draw(st.integers(1, max_tensors))):
        indices = draw(st.lists(st.sampled_from(letters), unique=True, min_size=1, max_size=3))
        tensors.append(Tensor(f"T{k}", tuple(indices)))
    used = sorted({i for t in tensors for i in t.indices})
    output = draw(st.lists(st.sampled_from(used), unique=True))
    return TensorNetwork(tensors, sizes, output, name="random")


def _arrays(network, seed):
    rng = np.random.default_rng(seed)
    return {t.name: rng.normal(size=network.shape(t.name)) for t in network.tensors}


def test_tensor_coerces_indices_to_tuple():
    assert Tensor("G", ["A", "j", "B"]).indices == ("A", "j", "B")


@pytest.mark.parametrize("args,error,message", [
    (("", ("a",)), TypeError, "Tensor name must be a non-empty string, not ''"),
    (("x", "bij"), TypeError, "must be a tuple of index names, not the string 'bij'"),
    (("x", ("b", 3)), TypeError, "Index names of tensor 'x' must be non-empty strings, not 3"),
])
def test_tensor_rejects_bad_fields(args, error, message):
    with pytest.raises(error, match=message):
        Tensor(*args)


_SIZES = {"b": 2, "i": 3, "A": 4}


@pytest.mark.parametrize("tensors,sizes,output,error,message", [
    ([], _SIZES, (), ValueError, "Network 'n' has no tensors"),
    ([Tensor("x", ("b", "i")), Tensor("x", ("i",))], _SIZES, (), ValueError,
     "Network 'n' has two tensors named 'x'"),
    ([Tensor("G", ("i", "A", "i"))], _SIZES, (), ValueError,
     r"Index 'i' appears more than once in tensor 'G' \('i', 'A', 'i'\)"),
    ([Tensor("x", ("b", "k"))], _SIZES, (), ValueError, "Index 'k' of tensor 'x' has no size"),
    ([Tensor("x", ("b",))], {"b": 0}, (), ValueError, "Size of index 'b' must be at least 1, not 0"),
    ([Tensor("x", ("b",))], {"b": -2}, (), ValueError, "Size of index 'b' must be at least 1, not -2"),
    ([Tensor("x", ("b",))], {"b": 2.0}, (), TypeError, "Size of index 'b' must be an integer, not 2.0"),
    ([Tensor("x", ("b",))], {"b": True}, (), TypeError, "Size of index 'b' must be an integer, not True"),
    ([Tensor("x", ("b", "i"))], _SIZES, ("b", "A"), ValueError,
     "Output index 'A' appears in no tensor of network 'n'"),
    ([Tensor("x", ("b", "i"))], _SIZES, ("b", "b"), ValueError,
     r"Output index 'b' appears more than once in the output \('b', 'b'\)"),
    ([Tensor("x", ("b", "i"))], _SIZES, "b", TypeError, "not the string 'b'"),
    ([("x", ("b",))], _SIZES, (), TypeError, "operands must be Tensor objects, not"),
])
def test_network_rejects_bad_fields(tensors, sizes, output, error, message):
    with pytest.raises(error, match=message):
        TensorNetwork(tensors, sizes, output, name="n")


def test_network_keeps_only_used_sizes_in_order_of_appearance():
    net = TensorNetwork([Tensor("G", ("A", "i")), Tensor("x", ("b", "i"))],
                        {"b": 2, "i": 3, "A": 4, "unused": 9}, ("b", "A"))
    assert net.sizes == {"A": 4, "i": 3, "b": 2}
    assert net.indices == ("A", "i", "b")
    assert net.shape("x") == (2, 3) and net.shape("G") == (4, 3)
    assert net.output_shape() == (2, 4)
    assert net.tensor("G") == Tensor("G", ("A", "i"))
    with pytest.raises(KeyError, match="No tensor named 'y'"):
        net.tensor("y")


def test_einsum_keeps_single_letters():
    net = TensorNetwork([Tensor("x", "b i j k".split()), Tensor("G1", ("i", "p", "A")),
                         Tensor("G2", ("A", "j", "q", "B")), Tensor("G3", ("B", "k", "r"))],
                        dict(b=2, i=2, j=2, k=2, p=2, q=2, r=2, A=2, B=2), ("b", "p", "q", "r"))
    assert net.einsum() == "bijk,ipA,AjqB,Bkr->bpqr"


def test_einsum_maps_long_names_to_letters():
    net = TensorNetwork([Tensor("x", ("tok", "in0")), Tensor("W", ("in0", "out0"))],
                        {"tok": 2, "in0": 3, "out0": 4}, ("tok", "out0"))
    assert net.einsum() == "ab,bc->ac"
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3)), rng.normal(size=(3, 4))
    np.testing.assert_allclose(net.contract({"x": x, "W": w}), x @ w, rtol=1e-12)


def test_einsum_rejects_more_indices_than_letters():
    names = [f"i{k}" for k in range(53)]
    net = TensorNetwork([Tensor("t", names)], {n: 1 for n in names}, (), name="wide")
    with pytest.raises(ValueError, match="'wide' has 53 distinct indices; einsum notation allows "
                                         "at most 52"):
        net.einsum()


def test_contract_hyperedges_and_outer_products():
    rng = np.random.default_rng(1)
    u, v, w = rng.normal(size=(3, 5)), rng.normal(size=(4, 5)), rng.normal(size=(2, 5))
    sizes = {"i": 3, "j": 4, "k": 2, "R": 5}
    # A CP-style hyperedge R shared by three factors.
    cp = TensorNetwork([Tensor("U", ("i", "R")), Tensor("V", ("j", "R")), Tensor("W", ("k", "R"))],
                       sizes, ("i", "j", "k"))
    want = sum(np.multiply.outer(np.multiply.outer(u[:, r], v[:, r]), w[:, r]) for r in range(5))
    np.testing.assert_allclose(cp.contract({"U": u, "V": v, "W": w}), want, rtol=1e-12)
    # The hyperedge also kept in the output.
    kept = TensorNetwork([Tensor("U", ("i", "R")), Tensor("V", ("j", "R"))], sizes, ("R", "i", "j"))
    np.testing.assert_allclose(kept.contract({"U": u, "V": v}),
                               np.einsum("iR,jR->Rij", u, v), rtol=1e-12)
    outer = TensorNetwork([Tensor("a", ("i",)), Tensor("c", ("j",))], sizes, ("i", "j"))
    np.testing.assert_allclose(outer.contract({"a": u[:, 0], "c": v[:, 0]}),
                               np.outer(u[:, 0], v[:, 0]), rtol=1e-12)


def test_contract_checks_arrays():
    net = TensorNetwork([Tensor("x", ("b", "i")), Tensor("W", ("i", "p"))],
                        {"b": 2, "i": 3, "p": 4}, ("b", "p"), name="lin")
    with pytest.raises(ValueError, match=r"No array given for tensor\(s\) \['W'\] of network 'lin'"):
        net.contract({"x": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"Arrays given for unknown tensor\(s\) \['y'\]"):
        net.contract({"x": np.zeros((2, 3)), "W": np.zeros((3, 4)), "y": 0})
    with pytest.raises(ValueError, match=r"Array for tensor 'W' \('i', 'p'\) must have shape "
                                         r"\(3, 4\), not \(4, 3\)"):
        net.contract({"x": np.zeros((2, 3)), "W": np.zeros((4, 3))})


@settings(max_examples=60, deadline=None)
@given(network=random_networks(), seed=st.integers(0, 2**32 - 1))
def test_contract_equals_explicit_summation(network, seed):
    arrays = _arrays(network, seed)
    got = network.contract(arrays)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _brute_force(network, arrays), rtol=1e-10, atol=1e-12)


def test_pair_indices_hyperedge_examples():
    net = TensorNetwork([Tensor("U", ("i", "R")), Tensor("V", ("j", "R")), Tensor("W", ("k", "R"))],
                        {"i": 2, "j": 3, "k": 4, "R": 5}, ("i", "j", "k"))
    # R is still needed by W: kept.
    assert net.pair_indices(("i", "R"), ("j", "R"), [("k", "R")]) == ("i", "R", "j")
    # Last step: R is summed.
    assert net.pair_indices(("i", "R", "j"), ("k", "R"), []) == ("i", "j", "k")
    assert net.pair_macs(("i", "R"), ("j", "R")) == 2 * 5 * 3
    assert net.pair_macs(("i", "R", "j"), ("k", "R")) == 2 * 5 * 3 * 4


@settings(max_examples=60, deadline=None)
@given(network=random_networks(max_tensors=5), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_pairwise_steps_with_pair_indices_reproduce_the_contraction(network, seed, data):
    """Any pairwise order that keeps exactly pair_indices gives the network's result."""
    arrays = _arrays(network, seed)
    ops = [(t.indices, arrays[t.name]) for t in network.tensors]
    path = []
    while len(ops) > 1:
        p, q = data.draw(st.lists(st.integers(0, len(ops) - 1), min_size=2, max_size=2, unique=True))
        path.append((p, q))
        (a, x), (b, y) = ops[p], ops[q]
        ops = [op for k, op in enumerate(ops) if k not in (p, q)]
        kept = network.pair_indices(a, b, [o[0] for o in ops])
        ops.append((kept, np.einsum(f"{''.join(a)},{''.join(b)}->{''.join(kept)}", x, y)))
    indices, result = ops[0]
    # The last operand may still carry indices summed by no pair (a lone tensor's own indices).
    result = np.einsum(f"{''.join(indices)}->{''.join(network.output)}", result)
    np.testing.assert_allclose(result, _brute_force(network, arrays), rtol=1e-10, atol=1e-12)
    if path:
        assert network.path_macs(path) == sum(
            _macs_by_hand(network, step) for step in _steps(network, path))


def _steps(network, path):
    current = [t.indices for t in network.tensors]
    for p, q in path:
        a, b = current[p], current[q]
        current = [c for k, c in enumerate(current) if k not in (p, q)]
        current.append(network.pair_indices(a, b, current))
        yield a, b


def _macs_by_hand(network, step):
    a, b = step
    return prod(network.sizes[i] for i in sorted(set(a + b)))


@settings(max_examples=60, deadline=None)
@given(network=random_networks(max_tensors=5))
def test_path_macs_and_pair_indices_agree_with_opt_einsum(network):
    shapes = [network.shape(t.name) for t in network.tensors]
    path, info = oe.contract_path(network.einsum(), *shapes, shapes=True,
                                  optimize=oe.DynamicProgramming(minimize="flops", search_outer=True))
    if len(network.tensors) == 1:
        assert network.path_macs(path) == 0
        return
    # opt_einsum charges 2 per MAC when a step sums an index, 1 for an outer or Hadamard step.
    current = [t.indices for t in network.tensors]
    opt_cost = 0
    macs = 0
    for positions, step in zip(path, info.contraction_list):
        operands = [current[p] for p in positions]
        current = [c for k, c in enumerate(current) if k not in positions]
        a, b = operands if len(operands) == 2 else (operands[0], ())
        kept = network.pair_indices(a, b, current)
        current.append(kept)
        assert set(kept) == set(step[2].split("->")[1]), step
        summed = (set(a) | set(b)) - set(kept)
        # A one-operand step (DP sums an index private to one tensor first) multiplies nothing.
        if len(operands) == 2:
            macs += network.pair_macs(a, b)
        opt_cost += network.pair_macs(a, b) * (2 if summed else 1)
    assert opt_cost == info.opt_cost
    assert network.path_macs(path) == macs


def test_sequential_path_of_a_matrix_chain():
    net = TensorNetwork([Tensor("x", ("b", "i")), Tensor("U", ("i", "j")), Tensor("V", ("j", "k")),
                         Tensor("W", ("k", "p"))], {"b": 5, "i": 2, "j": 3, "k": 7, "p": 11},
                        ("b", "p"))
    path = net.sequential_path()
    assert net.path_macs(path) == 5 * 2 * 3 + 5 * 3 * 7 + 5 * 7 * 11
    arrays = _arrays(net, 3)
    got = oe.contract(net.einsum(), *(arrays[t.name] for t in net.tensors), optimize=path)
    np.testing.assert_allclose(got, arrays["x"] @ arrays["U"] @ arrays["V"] @ arrays["W"],
                               rtol=1e-12)
    single = TensorNetwork([Tensor("x", ("b", "i"))], {"b": 2, "i": 3}, ("b",))
    assert single.sequential_path() == [(0,)] and single.path_macs([(0,)]) == 0


@pytest.mark.parametrize("path,message", [
    ([(0, 0), (0, 1)], r"Path step \(0, 0\) is not one or two distinct positions below 3"),
    ([(0, 3)], r"Path step \(0, 3\) is not one or two distinct positions below 3"),
    ([(0, 1, 2)], r"Path step \(0, 1, 2\) is not one or two distinct positions below 3"),
    ([(0, 1)], r"Path \[\(0, 1\)\] leaves 2 operands, not 1"),
])
def test_path_macs_rejects_bad_paths(path, message):
    net = TensorNetwork([Tensor("x", ("b", "i")), Tensor("U", ("i", "j")), Tensor("V", ("j", "k"))],
                        {"b": 2, "i": 2, "j": 2, "k": 2}, ("b", "k"))
    with pytest.raises(ValueError, match=message):
        net.path_macs(path)
