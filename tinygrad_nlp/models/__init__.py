"""The two tutorial models, BERT, a GPT-2-style decoder and Llama."""
from .auto import DECODERS, decoder_from_pretrained
from .bert import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel
from .classifier import TextClassifier
from .gpt import GPT, GPTConfig
from .llama import Llama, LlamaConfig
from .mlm import MaskedLanguageModel

MODELS = {cls.__name__: cls for cls in (MaskedLanguageModel, TextClassifier, BertModel, BertForMaskedLM,
                                        BertForSequenceClassification, GPT, Llama)}

__all__ = ["MaskedLanguageModel", "TextClassifier", "BertConfig", "BertModel", "BertForMaskedLM",
           "BertForSequenceClassification", "GPT", "GPTConfig", "Llama", "LlamaConfig", "MODELS", "DECODERS",
           "decoder_from_pretrained"]
