"""Llama (Touvron et al., 2023; transformers' ``LlamaForCausalLM``) on this engine's layers:
a token embedding, pre-norm decoder blocks (RMSNorm, rotary position embeddings,
grouped-query attention, the SwiGLU MLP), a final RMSNorm and an LM head, tied to the
token embedding or not as the config says; ``generate`` with a KV cache sized by the
key/value heads (``generation.CausalLM``, shared with GPT). Its Hugging Face
checkpoints (``LlamaForCausalLM`` folders: SmolLM, TinyLlama, Llama 2 and 3 without RoPE
scaling) are read and written by ``llama_hf``.

    model = Llama(LlamaConfig(vocab_size=65, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256))
    loss = model.loss(ids)                      # next-token cross-entropy, (B, T) ids
    text_ids = model.generate(prompt_ids, 100, temperature=0.8, top_k=40, seed=0)
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..errors import ShapeError
from ..nn import Embedding, KVCache, Linear, LlamaDecoderLayer, Module, ModuleList, RMSNorm
from .generation import CausalLM
from .llama_hf import LlamaConfig, LlamaHuggingFaceCheckpoint, as_config


class Llama(LlamaHuggingFaceCheckpoint, CausalLM, Module):
    """``model(ids)`` gives next-token logits (B, T, vocab_size); ``model.loss(ids)`` the
    mean cross-entropy of each position's prediction of the next id."""

    def __init__(self, config: LlamaConfig | dict | None = None):
        config = as_config(config)
        self.hf_config = config
        self.config = dict(config=config.to_dict())
        d = config.hidden_size
        self.embed_tokens = Embedding(config.vocab_size, d)
        self.layers = ModuleList([
            LlamaDecoderLayer(d, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                              config.intermediate_size, config.rms_norm_eps, config.rope_theta, config.attention_bias,
                              config.mlp_bias, config.attention_dropout)
            for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(d, config.rms_norm_eps)
        self.lm_head = None if config.tie_word_embeddings else Linear(d, config.vocab_size, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """transformers' initialisation of Llama: every weight N(0, initializer_range),
        biases 0, the RMSNorms 1."""
        rng, std = backend.rng(np), self.hf_config.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.data[...] = 0
            elif name.endswith("norm.weight"):
                p.data[...] = 1
            else:
                p.data[...] = rng.normal(0.0, std, p.shape)

    def hidden(self, ids, cache: KVCache | None = None):
        """Final (B, T, hidden_size) states after ``norm``; with ``cache`` the positions
        follow the cached ones, and the blocks extend it."""
        if getattr(ids, "ndim", 0) != 2:
            raise ShapeError(f"Llama: ids must be (batch, seq_len), got shape {getattr(ids, 'shape', None)}")
        start = 0 if cache is None else cache.length
        if start + ids.shape[1] > self.context_length:
            raise ShapeError(f"Llama: {start + ids.shape[1]} positions exceed max_position_embeddings "
                             f"{self.context_length}")
        positions = backend.get_array_module(self.embed_tokens.weight.data).arange(start, start + ids.shape[1])
        x = self.embed_tokens(ids)
        for layer, block in enumerate(self.layers):
            x = block(x, positions, cache, layer)
        if cache is not None:
            cache.advance(ids.shape[1])
        return self.norm(x)

    @property
    def head_weight(self):
        """The LM head's (vocab_size, hidden_size) weight: the token embedding when tied."""
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    @property
    def context_length(self) -> int:
        return self.hf_config.max_position_embeddings

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` positions, with
        one buffer per key/value head (not per query head), on the model's device and in
        its dtype."""
        w, c = self.embed_tokens.weight, self.hf_config
        return KVCache(c.num_hidden_layers, batch, c.num_key_value_heads, max_len, c.head_dim,
                       backend.get_array_module(w.data), w.dtype)


__all__ = ["Llama", "LlamaConfig"]
