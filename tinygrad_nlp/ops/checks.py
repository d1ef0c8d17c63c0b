"""The check step of the ops: shape, axis, id and probability validation, kept apart
from the math so that each ``forward`` reads like its section of docs/backward.md.
Every failure is one line naming the op and the values."""
from __future__ import annotations

from ..backend import get_array_module
from ..errors import ArgumentError, ShapeError, TokenIdError


def broadcast_shape(op: str, *shapes):
    """The broadcast result of ``shapes``, or a ShapeError naming the op and the shapes."""
    out = []
    for dims in zip(*(((1,) * (max(map(len, shapes)) - len(s)) + tuple(s)) for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ShapeError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be broadcast together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def check_ids(ids, num_classes: int, what: str, noun: str = "token id", of: str = "a vocabulary of {n}",
              ignore_index: int | None = None) -> None:
    """Raise TokenIdError unless ``ids`` are integers in [0, num_classes) (or equal to
    ``ignore_index``), naming the first bad one and its position."""
    xp = get_array_module(ids)
    if not xp.issubdtype(ids.dtype, xp.integer):
        raise TokenIdError(f"{what}: {noun}s must be integers, got dtype {ids.dtype}")
    if ids.size == 0:
        return
    bad = (ids < 0) | (ids >= num_classes)
    if ignore_index is not None:
        bad &= ids != ignore_index
    if bool(bad.any()):
        position = tuple(int(i) for i in xp.argwhere(bad)[0])
        valid = f"valid ids are 0..{num_classes - 1}" + ("" if ignore_index is None else f" or {ignore_index}")
        raise TokenIdError(f"{what}: {noun} {int(ids[position])} at position {position} is out of range for "
                           f"{of.format(n=num_classes)} ({valid})")


def check_probability(p: float, what: str = "dropout") -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ArgumentError(f"{what}: probability p must be in [0, 1], got {p}")
    return p


def normalize_axes(op: str, axis, ndim: int) -> tuple:
    """``axis`` (None, an int or a sequence) as a tuple of distinct axes in [0, ndim), or a
    ShapeError naming the op, the axis and the dimension. A 0-d input accepts axis 0 or
    -1 and reduces nothing (as PyTorch does)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int,)) or hasattr(axis, "__index__") else tuple(axis)
    if ndim == 0:
        if all(int(a) in (0, -1) for a in axes):
            return ()
        raise ShapeError(f"{op}: axis {axis} is out of range for a 0-d input (only 0 or -1)")
    normalized = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise ShapeError(f"{op}: axis {a} is out of range for a {ndim}-d input (valid axes are {-ndim}..{ndim - 1})")
        normalized.append(a % ndim)
    if len(set(normalized)) != len(normalized):
        raise ShapeError(f"{op}: axis {axis} repeats an axis")
    return tuple(normalized)
