"""The two tutorial models, and BERT."""
from .bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from .classifier import TextClassifier
from .mlm import MaskedLanguageModel

MODELS = {cls.__name__: cls for cls in (MaskedLanguageModel, TextClassifier, BertModel, BertForMaskedLM,
                                        BertForSequenceClassification)}

__all__ = ["MaskedLanguageModel", "TextClassifier", "BertConfig", "BertModel", "BertForMaskedLM",
           "BertForSequenceClassification", "MODELS"]
