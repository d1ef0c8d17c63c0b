"""Measuring word embeddings: cosine nearest neighbours and neighbour class purity."""
from __future__ import annotations

import numpy as np

from .tokenizer import SPECIALS


def _unit_rows(matrix):
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(embeddings: np.ndarray, itos, words, k: int = 5):
    """{word: [(neighbour, cosine), ...]} over the non-special vocabulary."""
    candidates = np.array([i for i, t in enumerate(itos) if t not in SPECIALS])
    unit = _unit_rows(embeddings[candidates])
    index = {itos[i]: n for n, i in enumerate(candidates)}
    result = {}
    for w in words:
        if w not in index:
            continue
        sims = unit @ unit[index[w]]
        sims[index[w]] = -np.inf
        top = np.argsort(-sims)[:k]
        result[w] = [(itos[candidates[j]], float(sims[j])) for j in top]
    return result


def neighbour_purity(embeddings: np.ndarray, itos, word_class: dict, k: int = 5) -> float:
    """Mean over class words in the vocabulary of the share of their k cosine-nearest
    neighbours (among all non-special words) that belong to the same class."""
    words = [w for w in itos if w in word_class]
    if not words:
        return float("nan")
    neighbours = nearest_neighbours(embeddings, itos, words, k)
    shares = [np.mean([word_class.get(n) == word_class[w] for n, _ in neighbours[w]]) for w in words]
    return float(np.mean(shares))


def neighbour_lines(embeddings: np.ndarray, itos, words, k: int = 5) -> list[str]:
    """One line per word of ``words`` in the vocabulary: its ``k`` nearest neighbours
    and their cosines."""
    return [f"{w:>12}: " + ", ".join(f"{n} ({c:.2f})" for n, c in near)
            for w, near in nearest_neighbours(embeddings, itos, words, k).items()]
