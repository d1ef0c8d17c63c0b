"""Fast CPU paths: each module registers its classes for the op it equals."""
from . import attention, dropout, grouped_attention, layernorm, linear, lm_head, rms_norm, rotary, segment_sum, softmax, swiglu

__all__ = ["attention", "dropout", "grouped_attention", "layernorm", "linear", "lm_head", "rms_norm", "rotary", "segment_sum",
           "softmax", "swiglu"]
