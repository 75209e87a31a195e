"""CSSE stage 1: exact search over pairwise contraction orders, counted in multiply-accumulates.

A tensor network is contracted by a sequence of pairwise steps. Any pair of operands may be
contracted, including pairs that share no index (outer products). A step ``C = A * B`` costs one
multiply-accumulate (MAC) per point of the joint index space of its operands, that is the product
of the sizes of all indices of ``A`` and ``B``. The result keeps an index while a tensor that is
not yet contracted, or the network output, still needs it; an index shared by three or more
tensors (a hyperedge) therefore survives several steps.

:func:`search` is exact: a dynamic program over subsets of tensors (bitmasks) keeps, for every
subset, the ``k`` cheapest distinct contraction trees, and prunes every split whose lower bound
already exceeds the ``k``-th best cost found for that subset. It needs ``3**n / 2`` splits for
``n`` tensors: about 30,000 for ten tensors, a few tens of milliseconds.

The baselines return the same :class:`ContractionTree` type: :func:`sequential_tree` (the order
written), :func:`greedy_tree` (opt_einsum's greedy) and :func:`reference_tree`
(opt_einsum's ``DynamicProgramming(minimize="flops", search_outer=True)``, the exact reference
used by tests and benchmarks).
"""

import heapq
import itertools
import math
import time
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ContractionStep", "ContractionTree", "search", "optimal_tree", "sequential_tree",
    "greedy_tree", "reference_tree", "tree_from_path", "benchmark_search", "print_benchmark",
    "random_network", "benchmark_random_networks", "register",
]

# numpy.einsum accepts only these letters; each step maps its own indices onto them.
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class ContractionStep:
    """One pairwise contraction ``result[indices] = sum left[left_indices] * right[right_indices]``.

    Indices of the operands that are absent from ``indices`` are summed. ``macs`` is the product
    of the sizes of all indices of both operands.
    """
    left: str
    right: str
    result: str
    left_indices: tuple
    right_indices: tuple
    indices: tuple
    macs: int

    @property
    def summed(self):
        """Indices summed by this step, in operand order."""
        seen = dict.fromkeys(self.left_indices + self.right_indices)
        return tuple(i for i in seen if i not in self.indices)


class ContractionTree:
    """A binary contraction tree of a tensor network, as a sequence of pairwise steps.

    Parameters
    ----------
    network : TensorNetwork
        The network (``tensors``, ``sizes``, ``output``).
    nested : str or tuple
        The tree: a tensor name, or a pair ``(left, right)`` of trees, covering every tensor of
        the network once.

    Intermediates are named ``"%1"``, ``"%2"``, ... in the order they are produced (post-order:
    left subtree, right subtree, then the node). An intermediate keeps its indices in the order
    they first appear in the network; the last step's result is in the order of
    ``network.output``.

    Raises
    ------
    ValueError
        If ``nested`` is not a binary tree over exactly the tensors of the network.
    """

    def __init__(self, network, nested):
        names = [t.name for t in network.tensors]
        leaves = list(_leaves(nested))
        if sorted(leaves) != sorted(names):
            raise ValueError(f"A contraction tree must use every tensor of the network once "
                             f"({sorted(names)!r}), not {sorted(leaves)!r}")
        self._network = network
        self._nested = nested
        self._steps = tuple(_steps_of(network, nested))
        self._macs = sum(s.macs for s in self._steps)

    @property
    def network(self):
        return self._network

    @property
    def nested(self):
        """The tree as nested pairs of tensor names."""
        return self._nested

    @property
    def steps(self):
        """The pairwise steps, each operand produced before it is used."""
        return self._steps

    @property
    def macs(self):
        """Total multiply-accumulates of all steps."""
        return self._macs

    @property
    def result(self):
        """Name of the tensor that holds the network's output."""
        return self._steps[-1].result if self._steps else self._network.tensors[0].name

    @property
    def path(self):
        """The steps as an opt_einsum linear path (pairs of positions in a shrinking list)."""
        current = [t.name for t in self._network.tensors]
        path = []
        for s in self._steps:
            a, b = current.index(s.left), current.index(s.right)
            path.append((a, b))
            for p in sorted((a, b), reverse=True):
                del current[p]
            current.append(s.result)
        return path

    @property
    def key(self):
        """A canonical form of the tree: equal for trees that differ only in operand order."""
        return _canonical(self._nested)

    def __eq__(self, other):
        return isinstance(other, ContractionTree) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return f"ContractionTree({_format(self._nested)}, macs={self._macs:,})"

    def evaluate(self, arrays):
        """Contract the network step by step on numpy arrays, in float64.

        Parameters
        ----------
        arrays : dict
            One array per tensor name, shaped as the tensor's indices.

        Returns
        -------
        numpy.ndarray
            The output, its axes in the order of ``network.output``.

        Raises
        ------
        ValueError
            If an array is missing.
        """
        values = _inputs(arrays, [t.name for t in self._network.tensors])
        if not self._steps:
            (t,) = self._network.tensors
            return _einsum([values[t.name]], [t.indices], tuple(self._network.output))
        for s in self._steps:
            values[s.result] = _einsum([values[s.left], values[s.right]],
                                       [s.left_indices, s.right_indices], s.indices)
        return values[self.result]


def _inputs(arrays, names):
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"No array given for tensor(s) {missing!r}")
    return {n: np.asarray(arrays[n], dtype=np.float64) for n in names}


def _einsum(operands, operand_indices, out):
    letters = {}
    for idx in itertools.chain(*operand_indices, out):
        if idx not in letters:
            letters[idx] = _LETTERS[len(letters)]
    spec = ",".join("".join(letters[i] for i in ix) for ix in operand_indices)
    spec += "->" + "".join(letters[i] for i in out)
    return np.einsum(spec, *operands)


def _leaves(nested):
    if isinstance(nested, str):
        yield nested
        return
    if not isinstance(nested, tuple) or len(nested) != 2:
        raise ValueError(f"A contraction tree node must be a tensor name or a pair, "
                         f"not {nested!r}")
    yield from _leaves(nested[0])
    yield from _leaves(nested[1])


def _canonical(nested):
    if isinstance(nested, str):
        return nested
    a, b = _canonical(nested[0]), _canonical(nested[1])
    return (a, b) if repr(a) <= repr(b) else (b, a)


def _format(nested):
    if isinstance(nested, str):
        return nested
    return f"({_format(nested[0])} {_format(nested[1])})"


def _steps_of(network, nested):
    order = {}
    for t in network.tensors:
        for i in t.indices:
            order.setdefault(i, len(order))
    indices_of = {t.name: tuple(t.indices) for t in network.tensors}
    sizes = network.sizes
    output = tuple(network.output)
    steps = []

    def visit(node, root):
        # Returns (name, indices, set of leaf names) of the subtree.
        if isinstance(node, str):
            return node, indices_of[node], {node}
        lname, lix, lset = visit(node[0], False)
        rname, rix, rset = visit(node[1], False)
        inside = lset | rset
        needed = set(output)
        for t in network.tensors:
            if t.name not in inside:
                needed.update(t.indices)
        joint = dict.fromkeys(lix + rix)
        if root:
            kept = output
        else:
            kept = tuple(sorted((i for i in joint if i in needed), key=order.__getitem__))
        name = f"%{len(steps) + 1}"
        steps.append(ContractionStep(lname, rname, name, lix, rix, kept,
                                     math.prod(sizes[i] for i in joint)))
        return name, kept, inside

    visit(nested, True)
    return steps


def search(network, k=1):
    """Find the ``k`` cheapest distinct contraction trees of a network.

    Parameters
    ----------
    network : TensorNetwork
        The network to contract.
    k : int
        How many trees to keep (at least 1).

    Returns
    -------
    list of ContractionTree
        At most ``k`` trees, sorted by MACs (ties in a deterministic order); fewer if the network
        has fewer distinct trees. The first is a MAC-optimal tree.

    Raises
    ------
    ValueError
        If ``k`` is not a positive integer.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"The number of trees to keep must be a positive integer, not {k!r}")
    tensors = list(network.tensors)
    if len(tensors) == 1:
        return [ContractionTree(network, tensors[0].name)]
    bit = {}
    for t in tensors:
        for i in t.indices:
            bit.setdefault(i, len(bit))
    for i in network.output:
        bit.setdefault(i, len(bit))
    sizes = [0] * len(bit)
    for i, b in bit.items():
        sizes[b] = network.sizes[i]
    masks = [_mask(t.indices, bit) for t in tensors]
    out = _mask(network.output, bit)
    entries = _kbest(masks, out, sizes, k)
    names = [t.name for t in tensors]
    full = (1 << len(tensors)) - 1
    return [ContractionTree(network, _nested(entries, full, j, names))
            for j in range(len(entries[full]))]


def optimal_tree(network):
    """A MAC-optimal contraction tree of ``network`` (``search(network, 1)[0]``)."""
    return search(network, 1)[0]


def _mask(indices, bit):
    m = 0
    for i in indices:
        m |= 1 << bit[i]
    return m


def _kbest(masks, out, sizes, k):
    """Subset DP: ``entries[s]`` lists the ``k`` best trees of subset ``s`` as
    ``(cost, s1, j1, s2, j2)``, sorted by cost, children referred to by subset and rank."""
    n = len(masks)
    full = (1 << n) - 1
    union = [0] * (full + 1)
    for s in range(1, full + 1):
        low = s & -s
        union[s] = union[s ^ low] | masks[low.bit_length() - 1]
    keep = [0] * (full + 1)
    for s in range(1, full + 1):
        keep[s] = union[s] & (union[full ^ s] | out)
    for j in range(n):
        keep[1 << j] = masks[j]  # a leaf holds all its indices until its first step
    size_cache = {}

    def size(m):
        v = size_cache.get(m)
        if v is None:
            v = 1
            mm = m
            while mm:
                low = mm & -mm
                v *= sizes[low.bit_length() - 1]
                mm ^= low
            size_cache[m] = v
        return v

    entries = [None] * (full + 1)
    for j in range(n):
        entries[1 << j] = [(0, 0, 0, 0, 0)]
    # Submasks are smaller integers, so increasing order visits children first.
    for s in range(3, full + 1):
        low = s & -s
        if s == low:
            continue
        rest = s ^ low
        heap = []  # max-heap on (cost, order) through negation: the k best so far
        counter = 0
        sub = rest
        while True:
            sub = (sub - 1) & rest
            s1 = low | sub
            s2 = s ^ s1
            e1, e2 = entries[s1], entries[s2]
            merge = size(keep[s1] | keep[s2])
            full_heap = len(heap) == k
            if not full_heap or e1[0][0] + e2[0][0] + merge < -heap[0][0]:
                for j1, a in enumerate(e1):
                    if len(heap) == k and a[0] + e2[0][0] + merge >= -heap[0][0]:
                        break
                    for j2, b in enumerate(e2):
                        cost = a[0] + b[0] + merge
                        if len(heap) == k:
                            if cost >= -heap[0][0]:
                                break
                            heapq.heapreplace(heap, (-cost, -counter, s1, j1, s2, j2))
                        else:
                            heapq.heappush(heap, (-cost, -counter, s1, j1, s2, j2))
                        counter += 1
            if sub == 0:
                break
        entries[s] = [(-c, s1, j1, s2, j2) for c, _, s1, j1, s2, j2 in
                      sorted(heap, key=lambda e: (-e[0], -e[1]))]
    return entries


def _nested(entries, s, j, names):
    if s & (s - 1) == 0:
        return names[s.bit_length() - 1]
    _, s1, j1, s2, j2 = entries[s][j]
    return (_nested(entries, s1, j1, names), _nested(entries, s2, j2, names))


def sequential_tree(network):
    """The order written: the first tensor contracted with each of the others in turn."""
    names = [t.name for t in network.tensors]
    nested = names[0]
    for name in names[1:]:
        nested = (nested, name)
    return ContractionTree(network, nested)


def tree_from_path(network, path):
    """Turn an opt_einsum path (pairs of positions in a shrinking list) into a tree.

    Raises
    ------
    ValueError
        If a path entry is not a pair of distinct valid positions, or the path does not end with
        a single tensor.
    """
    nodes = [t.name for t in network.tensors]
    for entry in path:
        entry = tuple(entry)
        if (len(entry) != 2 or entry[0] == entry[1]
                or not all(0 <= p < len(nodes) for p in entry)):
            raise ValueError(f"A path entry must be a pair of distinct positions among "
                             f"{len(nodes)} tensors, not {entry!r}")
        a, b = sorted(entry)
        pair = (nodes[a], nodes[b])
        del nodes[b], nodes[a]
        nodes.append(pair)
    if len(nodes) != 1:
        raise ValueError(f"A path must contract the network to one tensor, not leave "
                         f"{len(nodes)}")
    return ContractionTree(network, nodes[0])


def _opt_einsum_problem(network):
    import opt_einsum
    symbol = {}
    for t in network.tensors:
        for i in t.indices:
            symbol.setdefault(i, opt_einsum.get_symbol(len(symbol)))
    inputs = [frozenset(symbol[i] for i in t.indices) for t in network.tensors]
    output = frozenset(symbol[i] for i in network.output)
    sizes = {symbol[i]: network.sizes[i] for i in symbol}
    return inputs, output, sizes


def greedy_tree(network):
    """opt_einsum's greedy contraction order."""
    import opt_einsum
    if len(network.tensors) == 1:
        return sequential_tree(network)
    return tree_from_path(network, opt_einsum.paths.greedy(*_opt_einsum_problem(network)))


def reference_tree(network):
    """opt_einsum's exact ``DynamicProgramming(minimize="flops", search_outer=True)`` order.

    Its internal cost for ``flops`` is the MAC count used here; indices held by a single tensor
    are summed by opt_einsum in a separate single-tensor step, which this tree type does not
    have, so such networks raise ``ValueError``.
    """
    import opt_einsum
    if len(network.tensors) == 1:
        return sequential_tree(network)
    finder = opt_einsum.DynamicProgramming(minimize="flops", search_outer=True)
    return tree_from_path(network, finder(*_opt_einsum_problem(network)))


def benchmark_search(layers=None, *, k=1, tokens=None):
    """Time stage 1 on every network of the benchmark layers.

    Parameters
    ----------
    layers : list of TNNLayer, optional
        Defaults to the twelve benchmark layers.
    k : int
        Trees kept per network.
    tokens : int, optional
        Token count passed to the layers' networks (their own default if omitted).

    Returns
    -------
    list of dict
        One row per network: ``layer``, ``network``, ``tensors``, ``macs`` (optimum),
        ``sequential_macs``, ``greedy_macs``, ``seconds`` (search time).
    """
    if layers is None:
        from .layers import load_layers
        layers = load_layers()
    rows = []
    for layer in layers:
        for kind, net in layer.networks(tokens).items():
            start = time.perf_counter()
            best = search(net, k)[0]
            seconds = time.perf_counter() - start
            rows.append({
                "layer": layer.id, "network": kind, "tensors": len(net.tensors),
                "macs": best.macs, "sequential_macs": sequential_tree(net).macs,
                "greedy_macs": greedy_tree(net).macs, "seconds": seconds,
            })
    return rows


def random_network(tensors, rng, *, indices=None, max_size=16):
    """A random network for timing: each tensor holds 2 to 4 of ``indices`` (default
    ``tensors + 4``) random indices, so hyperedges and outer products occur; sizes 2 to
    ``max_size``; the output holds every index used once and a few more."""
    from .tensornet import Tensor, TensorNetwork
    names = [f"i{j}" for j in range(tensors + 4 if indices is None else indices)]
    held = [tuple(rng.choice(names, size=int(rng.integers(2, 5)), replace=False))
            for _ in range(tensors)]
    counts = {}
    for ix in held:
        for i in ix:
            counts[i] = counts.get(i, 0) + 1
    output = [i for i in counts if counts[i] == 1 or rng.random() < 0.15]
    sizes = {i: int(rng.integers(2, max_size + 1)) for i in names}
    return TensorNetwork([Tensor(f"T{j}", ix) for j, ix in enumerate(held)], sizes, output)


def benchmark_random_networks(tensors=10, *, count=20, k=1, seed=0):
    """Search times in seconds on ``count`` random networks of ``tensors`` tensors."""
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(count):
        net = random_network(tensors, rng)
        start = time.perf_counter()
        search(net, k)
        times.append(time.perf_counter() - start)
    return times


def print_benchmark(rows=None, *, file=None):
    """Print :func:`benchmark_search` rows as a table (computes them if not given)."""
    import sys
    file = sys.stdout if file is None else file
    rows = benchmark_search() if rows is None else rows
    print(f"{'layer':<6} {'network':<12} {'n':>2} {'optimum MACs':>16} {'sequential':>16} "
          f"{'greedy':>16} {'search ms':>9}", file=file)
    for r in rows:
        print(f"{r['layer']:<6} {r['network']:<12} {r['tensors']:>2} {r['macs']:>16,} "
              f"{r['sequential_macs']:>16,} {r['greedy_macs']:>16,} "
              f"{1e3 * r['seconds']:>9.1f}", file=file)
    return rows


def register(sub):
    """Add the ``search`` subcommand to the ``fetta`` command line (an argparse subparsers object).

    ``fetta search [LAYERS.json] [--k K] [--tokens T]`` prints the stage 1 table for every network
    of the layers (the twelve benchmark layers by default), then the joint training step table.
    """
    parser = sub.add_parser("search", help="contraction-order search on benchmark layers",
                            description="Stage 1 of the CSSE: exact contraction orders in MACs "
                                        "and the joint training step of each layer.")
    parser.add_argument("layers", nargs="?", default=None,
                        help="layer JSON file (default: the benchmark layers)")
    parser.add_argument("--k", type=int, default=8, help="forward trees considered (default 8)")
    parser.add_argument("--tokens", type=int, default=None,
                        help="token count (default: each layer's own)")
    parser.set_defaults(run=_run)


def _run(args):
    from .layers import load_layers
    from .training import benchmark_training, print_training_benchmark
    layers = load_layers(args.layers)
    print_benchmark(benchmark_search(layers, k=args.k, tokens=args.tokens))
    print()
    print_training_benchmark(benchmark_training(layers, k=args.k, tokens=args.tokens))
    return 0
