"""tinygrad_nlp: a from-scratch tensor/autograd engine for NLP on NumPy and CuPy."""
from . import functional  # attaches Tensor's operators and methods (a + b, x.sum(), x[i])
from .backend import cuda_available, get_array_module, manual_seed
from .backend.kernels import reference_ops
from .errors import (
                     AnomalyError,
                     ArgumentError,
                     CheckpointError,
                     DataError,
                     DeviceError,
                     GradcheckError,
                     GraphError,
                     MissingDependencyError,
                     ShapeError,
                     TinygradNLPError,
                     TokenIdError,
)
from .tensor import Tensor, detect_anomaly, is_grad_enabled, no_grad

__version__ = "0.1.0"

__all__ = [
    "functional", "Tensor", "no_grad", "is_grad_enabled", "detect_anomaly", "manual_seed", "get_array_module", "cuda_available",
    "reference_ops",
    "TinygradNLPError", "ArgumentError", "ShapeError", "TokenIdError", "DeviceError", "GraphError", "AnomalyError",
    "CheckpointError", "DataError", "GradcheckError", "MissingDependencyError",
]
