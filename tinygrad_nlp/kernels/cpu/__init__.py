"""Fast CPU paths: each module registers its classes for the op it equals."""
from . import layernorm

__all__ = ["layernorm"]
