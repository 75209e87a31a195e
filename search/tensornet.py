"""A tensor-network IR: tensors with named indices, index sizes and an output.

A :class:`TensorNetwork` describes one contraction ``output = sum over the other indices of the
product of all tensors``, as an einsum does, with names instead of letters. Indices may appear in
any number of tensors (hyperedges, such as a token index shared by an activation, its gradient and
an output, or a CP rank index shared by every factor); tensors that share no index are joined by
outer products.
"""

from dataclasses import dataclass
from math import prod
from numbers import Integral

import numpy as np

__all__ = ["Tensor", "TensorNetwork"]

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Tensor:
    """A named tensor with named indices.

    Parameters
    ----------
    name : str
        Tensor name, unique within a network (e.g. ``"x"``, ``"G2"``).
    indices : tuple of str
        Index names in axis order (e.g. ``("A", "j", "q", "B")``). Any iterable of strings is
        accepted and stored as a tuple.

    Raises
    ------
    TypeError
        If the name or an index name is not a non-empty string.
    """

    name: str
    indices: tuple[str, ...]

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Tensor name must be a non-empty string, not {self.name!r}")
        if isinstance(self.indices, str):
            # A bare string would silently split into letters; ask for the explicit form.
            raise TypeError(f"Indices of tensor {self.name!r} must be a tuple of index names, "
                            f"not the string {self.indices!r} (write tuple({self.indices!r}))")
        indices = tuple(self.indices)
        for index in indices:
            if not isinstance(index, str) or not index:
                raise TypeError(f"Index names of tensor {self.name!r} must be non-empty strings, "
                                f"not {index!r}")
        object.__setattr__(self, "indices", indices)


class TensorNetwork:
    """A contraction of named tensors into an output with named indices.

    Parameters
    ----------
    tensors : iterable of Tensor
        The operands, in the order in which :meth:`einsum` writes them.
    sizes : mapping of str to int
        Size of every index used by a tensor. Sizes of indices that no tensor uses are ignored
        (so a layer can pass one size table to all its networks).
    output : iterable of str
        Indices of the result, in axis order. Every other index is summed over.
    name : str, keyword-only
        A label for messages and reports.

    Raises
    ------
    TypeError
        If an operand is not a :class:`Tensor` or a size is not an integer.
    ValueError
        On an empty network, duplicate tensor names, an index repeated inside one tensor, an index
        without a size, a size below 1, or an output index that appears in no tensor or twice in
        the output. Messages name the offending tensor, index or size.

    Attributes
    ----------
    tensors : tuple of Tensor
    sizes : dict of str to int
        Sizes of the indices used by the tensors, in order of first appearance.
    output : tuple of str
    name : str
    """

    def __init__(self, tensors, sizes, output, *, name=""):
        if not isinstance(name, str):
            raise TypeError(f"Network name must be a string, not {name!r}")
        self.name = name
        tensors = tuple(tensors)
        where = f" {name!r}" if name else ""
        if not tensors:
            raise ValueError(f"Network{where} has no tensors")
        seen = set()
        for tensor in tensors:
            if not isinstance(tensor, Tensor):
                raise TypeError(f"Network{where} operands must be Tensor objects, not {tensor!r}")
            if tensor.name in seen:
                raise ValueError(f"Network{where} has two tensors named {tensor.name!r}")
            seen.add(tensor.name)
            for index in tensor.indices:
                if tensor.indices.count(index) > 1:
                    raise ValueError(f"Index {index!r} appears more than once in tensor "
                                     f"{tensor.name!r} {tensor.indices!r}")
        self.tensors = tensors

        used = {}
        for tensor in tensors:
            for index in tensor.indices:
                used.setdefault(index, tensor.name)
        self.sizes = {}
        for index, owner in used.items():
            if index not in sizes:
                raise ValueError(f"Index {index!r} of tensor {owner!r} has no size")
            size = sizes[index]
            if not _is_int(size):
                raise TypeError(f"Size of index {index!r} must be an integer, not {size!r}")
            if size < 1:
                raise ValueError(f"Size of index {index!r} must be at least 1, not {size!r}")
            self.sizes[index] = int(size)

        if isinstance(output, str):
            raise TypeError(f"Network{where} output must be a tuple of index names, not the "
                            f"string {output!r}")
        output = tuple(output)
        for index in output:
            if output.count(index) > 1:
                raise ValueError(f"Output index {index!r} appears more than once in the output "
                                 f"{output!r}")
            if index not in used:
                raise ValueError(f"Output index {index!r} appears in no tensor of network"
                                 f"{where}")
        self.output = output
        self._by_name = {tensor.name: tensor for tensor in tensors}

    def __repr__(self):
        return f"TensorNetwork({self.einsum()!r}, name={self.name!r})"

    @property
    def indices(self):
        """All indices, in order of first appearance in the tensors."""
        return tuple(self.sizes)

    def tensor(self, name):
        """Return the tensor called ``name`` (``KeyError`` if there is none)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"No tensor named {name!r} in network {self.name!r}; tensors are "
                           f"{tuple(self._by_name)!r}") from None

    def shape(self, name):
        """Return the shape of the tensor called ``name``."""
        return tuple(self.sizes[index] for index in self.tensor(name).indices)

    def output_shape(self):
        """Return the shape of the result."""
        return tuple(self.sizes[index] for index in self.output)

    def _letters(self):
        names = list(self.sizes)
        if all(len(n) == 1 and n in _LETTERS for n in names):
            return {n: n for n in names}
        if len(names) > len(_LETTERS):
            raise ValueError(f"Network {self.name!r} has {len(names)} distinct indices; einsum "
                             f"notation allows at most {len(_LETTERS)}")
        return dict(zip(names, _LETTERS))

    def einsum(self):
        """Return the einsum expression, e.g. ``"bijk,ipA,AjqB,Bkr->bpqr"``.

        Index names are used as they are when all are single ASCII letters; otherwise each index
        gets a distinct letter in order of first appearance.
        """
        letters = self._letters()
        inputs = ",".join("".join(letters[i] for i in t.indices) for t in self.tensors)
        return inputs + "->" + "".join(letters[i] for i in self.output)

    def contract(self, arrays):
        """Contract the network in float64 (the reference result).

        Parameters
        ----------
        arrays : mapping of str to array_like
            One array per tensor name, of the tensor's shape.

        Returns
        -------
        numpy.ndarray
            float64 array of shape :meth:`output_shape`.

        Raises
        ------
        ValueError
            If an array is missing, an unknown name is given, or a shape does not match.
        """
        names = [t.name for t in self.tensors]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"No array given for tensor(s) {missing!r} of network {self.name!r}")
        extra = [n for n in arrays if n not in self._by_name]
        if extra:
            raise ValueError(f"Arrays given for unknown tensor(s) {extra!r} of network "
                             f"{self.name!r}")
        operands = []
        for name in names:
            array = np.asarray(arrays[name], dtype=np.float64)
            want = self.shape(name)
            if array.shape != want:
                raise ValueError(f"Array for tensor {name!r} {self.tensor(name).indices!r} must "
                                 f"have shape {want!r}, not {array.shape!r}")
            operands.append(array)
        return np.asarray(np.einsum(self.einsum(), *operands, optimize=True), dtype=np.float64)

    def pair_indices(self, a, b, others):
        """Return the indices kept when contracting two operands with index sets ``a`` and ``b``.

        An index of ``a | b`` is kept if it appears in one of ``others`` (the index sets of the
        operands that remain) or in the output; all other indices of ``a | b`` are summed over.
        The result lists the indices of ``a`` in their order, then the new ones of ``b``.
        """
        a, b = tuple(a), tuple(b)
        needed = set(self.output)
        for other in others:
            needed.update(other)
        union = a + tuple(i for i in b if i not in a)
        return tuple(i for i in union if i in needed)

    def pair_macs(self, a, b):
        """Return the multiply-accumulates of one pairwise step: the product of sizes over ``a | b``."""
        return prod(self.sizes[i] for i in set(a) | set(b))

    def path_macs(self, path):
        """Return the multiply-accumulates of a contraction path.

        Parameters
        ----------
        path : sequence of tuple of int
            A path in opt_einsum's linear format: each step names the positions of the operands it
            contracts in the current operand list, removes them and appends the result at the end.
            A one-operand step (a pure reduction) costs no multiply-accumulates.

        Raises
        ------
        ValueError
            If a step names positions out of range or the same position twice, has more than two
            operands, or the path does not end with a single operand.
        """
        current = [t.indices for t in self.tensors]
        macs = 0
        for step in path:
            step = tuple(step)
            if not 1 <= len(step) <= 2 or len(set(step)) != len(step) or \
                    any(not _is_int(p) or not 0 <= p < len(current) for p in step):
                raise ValueError(f"Path step {step!r} is not one or two distinct positions below "
                                 f"{len(current)}")
            operands = [current[p] for p in step]
            for p in sorted(step, reverse=True):
                del current[p]
            if len(operands) == 2:
                macs += self.pair_macs(*operands)
                kept = self.pair_indices(operands[0], operands[1], current)
            else:
                kept = self.pair_indices(operands[0], (), current)
            current.append(kept)
        if len(current) != 1:
            raise ValueError(f"Path {list(path)!r} leaves {len(current)} operands, not 1")
        return macs

    def sequential_path(self):
        """Return the path that contracts the tensors one after another in the order written.

        The first two tensors are contracted, then the result with the third, and so on, in
        opt_einsum's linear format (for :meth:`path_macs` or ``opt_einsum.contract``).
        """
        n = len(self.tensors)
        if n == 1:
            return [(0,)]
        return [(0, 1)] + [(0, m) for m in range(n - 2, 0, -1)]
