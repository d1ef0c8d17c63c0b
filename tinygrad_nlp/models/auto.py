"""A decoder's folder read as the model its ``config.json`` names, as transformers'
``AutoModelForCausalLM``: GPT-2's (``models.GPT``) or Llama's (``models.Llama``)."""
from __future__ import annotations

import os

import numpy as np

from ..errors import CheckpointError
from .gpt import GPT
from .hf import read_config_json
from .llama import Llama

DECODERS = {"gpt2": GPT, "llama": Llama}  # config.json's model_type -> the model


def decoder_from_pretrained(folder, dtype=np.float32, device: str = "cpu"):
    """The GPT or Llama of a Hugging Face folder, by its config.json's ``model_type``; a
    CheckpointError naming the type when it is neither."""
    path = os.path.join(os.fspath(folder), "config.json")
    model_type = read_config_json(path, None, "decoder").get("model_type")
    if model_type not in DECODERS:
        raise CheckpointError(f"{path!r} is for model_type {model_type!r}: not a decoder this package runs "
                              f"(model_type {' or '.join(map(repr, DECODERS))})")
    return DECODERS[model_type].from_pretrained(folder, dtype=dtype, device=device)


__all__ = ["DECODERS", "decoder_from_pretrained"]
