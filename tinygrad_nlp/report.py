"""What the examples write and show: progress bars, the loss plot, 2-D pictures of
vectors (t-SNE or PCA) as GIF frames, and TensorFlow Embedding Projector files.

tqdm, matplotlib, Pillow and scikit-learn are optional extras (``pip install
'tinygrad_nlp[examples]'``); without them the progress bar and plots are skipped with a
message and t-SNE falls back to PCA.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .distributed import launcher_rank


class _PlainProgress:
    """What a run shows without a live bar (``disable``, or tqdm not installed): messages
    as lines, and the postfix (e.g. the loss) every ``every`` updates."""

    def __init__(self, total, initial=0, every=10):
        self.n, self.total, self.every, self.postfix = initial, total, every, {}

    def write(self, message):
        print(message)

    def set_postfix(self, refresh=False, **values):
        self.postfix = values

    def update(self, n=1):
        self.n += n
        if self.postfix and self.n % self.every == 0:
            print(f"{self.n}/{self.total} " + " ".join(f"{k} {v}" for k, v in self.postfix.items()))

    def close(self):
        pass


def progress_bar(total: int, initial: int = 0, disable: bool = False, **kwargs):
    """A tqdm bar, or with ``disable`` (or without tqdm, or on a data-parallel job's
    processes after the first) plain log lines through the same methods: ``write``,
    ``set_postfix``, ``update``, ``close``."""
    try:
        from tqdm import tqdm
    except ImportError:
        disable = True
    disable = disable or launcher_rank() != 0
    if disable:
        return _PlainProgress(total, initial)
    return tqdm(total=total, initial=initial, dynamic_ncols=True, **kwargs)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_losses(path, train_loss, evaluations, ylabel="cross-entropy") -> bool:
    """Training loss per step (with a running mean) and held-out loss points
    (``evaluations``: dicts with "step" and "loss") as a PNG; False without matplotlib."""
    plt = _pyplot()
    if plt is None:
        print(f"matplotlib is not installed: skipping {os.path.basename(path)} (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(train_loss) + 1)
    ax.plot(steps, train_loss, lw=0.8, alpha=0.6, label="training loss")
    if len(steps) >= 20:
        k = max(5, len(steps) // 30)
        ax.plot(steps[k - 1:], np.convolve(train_loss, np.ones(k) / k, mode="valid"), lw=1.5,
                label=f"training loss ({k}-step mean)")
    if evaluations:
        ax.plot([e["step"] for e in evaluations], [e["loss"] for e in evaluations], "o-", label="held-out loss")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def project_2d(vectors, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, 2) points: t-SNE (scikit-learn) or PCA of ``vectors``."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
            return TSNE(2, init="pca", random_state=seed, perplexity=min(30, len(vectors) - 1)).fit_transform(vectors)
        except ImportError:
            print("scikit-learn is not installed: using PCA instead of t-SNE (pip install scikit-learn)")
    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def embedding_frame(vectors, labels, class_names, title, method: str = "tsne", seed: int = 0):
    """``vectors`` projected to 2-D (``project_2d``) as one labelled scatter plot frame."""
    return scatter_frame(project_2d(vectors, method, seed), labels, class_names, title)


def scatter_frame(points, labels, class_names, title):
    """One scatter plot of labelled 2-D points as a Pillow image (a GIF frame)."""
    plt = _pyplot()
    from PIL import Image
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for c, colour in zip(range(len(class_names)), ("tab:red", "tab:blue", "tab:green", "tab:orange")):
        chosen = labels == c
        ax.scatter(points[chosen, 0], points[chosen, 1], s=9, c=colour, alpha=0.7, label=class_names[c])
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.canvas.draw()
    image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba()).convert("RGB")
    plt.close(fig)
    return image


def save_gif(path, frames, seconds_per_frame: float = 0.9) -> None:
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 * seconds_per_frame), loop=0)


def export_projector(folder, embeddings, names, rows: int) -> int:
    """The first ``rows`` embeddings as ``values.tsv`` and their words as ``names.tsv``,
    the two files https://projector.tensorflow.org loads; returns the row count."""
    n = min(rows, len(names))
    os.makedirs(folder, exist_ok=True)
    np.savetxt(os.path.join(folder, "values.tsv"), np.round(embeddings[:n], 4), delimiter="\t", fmt="%.4f")
    with open(os.path.join(folder, "names.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(names[:n]) + "\n")
    return n


def confusion_report(labels, predicted, class_names) -> tuple[str, float]:
    """(a text table of true x predicted class counts with the accuracy, the accuracy)."""
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (np.asarray(labels), np.asarray(predicted)), 1)
    accuracy = float(np.trace(confusion) / max(confusion.sum(), 1))
    width = max(9, *(len(c) for c in class_names))
    lines = ["rows: true class, columns: predicted class", " " * width + "".join(f" {c:>{width}}" for c in class_names)]
    lines += [f"{class_names[i]:>{width}}" + "".join(f" {n:>{width}}" for n in confusion[i]) for i in range(k)]
    return "\n".join(lines) + f"\naccuracy {accuracy:.4f}\n", accuracy


def write_outputs(folder, files: dict) -> None:
    """Write each ``{name: content}`` into ``folder``: text as it is, anything else
    (a dict of metrics) as indented JSON."""
    os.makedirs(folder, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(content if isinstance(content, str) else json.dumps(content, indent=1))
