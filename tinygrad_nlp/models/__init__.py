"""The two tutorial models."""
from .classifier import TextClassifier
from .mlm import MaskedLanguageModel

MODELS = {cls.__name__: cls for cls in (MaskedLanguageModel, TextClassifier)}

__all__ = ["MaskedLanguageModel", "TextClassifier", "MODELS"]
