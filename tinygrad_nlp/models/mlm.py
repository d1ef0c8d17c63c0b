"""BERT-style masked-language model (the MLM tutorial's architecture)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..backend import to_device
from ..data import N_SPECIALS, tokenize
from ..errors import ShapeError
from ..nn import Embedding, LayerNorm, Linear, Loss, Module, PositionalEncoding, TransformerEncoder, evaluating
from ..tensor import Tensor


class MaskedLanguageModel(Module):
    """Embedding + sinusoidal positions -> pre-norm encoder -> final LayerNorm ->
    bias-free LM head over the vocabulary.

    ``model(ids)`` gives logits (B, T, V) for every position. ``model.loss(ids,
    targets)`` gives the same mean cross-entropy but computes the head only at the
    positions that are scored (about 15% in MLM training), which saves most of the
    (B*T, D) x (D, V) product and its backward.
    """

    def __init__(self, vocab_size: int, d_model: int = 128, n_heads: int = 8, d_ff: int = 512, n_layers: int = 8,
                 max_len: int = 20, dropout: float = 0.1, tie_weights: bool = False, activation: str = "relu"):
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, d_ff=d_ff, n_layers=n_layers,
                           max_len=max_len, dropout=dropout, tie_weights=tie_weights, activation=activation)
        self.embedding = Embedding(vocab_size, d_model)
        self.positions = PositionalEncoding(d_model, max_len)
        self.encoder = TransformerEncoder(n_layers, d_model, n_heads, d_ff, dropout, norm_first=True,
                                          activation=activation)
        self.norm = LayerNorm(d_model)
        self.head = Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            # One table serves as input and output. N(0, 1) rows would make the initial
            # logits ~sqrt(d_model) large, so as in the original Transformer the shared
            # table starts at N(0, 1/d_model) and is scaled by sqrt(d_model) on input.
            self.embedding.weight.data *= d_model ** -0.5
            self.head.weight = self.embedding.weight
        self.input_scale = d_model ** 0.5 if tie_weights else 1.0

    def hidden(self, ids):
        """Final (B, T, d_model) states, after the last LayerNorm."""
        if getattr(ids, "ndim", 0) != 2:
            raise ShapeError(f"MaskedLanguageModel: ids must be (batch, seq_len), got shape {getattr(ids, 'shape', None)}")
        x = self.embedding(ids)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        x = self.positions(x)
        return self.norm(self.encoder(x))

    def forward(self, ids):
        return self.head(self.hidden(ids))

    def loss(self, ids, targets, ignore_index: int = F.IGNORE_INDEX) -> Loss:
        """Mean cross-entropy over the targets that are not ``ignore_index`` (a ``Loss``
        whose count is how many); equal in value and gradients to
        ``F.cross_entropy(model(ids).reshape(-1, V), targets.reshape(-1))``, with the head
        applied to the scored positions only (``F.linear_cross_entropy`` skips the others)."""
        if tuple(targets.shape) != tuple(ids.shape):
            raise ShapeError(f"MaskedLanguageModel.loss: targets {tuple(targets.shape)} do not match ids {tuple(ids.shape)}")
        h = self.hidden(ids)
        loss = F.linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.head.weight, targets.reshape(-1),
                                      self.head.bias, ignore_index)
        return Loss(loss, int((targets != ignore_index).sum()))

    def evaluate(self, batches, ignore_index: int = F.IGNORE_INDEX):
        """(mean loss, accuracy) over the scored tokens of host ``(ids, targets)``
        batches, in evaluation mode."""
        total_loss, correct, count = 0.0, 0, 0
        with evaluating(self):
            for ids, targets in batches:
                flat_targets = targets.reshape(-1)
                scored = np.flatnonzero(flat_targets != ignore_index)
                if scored.size == 0:
                    continue
                h = self.hidden(to_device(ids, self.device))
                logits = self.head(h.reshape(-1, h.shape[-1])[scored])
                total_loss += F.cross_entropy(logits, to_device(flat_targets[scored], self.device)).item() * scored.size
                correct += int((logits.numpy().argmax(-1) == flat_targets[scored]).sum())
                count += scored.size
        return total_loss / max(count, 1), correct / max(count, 1)

    def fill_mask_lines(self, vocab, sentences, max_len: int, k: int = 5) -> list[str]:
        """For each sentence with a <mask> (``vocab``'s words, split by
        ``data.tokenize``): the sentence and the ``k`` likeliest words at its first mask."""
        lines = []
        for sentence in sentences:
            ids = vocab.encode(tokenize(sentence))[:max_len]
            if vocab.mask_id in ids:
                top, p = self.fill_mask(ids, int(np.flatnonzero(ids == vocab.mask_id)[0]), k, exclude=range(N_SPECIALS))
                lines.append(f"{sentence}\n    " + "  ".join(f"{vocab.itos[i]} ({q:.2f})" for i, q in zip(top, p)))
        return lines

    def fill_mask(self, ids, position: int, k: int = 5, exclude=()):
        """The ``k`` most likely ids at ``position`` of one host sequence ``ids`` (T,) and
        their probabilities under a softmax over the vocabulary without ``exclude``."""
        with evaluating(self):
            logits = self.head(self.hidden(to_device(ids[None], self.device))[0, position])
            blocked = np.zeros(logits.shape, dtype=logits.dtype)
            blocked[list(exclude)] = -np.inf
            probabilities = F.softmax(logits + Tensor(to_device(blocked, self.device))).numpy()
        top = np.argsort(-probabilities)[:k]
        return top, probabilities[top]
