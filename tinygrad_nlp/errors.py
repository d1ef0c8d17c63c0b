"""The documented errors. Each subclasses the built-in exception a Python user would
expect (``ValueError`` for bad shapes, ``IndexError`` for bad ids, ...) and the common
base ``TinygradNLPError``, so callers can catch either."""


class TinygradNLPError(Exception):
    """Base class of every error this package raises on purpose."""


class ShapeError(TinygradNLPError, ValueError):
    """Shapes that do not fit an op (the message names the op and both shapes)."""


class ArgumentError(TinygradNLPError, ValueError):
    """A setting outside its range: a probability outside [0, 1], a negative learning
    rate, an unknown activation or mode, an empty parameter list."""


class TokenIdError(TinygradNLPError, IndexError):
    """A token id (or an index) that is negative, too large for the vocabulary (or axis),
    or not an integer."""


class DeviceError(TinygradNLPError, RuntimeError):
    """An unknown or unavailable device, NumPy and CuPy arrays mixed in one op, or a
    device out of memory (the message names the op, its input shapes, the bytes asked
    for and the memory free)."""


class GraphError(TinygradNLPError, RuntimeError):
    """Misuse of autograd: backward on a non-scalar without a gradient, or twice through
    a graph that was already freed."""


class AnomalyError(TinygradNLPError, FloatingPointError):
    """A NaN or inf produced inside ``detect_anomaly()`` (the message names the op)."""


class CheckpointError(TinygradNLPError, ValueError):
    """A checkpoint or state dict that does not fit the model, or a corrupt file."""


class DataError(TinygradNLPError, ValueError):
    """An empty, unreadable or malformed corpus, vocabulary or CSV."""


class GradcheckError(TinygradNLPError, AssertionError):
    """Analytic and numerical gradients disagree (the message names the input, the worst
    index and both values)."""


class MissingDependencyError(TinygradNLPError, ImportError):
    """An optional extra this feature needs is not installed (the message names the
    package and how to install it): safetensors, tokenizers, mpi4py, graphviz."""
