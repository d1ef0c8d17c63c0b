"""What the Hugging Face checkpoint readers of every model share: config.json's activation
names, the safetensors loader, and reading a config.json."""
from __future__ import annotations

import json
import os

from ..errors import CheckpointError, MissingDependencyError

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


__all__ = ["HF_ACTIVATIONS", "safetensors", "read_config_json"]
