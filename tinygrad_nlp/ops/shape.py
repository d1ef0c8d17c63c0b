"""Shape ops and reductions. Each moves or sums values without changing them, so each
backward moves or spreads the gradient back the same way.
Guide: docs/backward.md#shape-ops-and-reductions
"""
from __future__ import annotations

from ..backend import get_array_module, scatter_add
from ..errors import ShapeError, TokenIdError
from ..tensor import Function, array_of
from .checks import check_ids, normalize_axes


class Reshape(Function):
    """y = x viewed as ``shape``.  dL/dx = g viewed as x's shape."""

    def __init__(self, shape):
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {tuple(x.shape)} (size {x.size}) into {self.shape}") from None

    def backward(self, g):
        return g.reshape(self.x_shape)


class Transpose(Function):
    """y = x with axes permuted by ``axes``.  dL/dx = g permuted by the inverse permutation."""

    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(int(a) for a in axes)

    def check(self, x):
        axes = self.axes if self.axes is not None else tuple(reversed(range(x.ndim)))
        in_range = all(-x.ndim <= a < x.ndim for a in axes)
        if len(axes) != x.ndim or not in_range or sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes of shape "
                             f"{tuple(x.shape)}")

    def forward(self, x):
        axes = self.axes if self.axes is not None else tuple(reversed(range(x.ndim)))
        self.axes = tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, g):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return g.transpose(inverse)


def _index_on(xp, index):
    """Move integer-array parts of an index to the backend ``xp`` (Tensors unwrapped)."""
    def convert(part):
        part = array_of(part)
        if isinstance(part, list) or (hasattr(part, "dtype") and hasattr(part, "shape")):
            return xp.asarray(part)
        return part

    return tuple(convert(p) for p in index) if isinstance(index, tuple) else convert(index)


class GetItem(Function):
    """y = x[index] (basic slicing or integer-array indexing).

    dL/dx is zero except at the selected places, where g is added; an element selected
    twice (repeated integer indices) receives both contributions (a scatter-add).
    """

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        xp = get_array_module(x)
        self.index = _index_on(xp, self.index)
        self.x_shape = x.shape
        try:
            return x[self.index]
        except IndexError as e:
            raise TokenIdError(f"getitem: index invalid for shape {tuple(x.shape)}: {e}") from None

    def backward(self, g):
        xp = get_array_module(g)
        parts = self.index if isinstance(self.index, tuple) else (self.index,)
        arrays = [p for p in parts if hasattr(p, "shape")]
        if not arrays:  # basic indexing selects each element at most once
            gx = xp.zeros(self.x_shape, dtype=g.dtype)
            gx[self.index] = g
            return gx
        gx = xp.zeros(self.x_shape, dtype=g.dtype)
        scatter_add(gx, self.index, g)
        return gx


class ScatterRows(Function):
    """y = zeros(num_rows, ...) with y[index[i]] += x[i]: the rows of x placed at ``index``
    (repeated indices add up), the reverse of picking rows with ``x[index]``.

    Each y row is a sum of x rows, so dL/dx[i] = g[index[i]]: the backward picks rows.
    """

    def __init__(self, index, num_rows: int):
        self.index, self.num_rows = index, int(num_rows)

    def check(self, x):
        index = self.index
        if x.ndim == 0 or index.ndim != 1 or index.shape[0] != x.shape[0]:
            raise ShapeError(f"scatter_rows: index {tuple(index.shape)} must be 1-D with one entry per row of "
                             f"x {tuple(x.shape)}")
        check_ids(index, self.num_rows, "scatter_rows", noun="row index", of="{n} rows")

    def forward(self, x):
        y = get_array_module(x).zeros((self.num_rows,) + x.shape[1:], dtype=x.dtype)  # (num_rows, ...)
        scatter_add(y, self.index, x)  # y[index[i]] += x[i]
        return y

    def backward(self, g):
        return g[self.index]


class Concatenate(Function):
    """y = concatenate(xs, axis).  Each input's gradient is its slice of g along ``axis``."""

    def __init__(self, axis=0):
        self.axis = axis

    def check(self, *xs):
        if not xs:
            raise ShapeError("concatenate: needs at least one tensor")
        ndim = xs[0].ndim
        if ndim == 0 or any(x.ndim != ndim for x in xs) or not -ndim <= self.axis < ndim:
            raise ShapeError(f"concatenate: shapes {[tuple(x.shape) for x in xs]} do not fit along axis {self.axis} "
                             "(all inputs need the same number of dimensions, at least 1, and the axis in range)")

    def forward(self, *xs):
        xp = get_array_module(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        try:
            return xp.concatenate(xs, axis=self.axis)
        except ValueError:
            raise ShapeError(f"concatenate: shapes {[tuple(x.shape) for x in xs]} do not fit along axis {self.axis}") from None

    def backward(self, g):
        xp = get_array_module(g)
        bounds = list(xp.cumsum(xp.asarray(self.sizes))[:-1].tolist()) if len(self.sizes) > 1 else []
        return tuple(xp.split(g, bounds, axis=self.axis))


class Sum(Function):
    """y = x summed over ``axis``.  Every summed element has derivative 1, so dL/dx is g
    broadcast back over the summed axes."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def check(self, x):
        self.axes = normalize_axes(self.name.lower(), self.axis, x.ndim)

    def forward(self, x):
        self.x_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        xp = get_array_module(g)
        if not self.keepdims:
            g = g.reshape([1 if i in self.axes else n for i, n in enumerate(self.x_shape)])
        return xp.broadcast_to(g, self.x_shape)


class Mean(Sum):
    """y = mean of x over ``axis`` = sum / n.  dL/dx = g / n broadcast back. Integer
    inputs give float32 (float64 stays float64)."""

    floating = True

    def forward(self, x):
        y = super().forward(x)
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        if self.count == 0:  # the mean of nothing is NaN, as in NumPy and PyTorch
            return get_array_module(x).full(y.shape, float("nan"), dtype=y.dtype)
        return y / self.count

    def backward(self, g):
        return super().backward(g / max(self.count, 1))


# -- the public functions ------------------------------------------------------------
def reshape(x, shape):
    return Reshape(shape)(x)


def transpose(x, axes=None):
    """x with its axes permuted by ``axes`` (reversed when None), as ``np.transpose``."""
    return Transpose(axes)(x)


permute = transpose


def getitem(x, index):
    return GetItem(index)(x)


def scatter_rows(x, index, num_rows: int):
    """A (num_rows, ...) array of zeros with row ``index[i]`` receiving x's row i (added
    where an index repeats): ``y[index] = x`` for distinct indices, the reverse of ``x[index]``."""
    xp = get_array_module(array_of(x))
    return ScatterRows(xp.asarray(array_of(index)), num_rows)(x)


def concatenate(tensors, axis=0):
    return Concatenate(axis)(*tensors)


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)
