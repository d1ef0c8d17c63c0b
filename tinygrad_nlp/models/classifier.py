"""Transformer text classifier with a head on the [CLS] token (the classifier tutorial)."""
from __future__ import annotations

from .. import functional as F
from ..backend import asnumpy
from ..errors import ShapeError
from ..nn import Dropout, Embedding, LayerNorm, Linear, Loss, Module, PositionalEncoding, TransformerEncoder, predict_in_batches


class TextClassifier(Module):
    """Embedding + sinusoidal positions -> encoder (post-norm by default, as the
    tutorial) -> the first position's vector ([CLS]) -> Linear to class logits.

    ``mask`` is the (B, T) key-padding mask, True for real tokens; it is applied to every
    head of every example (the tutorial reshaped it so that, with several heads, rows
    got another example's mask). The model returns logits: apply softmax for
    probabilities, and give the logits, not probabilities, to ``F.cross_entropy``.
    """

    def __init__(self, vocab_size: int, num_classes: int = 2, d_model: int = 256, n_heads: int = 4, d_ff: int = 512,
                 n_layers: int = 4, max_len: int = 256, dropout: float = 0.4, norm_first: bool = False,
                 activation: str = "relu"):
        self.config = dict(vocab_size=vocab_size, num_classes=num_classes, d_model=d_model, n_heads=n_heads, d_ff=d_ff,
                           n_layers=n_layers, max_len=max_len, dropout=dropout, norm_first=norm_first,
                           activation=activation)
        self.embedding = Embedding(vocab_size, d_model)
        self.positions = PositionalEncoding(d_model, max_len)
        self.dropout = Dropout(dropout)
        self.encoder = TransformerEncoder(n_layers, d_model, n_heads, d_ff, dropout, norm_first, activation)
        # a pre-norm stack leaves its output un-normalised, so it gets a final norm
        self.norm = LayerNorm(d_model) if norm_first else None
        self.classifier = Linear(d_model, num_classes)

    def embed(self, ids, mask=None):
        """The final [CLS] vectors (B, d_model)."""
        if getattr(ids, "ndim", 0) != 2:
            raise ShapeError(f"TextClassifier: ids must be (batch, seq_len), got shape {getattr(ids, 'shape', None)}")
        if mask is not None and tuple(mask.shape) != tuple(ids.shape):
            raise ShapeError(f"TextClassifier: mask {tuple(mask.shape)} does not match ids {tuple(ids.shape)}")
        x = self.dropout(self.positions(self.embedding(ids)))
        x = self.encoder(x, mask)
        if self.norm is not None:
            x = self.norm(x)
        return x[:, 0]

    def forward(self, ids, mask=None):
        return self.classifier(self.embed(ids, mask))

    def probabilities(self, ids, mask, batch_size: int = 128):
        """Class probabilities (N, num_classes) of host arrays, in evaluation mode, a batch at a time."""
        return predict_in_batches(self, lambda *rows: F.softmax(self(*rows)), ids, mask, batch_size=batch_size)

    def loss(self, ids, mask, labels) -> Loss:
        """The mean cross-entropy of the logits against ``labels`` (a ``Loss`` over the
        batch's examples, with ``correct``: how many the logits classify right)."""
        logits = self(ids, mask)
        correct = int((logits.numpy().argmax(-1) == asnumpy(labels)).sum())
        return Loss(F.cross_entropy(logits, labels), len(labels), correct=correct)
