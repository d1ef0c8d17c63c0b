"""Layers built from the functional ops."""
from .decoder import MLP, CausalSelfAttention, DecoderBlock, KVCache
from .layers import Dropout, Embedding, LayerNorm, Linear, PositionalEncoding, RMSNorm, sinusoid_table
from .llama import LlamaAttention, LlamaDecoderLayer, LlamaMLP
from .module import Loss, Module, ModuleList, Parameter, evaluating, predict_in_batches
from .parallel import DataParallel, share
from .transformer import FeedForward, MultiHeadAttention, Packing, TransformerEncoder, TransformerEncoderLayer

__all__ = ["Module", "ModuleList", "Parameter", "evaluating", "predict_in_batches", "Linear", "Embedding", "LayerNorm",
           "RMSNorm", "Dropout", "PositionalEncoding", "sinusoid_table", "MultiHeadAttention", "Packing", "FeedForward",
           "TransformerEncoderLayer", "TransformerEncoder", "DataParallel", "Loss", "share", "CausalSelfAttention",
           "MLP", "DecoderBlock", "KVCache", "LlamaAttention", "LlamaMLP", "LlamaDecoderLayer"]
