"""A GPT-2-style decoder (Radford et al., 2019) on this engine's layers: learned token and
position embeddings, pre-norm decoder blocks with causal self-attention and the tanh GELU,
a final layer norm and an LM head tied to the token embedding; ``generate`` with a KV
cache (``generation.CausalLM``, shared with Llama). Its Hugging Face checkpoints
(``GPT2LMHeadModel`` folders) are read and written by ``gpt_hf``.

    model = GPT(GPTConfig(vocab_size=65, n_positions=256, n_embd=384, n_layer=6, n_head=6))
    loss = model.loss(ids)                      # next-token cross-entropy, (B, T) ids
    text_ids = model.generate(prompt_ids, 100, temperature=0.8, top_k=40, seed=0)
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..errors import ShapeError
from ..nn import DecoderBlock, Dropout, Embedding, KVCache, LayerNorm, Module, ModuleList
from .generation import CausalLM
from .gpt_hf import GPTConfig, GPTHuggingFaceCheckpoint, as_config


class GPT(GPTHuggingFaceCheckpoint, CausalLM, Module):
    """``model(ids)`` gives next-token logits (B, T, vocab_size); ``model.loss(ids)`` the
    mean cross-entropy of each position's prediction of the next id."""

    def __init__(self, config: GPTConfig | dict | None = None):
        config = as_config(config)
        self.hf_config = config
        self.config = dict(config=config.to_dict())
        d = config.n_embd
        self.wte = Embedding(config.vocab_size, d)
        self.wpe = Embedding(config.n_positions, d)
        self.drop = Dropout(config.embd_pdrop)
        self.h = ModuleList([DecoderBlock(d, config.n_head, config.n_inner or 4 * d, config.resid_pdrop,
                                          config.layer_norm_epsilon, config.activation, config.attn_pdrop)
                             for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(d, config.layer_norm_epsilon)
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2's initialisation: weights N(0, 0.02), each residual projection's N(0,
        0.02 / sqrt(2 n_layer)); biases 0, layer norms 1 and 0."""
        rng, std = backend.rng(np), self.hf_config.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.data[...] = 0
            elif ".ln_" in name or name.startswith("ln_f"):
                p.data[...] = 1
            else:
                scale = (2 * self.hf_config.n_layer) ** -0.5 if name.endswith("c_proj.weight") else 1.0
                p.data[...] = rng.normal(0.0, std * scale, p.shape)

    def hidden(self, ids, cache=None):
        """Final (B, T, n_embd) states after ``ln_f``; with ``cache`` the positions follow
        the cached ones, and the blocks extend it."""
        if getattr(ids, "ndim", 0) != 2:
            raise ShapeError(f"GPT: ids must be (batch, seq_len), got shape {getattr(ids, 'shape', None)}")
        start = 0 if cache is None else cache.length
        if start + ids.shape[1] > self.hf_config.n_positions:
            raise ShapeError(f"GPT: {start + ids.shape[1]} positions exceed n_positions {self.hf_config.n_positions}")
        xp = backend.get_array_module(self.wte.weight.data)
        positions = xp.arange(start, start + ids.shape[1])
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for layer, block in enumerate(self.h):
            x = block(x, cache, layer)
        if cache is not None:
            cache.advance(ids.shape[1])
        return self.ln_f(x)

    @property
    def head_weight(self):
        """The LM head's weight: the token embedding (tied)."""
        return self.wte.weight

    @property
    def context_length(self) -> int:
        return self.hf_config.n_positions

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` positions, on the
        model's device and in its dtype."""
        w, c = self.wte.weight, self.hf_config
        return KVCache(c.n_layer, batch, c.n_head, max_len, c.n_embd // c.n_head, backend.get_array_module(w.data), w.dtype)



__all__ = ["GPT", "GPTConfig"]
