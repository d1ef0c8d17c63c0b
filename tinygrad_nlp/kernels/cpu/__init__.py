"""Fast CPU paths: each module registers its classes for the op it equals."""
from . import attention, dropout, layernorm, linear, lm_head, segment_sum, softmax

__all__ = ["attention", "dropout", "layernorm", "linear", "lm_head", "segment_sum", "softmax"]
