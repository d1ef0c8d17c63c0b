"""The two tutorial models, BERT and a GPT-2-style decoder."""
from .bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from .classifier import TextClassifier
from .gpt import GPT, GPTConfig
from .mlm import MaskedLanguageModel

MODELS = {cls.__name__: cls for cls in (MaskedLanguageModel, TextClassifier, BertModel, BertForMaskedLM,
                                        BertForSequenceClassification, GPT)}

__all__ = ["MaskedLanguageModel", "TextClassifier", "BertConfig", "BertModel", "BertForMaskedLM",
           "BertForSequenceClassification", "GPT", "GPTConfig", "MODELS"]
