"""Checkpoints: model (+ optimizer) state in one ``.npz``, written atomically.

Layout of the archive: ``model/<param name>`` arrays, ``optim/<i>/<buffer>`` arrays, and
``__meta__``, a JSON string with the model's class and config, the optimizer's
hyper-parameters, any ``extra`` values, and a SHA-256 checksum of every array, which
``load`` verifies, so a truncated or corrupted file is reported, never half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile

import numpy as np

from . import distributed
from .backend import get_array_module, get_rng_state, set_rng_state
from .errors import AnomalyError, CheckpointError
from .files import atomic_write
from .models import MODELS
from .nn import DataParallel

FORMAT_VERSION = 2  # 2: an encoder's activation "gelu" is the exact form (in format 1 it was the tanh form)


def _unwrapped(model):
    """The model itself, for one wrapped for data-parallel training."""
    return model.module if isinstance(model, DataParallel) else model


def _checksum(arrays: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        digest.update(key.encode())
        digest.update(str(a.dtype).encode() + str(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def save(path, model, optimizer=None, **extra) -> None:
    """Write ``model`` (and ``optimizer``) to ``path`` atomically (``files.atomic_path``):
    an interrupted save leaves the previous file intact.
    ``extra`` values must be JSON-serialisable (step, seed, RNG state, ...)."""
    path, model = os.fspath(path), _unwrapped(model)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    meta = {"format": FORMAT_VERSION, "model_class": type(model).__name__,
            "config": getattr(model, "config", None), "extra": extra, "optimizer": None}
    if optimizer is not None:
        state = optimizer.state_dict()
        for i, buffers in enumerate(state.pop("state")):
            for name, value in buffers.items():
                arrays[f"optim/{i}/{name}"] = value
        state["n_params"] = len(optimizer.params)
        meta["optimizer"] = state
    meta["checksum"] = _checksum(arrays)
    with atomic_write(path, "wb", suffix=".npz") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)


def read(path):
    """(meta, arrays) of a checkpoint, verified; CheckpointError if missing or corrupt."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupt ({type(e).__name__}: {e})") from None
    if _checksum(arrays) != meta.get("checksum"):
        raise CheckpointError(f"checkpoint {path!r} failed its checksum: the file is corrupt")
    return meta, arrays


def load(path, model, optimizer=None) -> dict:
    """Load a checkpoint into ``model`` (any device) and ``optimizer``; return its
    ``extra`` values. A different architecture raises CheckpointError naming the first
    mismatched parameter and both shapes."""
    model = _unwrapped(model)
    meta, arrays = read(path)
    if meta["model_class"] != type(model).__name__:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} holds a {meta['model_class']}, not a {type(model).__name__}")
    try:
        model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {e}") from None
    if optimizer is not None:
        state = meta.get("optimizer")
        if state is None:
            raise CheckpointError(f"checkpoint {os.fspath(path)!r} has no optimizer state")
        buffers = [{} for _ in range(state["n_params"])]
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, i, name = key.split("/", 2)
                buffers[int(i)][name] = value
        optimizer.load_state_dict(dict(state, state=buffers))
    return meta.get("extra", {})


def load_model(path, device: str = "cpu"):
    """Rebuild the model a checkpoint was saved from (class and config) and load it."""
    meta, _ = read(path)
    cls = MODELS.get(meta["model_class"])
    if cls is None or not meta.get("config"):
        raise CheckpointError(f"checkpoint {os.fspath(path)!r}: cannot rebuild model class {meta['model_class']!r}")
    config = dict(meta["config"])
    if meta.get("format", 1) < 2 and config.get("activation") == "gelu":
        warnings.warn(f"checkpoint {os.fspath(path)!r} was written when activation 'gelu' meant the tanh form: "
                      "read as 'gelu_tanh' (save it again to keep this)", FutureWarning, stacklevel=2)
        config["activation"] = "gelu_tanh"
    model = cls(**config)
    load(path, model)
    return model.to(device) if device != "cpu" else model


class Checkpointer:
    """Saves a training run to one path, never replacing a good checkpoint with a
    diverged model, and turns a non-finite loss into one error naming the last good
    checkpoint.

        saver = Checkpointer("runs/mlm/ckpt.npz")
        saver.check_loss(loss.item(), "at step 9")   # AnomalyError if NaN or inf
        saver.save(model, optimizer, "step 10", step=10)
    """

    def __init__(self, path):
        self.path = None if path is None else os.fspath(path)
        self.last_good = None  # what the file on disk holds, e.g. "step 6"

    def _kept(self) -> str:
        if self.path is None or not os.path.exists(self.path):
            return ""
        held = f" ({self.last_good})" if self.last_good else ""
        return f"; the last good checkpoint is {self.path}{held}"

    def check_loss(self, value: float, where: str) -> None:
        if not np.isfinite(value):
            raise AnomalyError(f"training diverged: loss is {value} {where} (try a lower --lr){self._kept()}")

    def save(self, model, optimizer=None, label: str = "", **extra) -> None:
        """Save unless a parameter is NaN or inf (then AnomalyError, and the file keeps
        the last good save). A Checkpointer without a path saves nothing, and in a
        data-parallel job only the first process writes (all hold the same weights)."""
        if self.path is None or distributed.launcher_rank() != 0:
            return
        for name, p in _unwrapped(model).named_parameters():
            if not bool(get_array_module(p.data).isfinite(p.data).all()):
                raise AnomalyError(f"training diverged: parameter {name} is not finite after {label} "
                                   f"(try a lower --lr){self._kept()}")
        save(self.path, model, optimizer, **extra)
        self.last_good = label


def save_step(saver: Checkpointer, model, optimizer, scheduler, step: int, history: dict) -> None:
    """A training run at ``step`` through ``saver``: model, optimizer, the learning-rate
    schedule, the random generators and the run's ``history`` (lists), all a resume needs."""
    saver.save(model, optimizer, f"step {step}", step=step, scheduler=scheduler.state_dict(),
               rng_state=get_rng_state(), **history)


def resume(path, model, optimizer, scheduler, history: dict) -> int:
    """Continue a run ``save_step`` wrote: load the model, optimizer, schedule and random
    generators, refill ``history`` (its keys), and return the step it was saved at."""
    extra = load(path, model, optimizer)
    scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(extra["rng_state"])
    history.update({k: list(extra[k]) for k in history})
    return int(extra["step"])
