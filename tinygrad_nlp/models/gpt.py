"""A GPT-2-style decoder (Radford et al., 2019) on this engine's layers: learned token and
position embeddings, pre-norm decoder blocks with causal self-attention and the tanh GELU,
a final layer norm and an LM head tied to the token embedding; ``generate`` with a KV
cache. Its Hugging Face checkpoints (``GPT2LMHeadModel`` folders) are read and written by
``gpt_hf``.

    model = GPT(GPTConfig(vocab_size=65, n_positions=256, n_embd=384, n_layer=6, n_head=6))
    loss = model.loss(ids)                      # next-token cross-entropy, (B, T) ids
    text_ids = model.generate(prompt_ids, 100, temperature=0.8, top_k=40, seed=0)
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..errors import ArgumentError, ShapeError
from ..nn import DecoderBlock, Dropout, Embedding, LayerNorm, Loss, Module, ModuleList, evaluating
from ..nn.decoder import new_cache
from ..tensor import no_grad
from .gpt_hf import GPTConfig, GPTHuggingFaceCheckpoint, as_config


class GPT(GPTHuggingFaceCheckpoint, Module):
    """``model(ids)`` gives next-token logits (B, T, vocab_size); ``model.loss(ids)`` the
    mean cross-entropy of each position's prediction of the next id."""

    def __init__(self, config: GPTConfig | dict | None = None):
        config = as_config(config)
        self.gpt_config = config
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
        rng, std = backend.rng(np), self.gpt_config.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.data[...] = 0
            elif ".ln_" in name or name.startswith("ln_f"):
                p.data[...] = 1
            else:
                scale = (2 * self.gpt_config.n_layer) ** -0.5 if name.endswith("c_proj.weight") else 1.0
                p.data[...] = rng.normal(0.0, std * scale, p.shape)

    def hidden(self, ids, cache=None):
        """Final (B, T, n_embd) states after ``ln_f``; with ``cache`` the positions follow
        the cached ones, and the blocks extend it."""
        if getattr(ids, "ndim", 0) != 2:
            raise ShapeError(f"GPT: ids must be (batch, seq_len), got shape {getattr(ids, 'shape', None)}")
        start = 0 if cache is None else cache.length
        if start + ids.shape[1] > self.gpt_config.n_positions:
            raise ShapeError(f"GPT: {start + ids.shape[1]} positions exceed n_positions {self.gpt_config.n_positions}")
        xp = backend.get_array_module(self.wte.weight.data)
        positions = xp.arange(start, start + ids.shape[1])
        x = self.drop(self.wte(ids) + self.wpe(positions))
        for layer, block in enumerate(self.h):
            x = block(x, cache, layer)
        if cache is not None:
            cache.advance(ids.shape[1])
        return self.ln_f(x)

    def forward(self, ids, cache=None):
        return F.linear(self.hidden(ids, cache), self.wte.weight)  # the LM head is the token embedding

    def loss(self, ids) -> Loss:
        """The mean cross-entropy of predicting ``ids[:, t + 1]`` from ``ids[:, :t + 1]``,
        over all B (T - 1) positions (a ``Loss``), through the chunked LM-head op: no
        (B (T - 1), vocab_size) logits array is kept."""
        if getattr(ids, "ndim", 0) != 2 or ids.shape[1] < 2:
            raise ShapeError(f"GPT.loss: ids must be (batch, seq_len >= 2), got shape {getattr(ids, 'shape', None)}")
        h = self.hidden(ids[:, :-1])
        targets = ids[:, 1:].reshape(-1)
        loss = F.linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.wte.weight, targets)
        return Loss(loss, targets.size)

    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> np.ndarray:
        """``ids`` (B, T) host ids followed by ``max_new_tokens`` sampled ones (B, T + new):
        each from softmax(logits / temperature) of the last position, kept to the ``top_k``
        likeliest and to the fewest whose probabilities sum to ``top_p``; ``temperature=0``
        takes the likeliest (greedy). ``seed`` makes the draws reproducible. With
        ``use_cache`` (default) each new token costs one position's attention over the
        cached keys; without, the whole sequence is run again for every token."""
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        check_sampling(temperature, top_k, top_p)
        total = ids.shape[1] + int(max_new_tokens)
        if total > self.gpt_config.n_positions:
            raise ShapeError(f"GPT.generate: {ids.shape[1]} prompt + {max_new_tokens} new tokens exceed the context of "
                             f"{self.gpt_config.n_positions} positions")
        rng = np.random.default_rng(seed)
        device = self.device
        with evaluating(self), no_grad():
            cache = new_cache(list(self.h), ids.shape[0], total, self.wte.weight) if use_cache else None
            step_ids = ids
            for _ in range(int(max_new_tokens)):
                logits = self(backend.to_device(step_ids, device), cache)
                scores = backend.asnumpy(logits.data[:, -1]).astype(np.float64)
                new = next_tokens(scores, temperature, top_k, top_p, rng)
                ids = np.concatenate([ids, new[:, None]], axis=1)
                step_ids = new[:, None] if use_cache else ids
        return ids


def check_sampling(temperature, top_k, top_p) -> None:
    if temperature < 0:
        raise ArgumentError(f"generate: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ArgumentError(f"generate: top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ArgumentError(f"generate: top_p must be in (0, 1], got {top_p}")


def next_tokens(scores, temperature, top_k, top_p, rng) -> np.ndarray:
    """One id per row of ``scores`` (B, V): the argmax when ``temperature`` is 0, else a
    draw from the tempered softmax kept to the top-k / top-p ids."""
    if temperature == 0:
        return scores.argmax(-1)
    scores = scores / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = np.partition(scores, -top_k, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, axis=-1)
        sorted_p = np.take_along_axis(p, order, -1)
        outside = np.cumsum(sorted_p, -1) - sorted_p >= top_p  # the likeliest whose sum reaches top_p stay
        np.put_along_axis(p, order, np.where(outside, 0.0, sorted_p), -1)
        p /= p.sum(-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])


__all__ = ["GPT", "GPTConfig"]
