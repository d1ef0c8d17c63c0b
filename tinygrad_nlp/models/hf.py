"""What the Hugging Face checkpoint readers of every model share: config.json's activation
names, the safetensors loader, a config.json as a dataclass (``HFConfig``), and reading and
writing a checkpoint folder's two files."""
from __future__ import annotations

import dataclasses
import json
import os

from ..errors import CheckpointError, MissingDependencyError
from ..files import atomic_path, atomic_write

HF_ACTIVATIONS = {  # config.json's hidden_act / activation_function -> linear(..., activation=)
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


def safetensors():
    """``safetensors.numpy``, or a MissingDependencyError naming the extra."""
    try:
        import safetensors.numpy
    except ImportError:
        raise MissingDependencyError("reading and writing Hugging Face checkpoints needs safetensors: "
                                     "pip install 'tinygrad_nlp[bert]'") from None
    return safetensors.numpy


def read_config_json(path, model_type: str, what: str) -> dict:
    """The values of a Hugging Face ``config.json`` for ``model_type`` ("bert", "gpt2");
    a CheckpointError naming the file when it is missing, not JSON, or another model's."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} config {path!r} does not exist (expected a Hugging Face config.json)")
    with open(path, encoding="utf-8") as f:
        try:
            values = json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{what} config {path!r} is not valid JSON ({e})") from None
    if values.get("model_type", model_type) != model_type:
        raise CheckpointError(f"{what} config {path!r} is for model_type {values['model_type']!r}, not {model_type!r}")
    return values


def read_weights(folder, who: str) -> tuple[dict, str]:
    """(the arrays of ``folder``'s ``model.safetensors``, its path); a CheckpointError
    naming ``who`` and the folder without one (and what it holds instead, if anything)."""
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        other = [f for f in ("pytorch_model.bin", "tf_model.h5") if os.path.isfile(os.path.join(folder, f))]
        hint = f" (found {other[0]}: convert it with transformers' save_pretrained)" if other else ""
        raise CheckpointError(f"{who}.from_pretrained: no model.safetensors in {folder!r}{hint}")
    return safetensors().load_file(path), path


def write_folder(folder, config: dict, tensors: dict) -> None:
    """``config.json`` and ``model.safetensors`` in ``folder``, each atomically."""
    folder = os.fspath(folder)
    with atomic_write(os.path.join(folder, "config.json")) as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with atomic_path(os.path.join(folder, "model.safetensors")) as path:
        safetensors().save_file(tensors, path, metadata={"format": "pt"})


class HFConfig:
    """The fields of a Hugging Face ``config.json`` a model uses, as a dataclass with an
    ``extra`` field: other keys are kept there and written back as they were. A subclass
    names its ``model_type`` ("bert") and ``model_name`` ("BERT", for messages)."""

    model_type = ""
    model_name = ""

    @classmethod
    def from_dict(cls, values: dict):
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in values.items() if k in names},
                   extra={k: v for k, v in values.items() if k not in names})

    @classmethod
    def from_json_file(cls, path):
        return cls.from_dict(read_config_json(path, cls.model_type, cls.model_name))

    @classmethod
    def of(cls, config):
        """``config`` as this class: the defaults for None, a dict read with ``from_dict``."""
        if config is None:
            return cls()
        return config if isinstance(config, cls) else cls.from_dict(config)

    def to_dict(self) -> dict:
        values = dict(self.extra)
        values.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        values["model_type"] = self.model_type
        return values


__all__ = ["HF_ACTIVATIONS", "HFConfig", "safetensors", "read_config_json", "read_weights", "write_folder"]
