"""Tensor layouts in the scratchpad: which indices run across the lanes of a row, and the row strides.

A tensor lives in one region of the scratchpad, from a base row. Its :class:`TensorLayout` lists

* the **lane indices**, in order (first = most significant), each with a *factor* ``f``: index
  ``x`` of extent ``n`` contributes ``x mod f`` to the lane number (``f = n``: the whole index is on
  the lanes). The lane of an element is the mixed-radix number of its lane-index values; the
  product of the factors is at most L, and lanes beyond it are padding (0).
* a **row stride** for every index that is not entirely on the lanes: an index on the lanes with
  ``f < n`` has its outer part ``x // f`` on rows; any other index ``x`` has ``x`` itself on rows.
  The row of an element is ``base + sum(part * stride)``. Edge rows of a split index whose extent is
  not a multiple of ``f`` are padded: their extra lanes hold 0.

This is the contract of docs/architecture.md ("Tensor layout in the scratchpad"). The host driver
and the model write and read tensors with :meth:`TensorLayout.pack` and :meth:`TensorLayout.unpack`;
the mapper (:mod:`fetta.search.mapper`) reads the same description to generate addresses and routes.
"""

import dataclasses

import numpy as np

__all__ = ["LayoutError", "TensorLayout", "natural_layout"]


class LayoutError(ValueError):
    """A tensor layout that is malformed or does not fit its place."""


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TensorLayout:
    """Where and how one tensor is stored in the scratchpad.

    Parameters
    ----------
    name : str
        Tensor name, used in error messages.
    indices : sequence of str
        Index names in the axis order of the tensor's numpy array.
    sizes : sequence of int
        Extent of each index (at least 1).
    lanes : int
        L, words per row.
    lane_indices : sequence of str or (str, int)
        The indices on the lanes, most significant first, each a name (factor: its whole extent) or
        a ``(name, factor)`` pair with ``1 <= factor <= extent``. The product of the factors is at
        most ``lanes``.
    row_strides : mapping or sequence of (str, int)
        Row stride (at least 1) of every index with a part on rows (its outer part for a split lane
        index). Parts of a single row (extent 1) may be left out.
    region : int
        Scratchpad region.
    base : int
        First row of the tensor in its region.

    Raises
    ------
    LayoutError
        For an unknown or repeated index, a bad extent or factor, lane factors over ``lanes``, a
        missing, unknown or non-positive stride, or two elements on the same row and lane.
    """

    name: str = "T"
    indices: tuple
    sizes: tuple
    lanes: int
    lane_indices: tuple = ()
    row_strides: tuple = ()
    region: int = 0
    base: int = 0

    def __post_init__(self):
        name = self.name
        if not isinstance(name, str) or not name:
            raise LayoutError(f"tensor name must be a non-empty string, not {name!r}")
        indices = tuple(self.indices)
        if any(not isinstance(x, str) or not x for x in indices):
            raise LayoutError(f"{name}: indices must be non-empty strings, not {indices!r}")
        if len(set(indices)) != len(indices):
            raise LayoutError(f"{name}: indices must be distinct, not {indices!r}")
        sizes = tuple(self.sizes)
        if len(sizes) != len(indices) or any(not _is_int(s) or s < 1 for s in sizes):
            raise LayoutError(f"{name}: sizes must be {len(indices)} integers of at least 1, "
                              f"not {sizes!r}")
        sizes = tuple(int(s) for s in sizes)
        L = self.lanes
        if not _is_int(L) or L < 1:
            raise LayoutError(f"{name}: lanes must be a positive integer, not {L!r}")
        extent = dict(zip(indices, sizes))
        lane_indices = []
        for entry in self.lane_indices:
            index, factor = (entry, None) if isinstance(entry, str) else tuple(entry)
            if index not in extent:
                raise LayoutError(f"{name}: lane index {index!r} is not one of its indices "
                                  f"{indices!r}")
            factor = extent[index] if factor is None else factor
            if not _is_int(factor) or not 1 <= factor <= extent[index]:
                raise LayoutError(f"{name}: factor of lane index {index!r} must be from 1 to its "
                                  f"extent {extent[index]}, not {factor!r}")
            lane_indices.append((index, int(factor)))
        lane_names = [x for x, _ in lane_indices]
        if len(set(lane_names)) != len(lane_names):
            raise LayoutError(f"{name}: lane indices must be distinct, not {lane_names!r}")
        product = int(np.prod([f for _, f in lane_indices], dtype=object)) if lane_indices else 1
        if product > L:
            raise LayoutError(f"{name}: lane indices {lane_indices!r} span {product} lanes, "
                              f"more than the {L} of a row")
        strides = self.row_strides
        strides = dict(strides.items() if isinstance(strides, dict) else strides)
        for index, stride in strides.items():
            if index not in extent:
                raise LayoutError(f"{name}: row stride given for {index!r}, which is not one of its "
                                  f"indices {indices!r}")
            if not _is_int(stride) or stride < 1:
                raise LayoutError(f"{name}: row stride of {index!r} must be a positive integer, "
                                  f"not {stride!r}")
        factors = dict(lane_indices)
        for index in indices:
            rows = -(-extent[index] // factors.get(index, 1))
            if index in factors and rows == 1 and index in strides:
                raise LayoutError(f"{name}: index {index!r} is entirely on the lanes and takes no "
                                  f"row stride")
            if rows > 1 and index not in strides:
                raise LayoutError(f"{name}: index {index!r} has {rows} rows and needs a row stride")
        if not _is_int(self.region) or self.region < 0:
            raise LayoutError(f"{name}: region must be a non-negative integer, not {self.region!r}")
        if not _is_int(self.base) or self.base < 0:
            raise LayoutError(f"{name}: base row must be a non-negative integer, not {self.base!r}")
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "lanes", int(L))
        object.__setattr__(self, "lane_indices", tuple(lane_indices))
        object.__setattr__(self, "row_strides",
                           tuple((x, int(strides[x])) for x in indices if x in strides))
        object.__setattr__(self, "region", int(self.region))
        object.__setattr__(self, "base", int(self.base))
        self._check_rows_distinct()

    # Derived description.

    @property
    def shape(self):
        """The numpy shape of the tensor."""
        return self.sizes

    @property
    def extents(self):
        """``{index: extent}``."""
        return dict(zip(self.indices, self.sizes))

    def factor(self, index):
        """The lane factor of ``index``, or None if it is not on the lanes."""
        return dict(self.lane_indices).get(index)

    def stride(self, index):
        """The row stride of ``index`` (of its outer part if split; 0 if it has a single row)."""
        return dict(self.row_strides).get(index, 0)

    def lane_weight(self, index):
        """What one step of ``index``'s lane part adds to the lane number (None if not on lanes)."""
        weight = 1
        for x, f in reversed(self.lane_indices):
            if x == index:
                return weight
            weight *= f
        return None

    @property
    def lane_extent(self):
        """Lanes that hold elements (the product of the lane factors); the others are padding."""
        return int(np.prod([f for _, f in self.lane_indices], dtype=object))

    def row_parts(self):
        """``[(index, count, stride)]``: every part on rows with its number of values and stride."""
        out = []
        for index, size in zip(self.indices, self.sizes):
            count = -(-size // (self.factor(index) or 1))
            if count > 1:
                out.append((index, count, self.stride(index)))
        return out

    @property
    def rows_needed(self):
        """Rows from ``base`` up to and including the last one the tensor uses."""
        return 1 + sum((count - 1) * stride for _, count, stride in self.row_parts())

    def _check_rows_distinct(self):
        parts = self.row_parts()
        total = int(np.prod([c for _, c, _ in parts], dtype=object)) if parts else 1
        if total > self.rows_needed:
            raise LayoutError(f"{self.name}: row strides {dict(self.row_strides)!r} put {total} rows "
                              f"of parts into {self.rows_needed} rows: some rows overlap")
        rows = self._row_offsets()
        if len(np.unique(rows)) != rows.size:
            raise LayoutError(f"{self.name}: row strides {dict(self.row_strides)!r} map two parts "
                              f"to the same row")

    def _row_offsets(self):
        offset = np.zeros((), dtype=np.int64)
        for _, count, stride in self.row_parts():
            offset = np.add.outer(offset, np.arange(count, dtype=np.int64) * stride)
        return offset.reshape(-1)

    def positions(self):
        """``(row, lane)`` int64 arrays of the tensor's shape: where each element is stored.

        Rows are relative to ``base``.
        """
        row = np.zeros(self.sizes, dtype=np.int64)
        lane = np.zeros(self.sizes, dtype=np.int64)
        for axis, (index, size) in enumerate(zip(self.indices, self.sizes)):
            shape = [1] * len(self.sizes)
            shape[axis] = size
            values = np.arange(size, dtype=np.int64).reshape(shape)
            factor = self.factor(index)
            if factor is None:
                row = row + values * self.stride(index)
            else:
                row = row + (values // factor) * self.stride(index)
                lane = lane + (values % factor) * self.lane_weight(index)
        return row, lane

    # Data.

    def pack(self, array):
        """Return the tensor as rows: int64 of shape ``(rows_needed, lanes)``, padding and gaps 0."""
        array = np.asarray(array)
        if array.shape != self.sizes:
            raise LayoutError(f"{self.name}: array of shape {array.shape!r} does not match the "
                              f"layout's shape {self.sizes!r}")
        if not np.issubdtype(array.dtype, np.integer):
            raise LayoutError(f"{self.name}: array must hold integers, not {array.dtype}")
        rows = np.zeros((self.rows_needed, self.lanes), dtype=np.int64)
        row, lane = self.positions()
        rows[row, lane] = array
        return rows

    def unpack(self, rows):
        """Inverse of :meth:`pack`: the tensor from its rows (at least ``rows_needed`` of them)."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[0] < self.rows_needed or rows.shape[1] != self.lanes:
            raise LayoutError(f"{self.name}: rows must have shape ({self.rows_needed}, {self.lanes}), "
                              f"not {rows.shape!r}")
        row, lane = self.positions()
        return rows[row, lane]

    def check_fits(self, config):
        """Raise :exc:`LayoutError` unless the tensor fits ``config``'s lanes, regions and depth."""
        if self.lanes != config.lanes:
            raise LayoutError(f"{self.name}: layout has {self.lanes} lanes but the configuration "
                              f"has {config.lanes}")
        if self.region >= config.regions:
            raise LayoutError(f"{self.name}: region {self.region} does not exist; the configuration "
                              f"has {config.regions} regions")
        if self.base + self.rows_needed > config.depth:
            raise LayoutError(f"tensor {self.name!r} does not fit region {self.region}: needs "
                              f"{self.rows_needed} rows from row {self.base}, depth is {config.depth}")

    def placed(self, *, region=None, base=None, name=None):
        """The same layout at another region, base row or under another name."""
        changes = {k: v for k, v in (("region", region), ("base", base), ("name", name))
                   if v is not None}
        return dataclasses.replace(self, **changes)

    def describe(self):
        """A one-line summary, e.g. ``A[i,k] region 0 @12: lanes k/8, rows i*2 k*1``."""
        lanes = " ".join(f"{x}/{f}" for x, f in self.lane_indices) or "-"
        rows = " ".join(f"{x}*{s}" for x, s in self.row_strides) or "-"
        return (f"{self.name}[{','.join(self.indices)}] region {self.region} @{self.base}: "
                f"lanes {lanes}, rows {rows}")


def natural_layout(name, indices, sizes, *, lanes, lane_indices=None, region=0, base=0,
                   row_order=None):
    """A layout with the given lane indices and the remaining parts on rows, row-major.

    Parameters
    ----------
    name, indices, sizes, lanes, region, base
        As :class:`TensorLayout`.
    lane_indices : sequence of str or (str, int), optional
        Default: the last index, with factor ``min(extent, lanes)``. A bare name takes factor
        ``min(extent, room left)``, where the room left is ``lanes`` divided by the factors before it
        (rounded down).
    row_order : sequence of str, optional
        Order of the row parts, outermost first (default: the order of ``indices``). Row strides are
        dense and row-major in that order.
    """
    indices = tuple(indices)
    sizes = tuple(sizes)
    extent = dict(zip(indices, sizes))
    if lane_indices is None:
        lane_indices = [indices[-1]] if indices else []
    entries, room = [], lanes
    for entry in lane_indices:
        if isinstance(entry, str):
            if entry not in extent:
                raise LayoutError(f"{name}: lane index {entry!r} is not one of its indices "
                                  f"{indices!r}")
            entry = (entry, max(1, min(extent[entry], room)))
        entries.append(tuple(entry))
        if _is_int(entry[1]) and entry[1] >= 1:
            room = max(1, room // entry[1])
    factors = dict(entries)
    order = tuple(indices if row_order is None else row_order)
    if sorted(order) != sorted(indices):
        raise LayoutError(f"{name}: row order {order!r} must list the indices {indices!r}")
    strides, step = {}, 1
    for index in reversed(order):
        if index not in extent:
            continue
        count = -(-extent[index] // factors[index]) if index in factors and _is_int(factors[index]) \
            and factors[index] >= 1 else extent[index]
        if count > 1:
            strides[index] = step
            step *= count
    return TensorLayout(name=name, indices=indices, sizes=sizes, lanes=lanes,
                        lane_indices=tuple(entries), row_strides=strides, region=region, base=base)
