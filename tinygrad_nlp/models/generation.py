"""What GPT and Llama share, written once: the LM head on the final states and the
next-token loss through the chunked LM-head op (``CausalLM``), and generating text: the sampling options
(temperature, top-k, top-p, a seed, greedy at temperature 0), the KV cache, and the
window that keeps the last context-length tokens once a sequence runs past the context
(as nanoGPT's ``generate`` crops ``idx`` to ``block_size``).
Guide: docs/backward.md#the-kv-cache
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import functional as F
from ..errors import ArgumentError, ShapeError
from ..nn import Loss, evaluating


class GenerationMixin:
    """``generate`` for a decoder that has ``context_length`` (the positions it was built
    for), ``new_cache(batch, max_len)`` (an empty ``KVCache``), ``hidden(ids, cache)`` (the
    final states; with a cache the positions follow the cached ones and the cache is
    extended) and ``head(h)`` (the logits of states ``h``)."""

    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> np.ndarray:
        """``ids`` (B, T) host ids followed by ``max_new_tokens`` sampled ones (B, T + new):
        each from softmax(logits / temperature) of the last position, kept to the ``top_k``
        likeliest and to the fewest whose probabilities sum to ``top_p``; ``temperature=0``
        takes the likeliest (greedy). ``seed`` makes the draws reproducible.

        Each token is predicted from the last ``context_length`` tokens at most (the
        window). With ``use_cache`` (default) a token costs one position's attention over
        the cached keys while the sequence fits the context; once it runs past, the window
        moves by one token per step and every kept token's position (and, in layers past
        the first, what it attended to) changes, so the cache is rebuilt from the window:
        exactly a full recompute of that window, as without the cache."""
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ShapeError(f"{type(self).__name__}.generate: ids must be (batch, seq_len >= 1), got shape {ids.shape}")
        check_sampling(temperature, top_k, top_p)
        context, rng, cache = self.context_length, np.random.default_rng(seed), None
        with evaluating(self):
            for _ in range(int(max_new_tokens)):
                if use_cache and cache is not None and ids.shape[1] <= context:
                    step = ids[:, -1:]  # the cache holds every position before the last
                else:  # the first step, or a window that moved: the whole window again
                    step = ids[:, -context:]
                    if use_cache and cache is None:
                        cache = self.new_cache(ids.shape[0], min(context, ids.shape[1] + int(max_new_tokens)))
                    elif use_cache:
                        cache.clear()
                h = self.hidden(backend.to_device(step, self.device), cache)
                scores = backend.asnumpy(self.head(h[:, -1]).data).astype(np.float64)
                ids = np.concatenate([ids, next_tokens(scores, temperature, top_k, top_p, rng)[:, None]], axis=1)
        return ids


class CausalLM(GenerationMixin):
    """A decoder's logits and loss, for a model that has ``hidden(ids, cache)`` (the final
    states) and ``head_weight`` (the LM head's (vocab_size, width) weight), and
    ``generate`` (``GenerationMixin``)."""

    def head(self, h):
        return F.linear(h, self.head_weight)

    def forward(self, ids, cache=None):
        return self.head(self.hidden(ids, cache))

    def loss(self, ids) -> Loss:
        """The mean cross-entropy of predicting ``ids[:, t + 1]`` from ``ids[:, :t + 1]``,
        over all B (T - 1) positions (a ``Loss``), through the chunked LM-head op: no
        (B (T - 1), vocab_size) logits array is kept."""
        if getattr(ids, "ndim", 0) != 2 or ids.shape[1] < 2:
            raise ShapeError(f"{type(self).__name__}.loss: ids must be (batch, seq_len >= 2), "
                             f"got shape {getattr(ids, 'shape', None)}")
        h = self.hidden(ids[:, :-1])
        targets = ids[:, 1:].reshape(-1)
        loss = F.linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.head_weight, targets)
        return Loss(loss, targets.size)


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


__all__ = ["GenerationMixin", "check_sampling", "next_tokens"]
