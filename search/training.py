"""The joint training step of a tensorized layer: forward and backward as one DAG of pairwise steps.

The forward pass contracts ``x`` and the cores along a contraction tree (see :mod:`.csse`) and
keeps its intermediates. The backward pass is reverse-mode differentiation of that tree: the
gradient ``dy`` flows from the root to the leaves, and every forward step ``C = A * B`` yields two
backward steps ``dA = dC * B`` and ``dB = dC * A``. The leaves' gradients are the input gradient
``dx`` and one gradient per core.

Cost. A backward step ``dA = dC * B`` spans the indices of ``C``, ``B`` and ``A``; as ``C``'s
indices are a subset of ``A``'s and ``B``'s, that is exactly the index space of the forward step,
so it costs the same MACs. A training step that needs every leaf gradient therefore costs exactly
three times the MACs of its forward tree, against ``d + 2`` optimized networks (forward, input
gradient, ``d`` core gradients) when each is contracted on its own. The MAC-optimal forward tree
is thus MAC-optimal for the joint step too; :func:`plan_training_step` ranks the ``k`` best
forward trees by joint MACs and then by peak live memory.

Memory. Steps run in the order listed: the forward steps in post-order, then the backward steps
depth-first from the root. A tensor is live from the step that produces it (layer inputs from
the start) to its last use; the forward output and the gradients stay live to the end. The
schedule reports the elements of every tensor and the live set at every step.
"""

import itertools
import sys
import time
from dataclasses import dataclass
from math import prod

from .csse import ContractionStep, ContractionTree, _einsum, _inputs, search

__all__ = [
    "TrainingStep", "TrainingSchedule", "training_schedule", "plan_training_step",
    "independent_macs", "exhaustive_joint_macs", "benchmark_training",
    "print_training_benchmark",
]


@dataclass(frozen=True)
class TrainingStep(ContractionStep):
    """One pairwise step of a training step: a :class:`~fetta.search.csse.ContractionStep`
    (``result[indices] = sum left[left_indices] * right[right_indices]``) with its ``kind``,
    ``"forward"`` or ``"backward"``."""
    kind: str


class TrainingSchedule:
    """Forward and backward steps of one training step, with sizes and liveness.

    Build with :func:`training_schedule` or :func:`plan_training_step`.

    Attributes
    ----------
    forward_tree : ContractionTree
        The forward tree whose intermediates the backward steps reuse.
    grad_output : str
        Name of the incoming gradient of the forward output (``"dy"``).
    steps : tuple of TrainingStep
        Forward steps, then backward steps; every operand exists before it is used.
    outputs : dict of str to str
        ``"y"`` and ``"d<leaf>"`` for every leaf gradient computed, mapped to the tensor that
        holds it.
    indices : dict of str to tuple
        Indices of every tensor (inputs, intermediates, outputs).
    elements : dict of str to int
        Elements of every tensor.
    """

    def __init__(self, forward_tree, grad_output, steps, outputs, indices, sizes):
        self.forward_tree = forward_tree
        self.grad_output = grad_output
        self.steps = tuple(steps)
        self.outputs = dict(outputs)
        self.indices = dict(indices)
        self.elements = {n: prod(sizes[i] for i in ix) for n, ix in self.indices.items()}
        self._live = self._liveness()

    @property
    def macs(self):
        """Total MACs of the training step."""
        return sum(s.macs for s in self.steps)

    @property
    def forward_macs(self):
        return sum(s.macs for s in self.steps if s.kind == "forward")

    @property
    def backward_macs(self):
        return sum(s.macs for s in self.steps if s.kind == "backward")

    @property
    def inputs(self):
        """Names of the tensors the step starts from: forward leaves and ``grad_output``."""
        return tuple(t.name for t in self.forward_tree.network.tensors) + (self.grad_output,)

    @property
    def kept(self):
        """Forward intermediates that the backward steps read, with their elements."""
        backward_operands = {n for s in self.steps if s.kind == "backward"
                             for n in (s.left, s.right)}
        return {s.result: self.elements[s.result] for s in self.steps
                if s.kind == "forward" and s.result in backward_operands}

    @property
    def live(self):
        """Per step, the names of the tensors live while it runs (operands and result included)."""
        return self._live

    @property
    def live_elements(self):
        """Per step, the elements of the live set."""
        return [sum(self.elements[n] for n in names) for names in self._live]

    @property
    def peak_live_elements(self):
        """Largest live set over the steps, in elements (inputs included)."""
        return max(self.live_elements, default=sum(self.elements[n] for n in self.inputs))

    def peak_live_bytes(self, element_bytes):
        """Largest live set in bytes for ``element_bytes`` bytes per element."""
        if not isinstance(element_bytes, int) or isinstance(element_bytes, bool) \
                or element_bytes < 1:
            raise ValueError(f"Bytes per element must be a positive integer, not "
                             f"{element_bytes!r}")
        return self.peak_live_elements * element_bytes

    def _liveness(self):
        last = len(self.steps)
        born = {n: -1 for n in self.inputs}
        dies = {}
        for t, s in enumerate(self.steps):
            born[s.result] = t
            dies[s.left] = t
            dies[s.right] = t
        for n in self.outputs.values():
            dies[n] = last
        return [tuple(n for n in born if born[n] <= t <= dies.get(n, born[n]))
                for t in range(last)]

    def evaluate(self, arrays):
        """Run the steps on numpy arrays in float64.

        Parameters
        ----------
        arrays : dict
            One array per input (forward leaves and ``grad_output``), shaped as its indices.

        Returns
        -------
        dict of str to numpy.ndarray
            Every entry of :attr:`outputs`.

        Raises
        ------
        ValueError
            If an array is missing.
        """
        values = _inputs(arrays, self.inputs)
        for s in self.steps:
            values[s.result] = _einsum([values[s.left], values[s.right]],
                                       [s.left_indices, s.right_indices], s.indices)
        return {k: values[n] for k, n in self.outputs.items()}

    def __repr__(self):
        return (f"TrainingSchedule({len(self.steps)} steps, macs={self.macs:,}, "
                f"peak_live_elements={self.peak_live_elements:,})")


def training_schedule(forward_tree, *, grad_output="dy", wrt=None):
    """Build the joint training step on a forward contraction tree.

    Parameters
    ----------
    forward_tree : ContractionTree
        A tree of the forward network (leaves ``x`` and the cores).
    grad_output : str
        Name given to the incoming gradient of the output; it has the output's indices.
    wrt : iterable of str, optional
        Leaves whose gradients are wanted (default: all). A backward step is emitted only where
        its result leads to a wanted gradient. The gradient of a tensor ``n`` (leaf or forward
        intermediate) is named ``"d" + n``.

    Returns
    -------
    TrainingSchedule

    Raises
    ------
    ValueError
        If the network has fewer than two tensors or an index held by one tensor only and absent
        from the output, ``grad_output`` or a gradient name collides with a tensor of the
        network, or ``wrt`` names a tensor that is not a leaf.
    """
    if not isinstance(forward_tree, ContractionTree):
        raise TypeError(f"The forward tree must be a ContractionTree, not {forward_tree!r}")
    net = forward_tree.network
    if len(net.tensors) < 2:
        raise ValueError(f"A training step needs a network of at least two tensors, not "
                         f"{len(net.tensors)}")
    for t in net.tensors:
        for i in t.indices:
            # Its gradient would be a broadcast along an index no operand holds.
            if i not in net.output and not any(i in u.indices for u in net.tensors if u is not t):
                raise ValueError(f"Index {i!r} of tensor {t.name!r} appears in no other tensor "
                                 f"and not in the output")
    leaves = [t.name for t in net.tensors]
    wrt = tuple(leaves) if wrt is None else tuple(wrt)
    for n in wrt:
        if n not in leaves:
            raise ValueError(f"Gradients can be taken with respect to the leaves {leaves!r}, "
                             f"not {n!r}")
    taken = set(leaves) | {s.result for s in forward_tree.steps}
    for n in (grad_output,) + tuple("d" + n for n in taken):
        if n in taken:
            raise ValueError(f"Gradient name {n!r} collides with a tensor of the network")
    indices = {t.name: tuple(t.indices) for t in net.tensors}
    indices[grad_output] = tuple(net.output)
    steps = []
    for s in forward_tree.steps:
        steps.append(TrainingStep(s.left, s.right, s.result, s.left_indices, s.right_indices,
                                  s.indices, s.macs, kind="forward"))
        indices[s.result] = s.indices
    wanted = set(wrt)
    produced = {}  # node name -> forward step producing it
    for s in forward_tree.steps:
        produced[s.result] = s

    def needs(name):
        if name in produced:
            s = produced[name]
            return needs(s.left) or needs(s.right)
        return name in wanted

    outputs = {"y": forward_tree.result}

    def backward(name, grad):
        # name: a forward tensor; grad: the tensor holding its gradient.
        if name not in produced:
            outputs["d" + name] = grad
            return
        s = produced[name]
        children = []
        for child, sibling in ((s.left, s.right), (s.right, s.left)):
            if needs(child):
                g = "d" + child
                ix = indices[child]
                steps.append(TrainingStep(grad, sibling, g, indices[grad], indices[sibling], ix,
                                          prod(net.sizes[i] for i in
                                               set(indices[grad]) | set(indices[sibling])
                                               | set(ix)), kind="backward"))
                indices[g] = ix
                children.append((child, g))
        for child, g in children:
            backward(child, g)

    if wanted:
        backward(forward_tree.result, grad_output)
    return TrainingSchedule(forward_tree, grad_output, steps, outputs, indices, net.sizes)


def plan_training_step(layer, *, tokens=None, k=8, input_grad=True):
    """Choose the forward tree of a layer's training step and schedule the step.

    The ``k`` MAC-cheapest forward trees are scheduled; the one with the fewest joint MACs wins,
    ties broken by the smaller peak live set, then by rank.

    Parameters
    ----------
    layer : TNNLayer
    tokens : int, optional
        Token count (the layer's own by default).
    k : int
        Forward trees considered.
    input_grad : bool
        Whether ``dx`` is computed (not needed for the first layer of a model).

    Returns
    -------
    TrainingSchedule
    """
    if not isinstance(input_grad, bool):
        raise ValueError(f"input_grad must be a bool, not {input_grad!r}")
    net = layer.forward_network(tokens)
    wrt = [t.name for t in net.tensors if input_grad or t.name != "x"]
    best = None
    for rank, tree in enumerate(search(net, k)):
        schedule = training_schedule(tree, wrt=wrt)
        score = (schedule.macs, schedule.peak_live_elements, rank)
        if best is None or score < best[0]:
            best = (score, schedule)
    return best[1]


def independent_macs(layer, tokens=None):
    """MACs of a training step whose networks are each contracted along their own optimum."""
    return sum(search(net, 1)[0].macs for net in layer.networks(tokens).values())


def exhaustive_joint_macs(forward_network, *, wrt=None, max_tensors=5):
    """Fewest MACs of any DAG of pairwise steps that computes the output and the gradients.

    A check of the reverse-mode schedule, by exhaustion, for small networks. Every intermediate
    of a pairwise DAG is the contraction of a set ``S`` of the tensors ``U`` (the leaves and the
    incoming gradient ``dy``, which carries the output's indices), and its indices are those
    shared between ``S`` and ``U - S`` whichever target it serves. The targets are ``U - {dy}``
    (the output) and ``U - {L}`` (the gradient of leaf ``L``). The search takes one contraction
    tree per target, counts each (set, split) step once however many targets share it, and
    returns the minimum total by branch and bound.

    Parameters
    ----------
    forward_network : TensorNetwork
        Without indices held by a single tensor and absent from the output.
    wrt : iterable of str, optional
        Leaves whose gradients are wanted (default: all).
    max_tensors : int
        Refuse networks with more leaves than this (the number of trees grows as
        ``(2n - 3)!!`` per target).

    Raises
    ------
    ValueError
        If the network has more than ``max_tensors`` or fewer than two tensors, or an index held
        by a single tensor and absent from the output.
    """
    net = forward_network
    if not 2 <= len(net.tensors) <= max_tensors:
        raise ValueError(f"Exhaustive search takes networks of 2 to {max_tensors} tensors, not "
                         f"{len(net.tensors)}")
    idx = {t.name: frozenset(t.indices) for t in net.tensors}
    for name, ix in idx.items():
        for i in ix:
            if i not in net.output and not any(i in v for n, v in idx.items() if n != name):
                raise ValueError(f"Index {i!r} of tensor {name!r} appears in no other tensor "
                                 f"and not in the output")
    grad = object()  # the incoming gradient, a name no tensor can have
    idx[grad] = frozenset(net.output)
    universe = frozenset(idx)
    order = {n: k for k, n in enumerate(idx)}

    def kept(part):
        inside = frozenset().union(*(idx[n] for n in part))
        outside = frozenset().union(*(idx[n] for n in universe - part))
        return inside & outside

    def step_macs(part, first):
        return prod(net.sizes[i] for i in kept(first) | kept(part - first))

    def trees(part):
        # Every tree of ``part`` as a frozenset of (set, first part) steps.
        if len(part) == 1:
            return [frozenset()]
        members = sorted(part, key=order.__getitem__)
        found = []
        for r in range(len(members) - 1):
            for extra in itertools.combinations(members[1:], r):
                first = frozenset((members[0],) + extra)
                for a in trees(first):
                    for b in trees(part - first):
                        found.append(a | b | {(part, first)})
        return found

    leaves = [t.name for t in net.tensors] if wrt is None else list(wrt)
    targets = [universe - {grad}] + [universe - {n} for n in leaves]
    cost = {}
    options = []
    for target in targets:
        ts = trees(target)
        for t in ts:
            for step in t:
                if step not in cost:
                    cost[step] = step_macs(*step)
        options.append(sorted(ts, key=lambda t: sum(cost[s] for s in t)))
    best = [sum(cost[s] for t in (o[0] for o in options) for s in t)]
    # Each target's last step makes the target itself, which no other target uses: the cheapest
    # last steps of the targets still open bound the cost still to pay from below.
    last = [min(cost[s] for s in cost if s[0] == target) for target in targets]
    rest = [sum(last[k:]) for k in range(len(targets) + 1)]

    def extend(k, done, total):
        if k == len(options):
            best[0] = total
            return
        for t in options[k]:
            new = t - done
            more = total + sum(cost[s] for s in new)
            if more + rest[k + 1] < best[0]:
                extend(k + 1, done | new, more)

    extend(0, frozenset(), 0)
    return best[0]


def benchmark_training(layers=None, *, tokens=None, k=8):
    """Measure the joint training step on the benchmark layers.

    Returns
    -------
    list of dict
        One row per layer: ``layer``, ``cores``, ``forward_macs`` (forward optimum),
        ``independent_macs`` (sum of the optima of all networks), ``joint_macs``,
        ``peak_live_elements``, ``search_seconds`` (stage 1 on every network) and
        ``plan_seconds`` (:func:`plan_training_step`).
    """
    if layers is None:
        from .layers import load_layers
        layers = load_layers()
    rows = []
    for layer in layers:
        start = time.perf_counter()
        independent = independent_macs(layer, tokens)
        search_seconds = time.perf_counter() - start
        start = time.perf_counter()
        schedule = plan_training_step(layer, tokens=tokens, k=k)
        plan_seconds = time.perf_counter() - start
        rows.append({
            "layer": layer.id, "cores": len(layer.cores),
            "forward_macs": schedule.forward_macs, "independent_macs": independent,
            "joint_macs": schedule.macs, "peak_live_elements": schedule.peak_live_elements,
            "search_seconds": search_seconds, "plan_seconds": plan_seconds,
        })
    return rows


def print_training_benchmark(rows=None, *, file=None):
    """Print :func:`benchmark_training` rows as a table (computes them if not given)."""
    file = sys.stdout if file is None else file
    rows = benchmark_training() if rows is None else rows
    print(f"{'layer':<6} {'d':>2} {'forward opt':>15} {'independent':>16} {'joint':>16} "
          f"{'ind/fwd':>7} {'joint/fwd':>9} {'peak live':>13} {'search ms':>9} {'plan ms':>8}",
          file=file)
    for r in rows:
        print(f"{r['layer']:<6} {r['cores']:>2} {r['forward_macs']:>15,} "
              f"{r['independent_macs']:>16,} {r['joint_macs']:>16,} "
              f"{r['independent_macs'] / r['forward_macs']:>7.2f} "
              f"{r['joint_macs'] / r['forward_macs']:>9.2f} {r['peak_live_elements']:>13,} "
              f"{1e3 * r['search_seconds']:>9.1f} {1e3 * r['plan_seconds']:>8.1f}", file=file)
    return rows
