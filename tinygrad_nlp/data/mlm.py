"""Masked-language-model batches, as in the MLM tutorial: the sentences are tokenised,
concatenated into one stream and cut into rows of ``seq_len`` tokens; each token is
chosen for prediction with probability 0.15."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..ops.cross_entropy import IGNORE_INDEX
from .tokenizer import N_SPECIALS, SPECIALS, Vocab, tokenize


def encode_stream(sentences, vocab: Vocab) -> np.ndarray:
    """All sentences' token ids, one after another (each a string, or its tokens)."""
    ids = [vocab.encode(tokenize(s) if isinstance(s, str) else s) for s in sentences]
    return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)


def mask_tokens(ids: np.ndarray, vocab: Vocab, rng: np.random.Generator, mask_prob: float = 0.15,
                bert_masking: bool = False, ignore_index: int = IGNORE_INDEX):
    """(inputs, targets): a token is chosen with probability ``mask_prob``; its target is
    the token and its input is <mask> (or, with ``bert_masking``, <mask> 80% of the time,
    a random word 10% and unchanged 10%). Unchosen targets are ``ignore_index``.
    Padding and special tokens are never chosen."""
    chosen = (rng.random(ids.shape) < mask_prob) & (ids >= N_SPECIALS)
    targets = np.where(chosen, ids, ignore_index)
    inputs = ids.copy()
    if bert_masking:
        u = rng.random(ids.shape)
        inputs[chosen & (u < 0.8)] = vocab.mask_id
        random_word = chosen & (u >= 0.8) & (u < 0.9)
        inputs[random_word] = rng.integers(N_SPECIALS, len(vocab), int(random_word.sum()))
    else:
        inputs[chosen] = vocab.mask_id
    return inputs, targets


class MLMBatcher:
    """Rows of ``seq_len`` consecutive tokens, split into a training and a held-out part.

    Batches are a pure function of (seed, step): batch k is the k-th slice of a seeded
    permutation of the training rows (a new permutation each epoch), masked with a
    generator seeded by (seed, step). So a run resumed at step k sees exactly the batches
    an uninterrupted run would, with no state to save.
    """

    def __init__(self, stream: np.ndarray, vocab: Vocab, seq_len: int, batch_size: int, seed: int = 0,
                 heldout_fraction: float = 0.05, mask_prob: float = 0.15, bert_masking: bool = False):
        n_rows = len(stream) // seq_len
        if n_rows < 2:
            raise DataError(f"corpus has {len(stream)} tokens: too few for two rows of seq_len={seq_len}")
        rows = stream[: n_rows * seq_len].reshape(n_rows, seq_len)
        n_heldout = max(1, int(round(n_rows * heldout_fraction)))
        self.train_rows, self.heldout_rows = rows[:-n_heldout], rows[-n_heldout:]
        self.vocab, self.seq_len, self.batch_size, self.seed = vocab, seq_len, batch_size, seed
        self.mask_prob, self.bert_masking = mask_prob, bert_masking
        self.batches_per_epoch = max(1, len(self.train_rows) // batch_size)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.train_rows))

    def batch(self, step: int):
        """(inputs, targets) of shape (batch_size, seq_len) for training step ``step``."""
        epoch, k = divmod(step, self.batches_per_epoch)
        order = self._epoch_order(epoch)
        idx = order[k * self.batch_size:(k + 1) * self.batch_size]
        if len(idx) < self.batch_size:  # fewer rows than one batch: sample with replacement
            idx = np.random.default_rng([self.seed, 2, step]).choice(len(self.train_rows), self.batch_size)
        rng = np.random.default_rng([self.seed, 3, step])
        return mask_tokens(self.train_rows[idx], self.vocab, rng, self.mask_prob, self.bert_masking)

    def heldout_batches(self, max_rows: int = 2048):
        """Fixed held-out batches (the same masking every time, so evaluations compare)."""
        rows = self.heldout_rows[:max_rows]
        rng = np.random.default_rng([self.seed, 4])
        inputs, targets = mask_tokens(rows, self.vocab, rng, self.mask_prob, False)
        for i in range(0, len(rows), self.batch_size):
            yield inputs[i:i + self.batch_size], targets[i:i + self.batch_size]

    def frequency_baseline(self) -> float:
        """Held-out accuracy of always predicting the most frequent training word (the
        floor a masked-language model must beat)."""
        counts = np.bincount(self.train_rows.ravel(), minlength=len(self.vocab))
        counts[: len(SPECIALS)] = 0
        best = int(counts.argmax())
        hits = total = 0
        for _, targets in self.heldout_batches():
            scored = targets != IGNORE_INDEX
            hits += int((targets[scored] == best).sum())
            total += int(scored.sum())
        return hits / max(total, 1)
