"""CUDA kernels (``.cu`` files, compiled by CuPy when first launched) and the classes
that launch them, each registered for the op it equals and switched on by name with
``TINYGRAD_NLP_FUSED_KERNELS``."""
from . import attention, bias_activation, dropout, layernorm, segment_sum, softmax

__all__ = ["attention", "bias_activation", "dropout", "layernorm", "segment_sum", "softmax"]
