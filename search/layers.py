"""Tensorized linear layers (TT, TTM, Tucker, CP, tensor ring) and their training networks.

A layer maps activations ``x`` of shape ``(tokens, prod(in_modes))`` to ``y = x @ W`` of shape
``(tokens, prod(out_modes))``, where the weight ``W`` is stored as a network of small cores. Each
layer gives the tensor networks of one training step: the forward pass, the input gradient and
one network per core gradient (see docs/layers.md for the core layouts).

Index names follow ``workloads/tnn_layers.json``: ``b`` = tokens, ``i..n`` = input modes,
``p..u`` = output modes, ``A, B, C, ...`` = rank indices in order, ``Z`` = ring rank, ``R`` = CP
rank. Activations are indexed ``x[b, i, j, ...]`` and ``y[b, p, q, ...]``; flattening the mode
indices row-major gives the matrix view.
"""

import json
from importlib import resources
from math import prod
from numbers import Integral
from pathlib import Path

import numpy as np

from .tensornet import Tensor, TensorNetwork

__all__ = [
    "TNNLayer", "TTLayer", "TTMLayer", "TuckerLayer", "CPLayer", "TensorRingLayer",
    "FORMATS", "MAX_MODES", "layer_from_spec", "load_layers", "layer_summary", "register",
]

MAX_MODES = 6
_IN = "ijklmn"
_OUT = "pqrstu"
# R and Z are reserved for the CP rank and the ring rank.
_RANK = "ABCDEFGHIJKLMNOPQSTUVWXY"


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _positive_int(field, value):
    if not _is_int(value):
        raise TypeError(f"{field} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{field} must be a positive integer, not {value!r}")
    return int(value)


def _int_list(field, value):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{field} must be a list of positive integers, not {value!r}")
    if not value:
        raise ValueError(f"{field} must not be empty, not {value!r}")
    return tuple(_positive_int(f"{field}[{k}]", v) for k, v in enumerate(value))


class TNNLayer:
    """Base class of the tensorized linear layers.

    All parameters are keyword-only and checked at once.

    Parameters
    ----------
    in_modes : sequence of int
        Factorization of the input features, ``prod(in_modes)`` inputs; 1 to 6 modes.
    out_modes : sequence of int
        Factorization of the output features; 1 to 6 modes.
    ranks : sequence of int
        Ranks in the convention of the format (see the subclasses).
    tokens : int
        Rows of the activations (batch times sequence length).
    id : str
        A label, e.g. the benchmark id ``"B3"``.

    Raises
    ------
    TypeError
        If a field has the wrong type (a mode, rank or token count that is not an integer).
    ValueError
        If a value is out of range or the fields do not fit together; the message names the field
        and quotes its value.

    Attributes
    ----------
    format : str
        ``"tt"``, ``"ttm"``, ``"tucker"``, ``"cp"`` or ``"tr"``.
    in_modes, out_modes, ranks : tuple of int
    tokens : int
    id : str
    cores : tuple of Tensor
        The cores ``G1, G2, ...`` with their indices.
    """

    format = None

    def __init__(self, *, in_modes, out_modes, ranks, tokens, id=""):
        if self.format is None:
            names = ", ".join(cls.__name__ for cls in FORMATS.values())
            raise TypeError(f"TNNLayer is abstract; use one of {names}")
        if not isinstance(id, str):
            raise TypeError(f"id must be a string, not {id!r}")
        self._id = id
        self._in_modes = _int_list("in_modes", in_modes)
        self._out_modes = _int_list("out_modes", out_modes)
        for field, modes in (("in_modes", self._in_modes), ("out_modes", self._out_modes)):
            if len(modes) > MAX_MODES:
                raise ValueError(f"{field} may have at most {MAX_MODES} modes, not {list(modes)!r}")
        self._ranks = _int_list("ranks", ranks)
        self._tokens = _positive_int("tokens", tokens)
        self._check_shapes()
        self._sizes = dict(zip(_IN, self._in_modes))
        self._sizes.update(zip(_OUT, self._out_modes))
        cores, rank_sizes = self._build_cores()
        self._sizes.update(rank_sizes)
        self._cores = tuple(cores)

    # Subclasses: check the lengths of modes and ranks, and give the cores and rank index sizes.
    def _check_shapes(self):
        raise NotImplementedError

    def _build_cores(self):
        raise NotImplementedError

    def _need_equal_d(self):
        if len(self._out_modes) != len(self._in_modes):
            raise ValueError(f"out_modes of a {self.format!r} layer must have as many modes as "
                             f"in_modes ({len(self._in_modes)}), not {list(self._out_modes)!r}")

    def _need_ranks(self, count, what):
        if len(self._ranks) != count:
            raise ValueError(f"ranks of a {self.format!r} layer with in_modes "
                             f"{list(self._in_modes)!r} and out_modes {list(self._out_modes)!r} "
                             f"must have {count} entries ({what}), not {list(self._ranks)!r}")

    def __repr__(self):
        return (f"{type(self).__name__}(in_modes={self._in_modes!r}, out_modes={self._out_modes!r}, "
                f"ranks={self._ranks!r}, tokens={self._tokens!r}, id={self._id!r})")

    def _key(self):
        return (self.format, self._in_modes, self._out_modes, self._ranks, self._tokens, self._id)

    def __eq__(self, other):
        return isinstance(other, TNNLayer) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    @property
    def id(self):
        return self._id

    @property
    def in_modes(self):
        return self._in_modes

    @property
    def out_modes(self):
        return self._out_modes

    @property
    def ranks(self):
        return self._ranks

    @property
    def tokens(self):
        return self._tokens

    @property
    def cores(self):
        return self._cores

    @property
    def core_names(self):
        """Names of the cores, ``("G1", "G2", ...)``."""
        return tuple(core.name for core in self._cores)

    @property
    def in_features(self):
        return prod(self._in_modes)

    @property
    def out_features(self):
        return prod(self._out_modes)

    @property
    def sizes(self):
        """Sizes of the mode and rank indices (without the token index ``b``)."""
        return dict(self._sizes)

    @property
    def x_indices(self):
        """Indices of the input activation ``x`` (and of its gradient ``dx``)."""
        return ("b",) + tuple(_IN[:len(self._in_modes)])

    @property
    def y_indices(self):
        """Indices of the output activation ``y`` (and of its gradient ``dy``)."""
        return ("b",) + tuple(_OUT[:len(self._out_modes)])

    @property
    def params(self):
        """Number of weights stored in the cores."""
        return sum(prod(self.core_shape(name)) for name in self.core_names)

    def _core(self, name):
        for core in self._cores:
            if core.name == name:
                return core
        raise KeyError(f"No core named {name!r} in layer {self._id!r}; cores are "
                       f"{self.core_names!r}")

    def core_shape(self, name):
        """Return the shape of core ``name`` (``"G1"``, ...)."""
        return tuple(self._sizes[index] for index in self._core(name).indices)

    def _network(self, tensors, output, tokens, kind):
        tokens = self._tokens if tokens is None else _positive_int("tokens", tokens)
        sizes = dict(self._sizes, b=tokens)
        name = f"{self._id}:{kind}" if self._id else kind
        return TensorNetwork(tensors, sizes, output, name=name)

    def forward_network(self, tokens=None):
        """Return the network ``x, G1, G2, ... -> y`` (``tokens`` defaults to the layer's)."""
        x = Tensor("x", self.x_indices)
        return self._network((x,) + self._cores, self.y_indices, tokens, "forward")

    def input_grad_network(self, tokens=None):
        """Return the network ``dy, G1, G2, ... -> dx``, that is ``dx = dy @ W.T``."""
        dy = Tensor("dy", self.y_indices)
        return self._network((dy,) + self._cores, self.x_indices, tokens, "input_grad")

    def core_grad_networks(self, tokens=None):
        """Return one network per core: ``x, dy`` and the other cores ``-> dG_K``.

        Network ``K - 1`` gives the gradient of ``L = sum(dy * y)`` with respect to core ``G_K``;
        its output indices are those of ``G_K``.
        """
        x = Tensor("x", self.x_indices)
        dy = Tensor("dy", self.y_indices)
        networks = []
        for k, core in enumerate(self._cores, start=1):
            others = tuple(c for c in self._cores if c is not core)
            networks.append(self._network((x, dy) + others, core.indices, tokens, f"core_grad:{k}"))
        return networks

    def networks(self, tokens=None):
        """Return all networks of a training step: ``{"forward", "input_grad", "core_grad:1", ...}``."""
        result = {"forward": self.forward_network(tokens),
                  "input_grad": self.input_grad_network(tokens)}
        for k, network in enumerate(self.core_grad_networks(tokens), start=1):
            result[f"core_grad:{k}"] = network
        return result

    def weight_network(self):
        """Return the network ``G1, G2, ... -> W`` with output indices in modes then out modes."""
        output = self.x_indices[1:] + self.y_indices[1:]
        name = f"{self._id}:weight" if self._id else "weight"
        return TensorNetwork(self._cores, self._sizes, output, name=name)

    def dense_weight(self, cores):
        """Return the dense weight ``W`` of shape ``(in_features, out_features)`` in float64.

        ``cores`` maps core names to arrays of the core shapes; ``x_flat @ W`` equals the forward
        network with ``x`` and ``y`` flattened row-major over their mode indices.
        """
        w = self.weight_network().contract(cores)
        return w.reshape(self.in_features, self.out_features)

    def random_cores(self, rng, scale=None):
        """Return random float64 cores ``{"G1": ..., ...}`` drawn from ``rng.normal``.

        Parameters
        ----------
        rng : numpy.random.Generator
        scale : float, optional
            Standard deviation of every core entry. By default it is chosen so that the entries
            of ``W`` have variance ``1 / in_features`` (outputs of unit variance for inputs of
            unit variance).
        """
        if scale is None:
            terms = prod(size for index, size in self._sizes.items()
                         if index not in _IN and index not in _OUT)
            scale = (1.0 / (self.in_features * terms)) ** (1.0 / (2 * len(self._cores)))
        return {name: rng.normal(0.0, scale, self.core_shape(name)) for name in self.core_names}

    def dense_macs(self, tokens=None):
        """Return the multiply-accumulates of the dense layer, ``tokens * in_features * out_features``."""
        tokens = self._tokens if tokens is None else _positive_int("tokens", tokens)
        return tokens * self.in_features * self.out_features

    def sequential_forward_macs(self, tokens=None):
        """Return the MACs of the forward pass contracting ``x`` with the cores in written order."""
        network = self.forward_network(tokens)
        return network.path_macs(network.sequential_path())

    def _rank_bounds(self, max_rank):
        return tuple(min(r, max_rank) for r in self._ranks)

    def scaled(self, tokens=4, *, max_mode=3, max_rank=2, id=None):
        """Return a smaller layer of the same format and structure, for tests and demos.

        Every mode is clipped to ``max_mode`` and every rank to ``max_rank`` (boundary ranks of 1
        stay 1, a ring keeps equal first and last rank); ``None`` keeps the layer's own value.
        """
        tokens = self._tokens if tokens is None else tokens
        clip_mode = (lambda m: m) if max_mode is None else \
            (lambda m: min(m, _positive_int("max_mode", max_mode)))
        ranks = self._ranks if max_rank is None else \
            self._rank_bounds(_positive_int("max_rank", max_rank))
        return type(self)(in_modes=[clip_mode(m) for m in self._in_modes],
                          out_modes=[clip_mode(m) for m in self._out_modes],
                          ranks=list(ranks), tokens=tokens,
                          id=(f"{self._id}-scaled" if self._id else "") if id is None else id)

    def to_spec(self):
        """Return the layer as an entry in the format of ``tnn_layers.json``."""
        spec = {"id": self._id, "format": self.format, "in_modes": list(self._in_modes),
                "out_modes": list(self._out_modes), "ranks": list(self._ranks),
                "tokens": self._tokens, "forward": self.forward_network().einsum(),
                "core_shapes": [list(self.core_shape(n)) for n in self.core_names],
                "dense_macs": self.dense_macs()}
        return spec


class TTLayer(TNNLayer):
    """Tensor-train (TT) layer: one core per input mode, then one per output mode.

    For ``d_in`` input and ``d_out`` output modes there are ``n = d_in + d_out`` cores and
    ``ranks`` has ``n + 1`` entries ``r0 .. rn`` with ``r0 = rn = 1``. Core ``G_k`` has layout
    ``(r_{k-1}, mode_k, r_k)``; the size-1 boundary ranks are dropped, so ``G1`` is
    ``(i, A)`` and ``Gn`` is ``(.., u)``. Forward for 3 + 3 modes: ``bijk,iA,AjB,BkC,CpD,DqE,Er->bpqr``.
    """

    format = "tt"

    def _check_shapes(self):
        n = len(self._in_modes) + len(self._out_modes)
        self._need_ranks(n + 1, "one more than the number of cores")
        if self._ranks[0] != 1 or self._ranks[-1] != 1:
            raise ValueError(f"ranks of a 'tt' layer must start and end with 1, not "
                             f"{list(self._ranks)!r}")

    def _build_cores(self):
        letters = _IN[:len(self._in_modes)] + _OUT[:len(self._out_modes)]
        n = len(letters)
        rank = _RANK[:n - 1]
        cores = []
        for k in range(n):
            indices = ((rank[k - 1],) if k > 0 else ()) + (letters[k],) + \
                ((rank[k],) if k < n - 1 else ())
            cores.append(Tensor(f"G{k + 1}", indices))
        return cores, dict(zip(rank, self._ranks[1:-1]))


class TTMLayer(TNNLayer):
    """Tensor-train-matrix (TTM, MPO) layer, cores as in t3f and tensorly.

    ``d`` input and ``d`` output modes, ``ranks`` ``r0 .. rd`` with ``r0 = rd = 1``. Core ``G_k``
    has layout ``(r_{k-1}, in_k, out_k, r_k)``, boundary ranks dropped. Forward for ``d = 3``:
    ``bijk,ipA,AjqB,Bkr->bpqr``.
    """

    format = "ttm"

    def _check_shapes(self):
        self._need_equal_d()
        self._need_ranks(len(self._in_modes) + 1, "r0 .. rd")
        if self._ranks[0] != 1 or self._ranks[-1] != 1:
            raise ValueError(f"ranks of a 'ttm' layer must start and end with 1, not "
                             f"{list(self._ranks)!r}")

    def _build_cores(self):
        d = len(self._in_modes)
        rank = _RANK[:d - 1]
        cores = []
        for k in range(d):
            indices = ((rank[k - 1],) if k > 0 else ()) + (_IN[k], _OUT[k]) + \
                ((rank[k],) if k < d - 1 else ())
            cores.append(Tensor(f"G{k + 1}", indices))
        return cores, dict(zip(rank, self._ranks[1:-1]))


class TensorRingLayer(TNNLayer):
    """Tensor-ring (TR) layer: TTM-like cores closed into a ring.

    ``d >= 2`` input and ``d`` output modes, ``ranks`` ``r0 .. rd`` with ``r0 = rd``, the ring rank
    (index ``Z``). Core ``G_k`` has layout ``(r_{k-1}, in_k, out_k, r_k)``. Forward for ``d = 3``:
    ``bijk,ZipA,AjqB,BkrZ->bpqr``.
    """

    format = "tr"

    def _check_shapes(self):
        self._need_equal_d()
        if len(self._in_modes) < 2:
            raise ValueError(f"in_modes of a 'tr' layer must have at least 2 modes, not "
                             f"{list(self._in_modes)!r}")
        self._need_ranks(len(self._in_modes) + 1, "r0 .. rd")
        if self._ranks[0] != self._ranks[-1]:
            raise ValueError(f"ranks of a 'tr' layer must start and end with the same ring rank, "
                             f"not {list(self._ranks)!r}")

    def _build_cores(self):
        d = len(self._in_modes)
        rank = ("Z",) + tuple(_RANK[:d - 1]) + ("Z",)
        cores = [Tensor(f"G{k + 1}", (rank[k], _IN[k], _OUT[k], rank[k + 1])) for k in range(d)]
        return cores, dict(zip(rank, self._ranks))


class TuckerLayer(TNNLayer):
    """Tucker layer: a core tensor and one factor matrix per mode.

    ``ranks`` has one entry per mode, the input modes' first: ``d_in + d_out`` entries. ``G1`` is
    the core, with one rank index per mode ``(A, B, ...)``; ``G2 ..`` are the factors, layout
    ``(mode, rank)``. Forward for 3 + 3 modes: ``bijk,ABCDEF,iA,jB,kC,pD,qE,rF->bpqr``.
    """

    format = "tucker"

    def _check_shapes(self):
        self._need_ranks(len(self._in_modes) + len(self._out_modes), "one per mode")

    def _build_cores(self):
        letters = _IN[:len(self._in_modes)] + _OUT[:len(self._out_modes)]
        rank = _RANK[:len(letters)]
        cores = [Tensor("G1", tuple(rank))]
        cores += [Tensor(f"G{k + 2}", (m, r)) for k, (m, r) in enumerate(zip(letters, rank))]
        return cores, dict(zip(rank, self._ranks))


class CPLayer(TNNLayer):
    """CP (canonical polyadic) layer: one factor matrix per mode sharing the rank index ``R``.

    ``ranks`` has one entry, the CP rank. ``G_k`` has layout ``(mode_k, R)``, input modes first;
    ``R`` is a hyperindex shared by all factors. Forward for 3 + 3 modes:
    ``bijk,iR,jR,kR,pR,qR,rR->bpqr``.
    """

    format = "cp"

    def _check_shapes(self):
        self._need_ranks(1, "the CP rank")

    def _build_cores(self):
        letters = _IN[:len(self._in_modes)] + _OUT[:len(self._out_modes)]
        cores = [Tensor(f"G{k + 1}", (m, "R")) for k, m in enumerate(letters)]
        return cores, {"R": self._ranks[0]}


FORMATS = {cls.format: cls for cls in (TTLayer, TTMLayer, TuckerLayer, CPLayer, TensorRingLayer)}

_REQUIRED = ("format", "in_modes", "out_modes", "ranks", "tokens")


def layer_from_spec(spec):
    """Build a layer from a dict in the format of an entry of ``tnn_layers.json``.

    Required fields: ``format``, ``in_modes``, ``out_modes``, ``ranks``, ``tokens``; ``id`` is
    optional. When present, ``in_features``, ``out_features``, ``dense_macs``, ``core_shapes`` and
    ``forward`` must agree with the layer. Other fields (notes, measured MACs) are ignored.

    Raises
    ------
    TypeError, ValueError
        On a missing field, an unknown format or a bad or inconsistent value; the message names
        the field (and the layer id when there is one) and quotes the value.
    """
    if not isinstance(spec, dict):
        raise TypeError(f"A layer spec must be a dict, not {spec!r}")
    label = spec.get("id")
    try:
        for field in _REQUIRED:
            if field not in spec:
                raise ValueError(f"layer spec is missing field {field!r}")
        fmt = spec["format"]
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, not {fmt!r}")
        layer = FORMATS[fmt](in_modes=spec["in_modes"], out_modes=spec["out_modes"],
                             ranks=spec["ranks"], tokens=spec["tokens"], id=spec.get("id", ""))
        _check_derived(layer, spec)
    except (TypeError, ValueError) as error:
        if isinstance(label, str) and label:
            raise type(error)(f"layer {label!r}: {error}") from error
        raise
    return layer


def _check_derived(layer, spec):
    for field, value in (("in_features", layer.in_features), ("out_features", layer.out_features)):
        if field in spec and spec[field] != value:
            modes = "in_modes" if field == "in_features" else "out_modes"
            raise ValueError(f"{field} {spec[field]!r} does not equal the product of {modes} "
                             f"{list(getattr(layer, modes))!r}, {value}")
    if "dense_macs" in spec and spec["dense_macs"] != layer.dense_macs():
        raise ValueError(f"dense_macs {spec['dense_macs']!r} does not equal tokens * "
                         f"prod(in_modes) * prod(out_modes) = {layer.dense_macs()}")
    if "core_shapes" in spec:
        want = [list(layer.core_shape(n)) for n in layer.core_names]
        got = spec["core_shapes"]
        if not isinstance(got, (list, tuple)) or \
                [list(s) if isinstance(s, (list, tuple)) else s for s in got] != want:
            raise ValueError(f"core_shapes {got!r} do not match the layer's core shapes {want!r}")
    if "forward" in spec and spec["forward"] != layer.forward_network().einsum():
        raise ValueError(f"forward {spec['forward']!r} does not match the layer's forward network "
                         f"{layer.forward_network().einsum()!r}")


def _shipped_path():
    return resources.files(__package__) / "workloads" / "tnn_layers.json"


def load_layers(path=None):
    """Load layers from a JSON file; by default the 12 shipped benchmark layers.

    The file may hold one layer spec, a list of specs, or an object with a ``"layers"`` list (the
    format of ``tnn_layers.json``).
    """
    if path is None:
        text = _shipped_path().read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, dict) and "layers" in data:
        data = data["layers"]
    if isinstance(data, dict):
        return [layer_from_spec(data)]
    if not isinstance(data, list):
        raise TypeError(f"{path or 'tnn_layers.json'} must hold a layer spec, a list of them or "
                        f"an object with a 'layers' list, not {type(data).__name__}")
    return [layer_from_spec(spec) for spec in data]


def layer_summary(layer, tokens=None):
    """Return one row of facts about a layer: sizes, parameters and forward MACs.

    ``opt_forward_macs`` is the exact optimum over all pairwise orders (opt_einsum's
    ``DynamicProgramming(minimize="flops", search_outer=True)``, counted in MACs);
    ``seq_forward_macs`` the order written; ``dense_macs`` the uncompressed layer.
    """
    import opt_einsum

    network = layer.forward_network(tokens)
    shapes = [network.shape(t.name) for t in network.tensors]
    path, _ = opt_einsum.contract_path(
        network.einsum(), *shapes, shapes=True,
        optimize=opt_einsum.DynamicProgramming(minimize="flops", search_outer=True))
    return {"id": layer.id, "format": layer.format, "tokens": network.sizes["b"],
            "in_features": layer.in_features, "out_features": layer.out_features,
            "params": layer.params, "forward": network.einsum(),
            "dense_macs": layer.dense_macs(tokens),
            "seq_forward_macs": network.path_macs(network.sequential_path()),
            "opt_forward_macs": network.path_macs(path)}


def register(sub):
    """Add the ``layers`` subcommand to the ``fetta`` command line (``sub`` from ``add_subparsers``)."""
    parser = sub.add_parser("layers", help="list tensorized layers and the MACs of their forward pass")
    parser.add_argument("file", nargs="?", help="layer JSON (default: the 12 benchmark layers)")
    parser.add_argument("--tokens", type=int, help="token count instead of each layer's own")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.set_defaults(run=_run_layers)


def _run_layers(args):
    rows = [layer_summary(layer, args.tokens) for layer in load_layers(args.file)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'id':<8}{'format':<8}{'tokens':>7}{'in x out':>14}{'params':>9}{'dense MACs':>16}"
          f"{'written MACs':>16}{'optimal MACs':>16}  forward")
    for r in rows:
        print(f"{r['id']:<8}{r['format']:<8}{r['tokens']:>7}"
              f"{str(r['in_features']) + 'x' + str(r['out_features']):>14}{r['params']:>9}"
              f"{r['dense_macs']:>16,}{r['seq_forward_macs']:>16,}{r['opt_forward_macs']:>16,}"
              f"  {r['forward']}")
    return 0
