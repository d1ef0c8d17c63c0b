"""GPT-2's Hugging Face checkpoint I/O: ``config.json`` (``GPTConfig``), the name table
between our parameters and a ``GPT2LMHeadModel``'s, and reading and writing
``model.safetensors``. GPT-2's projections are ``Conv1D`` layers whose weights are stored
(in, out); ours are ``Linear`` (out, in), so those are transposed on the way in and out.
The LM head is the token embedding (tied), so a checkpoint's ``lm_head.weight`` is not
read and is not written (transformers ties it again when it loads the folder).
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from ..errors import ArgumentError, CheckpointError
from .hf import HF_ACTIVATIONS, HFConfig, read_weights, write_folder


@dataclasses.dataclass
class GPTConfig(HFConfig):
    """The fields of a Hugging Face GPT-2 ``config.json`` this model uses (others are kept
    and written back as they were). The defaults are GPT-2 small's."""

    model_type, model_name = "gpt2", "GPT-2"

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int = 50256
    eos_token_id: int = 50256
    extra: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ArgumentError(f"GPTConfig: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.activation_function not in HF_ACTIVATIONS:
            raise ArgumentError(f"GPTConfig: activation_function {self.activation_function!r} is not supported; "
                                f"expected one of {sorted(HF_ACTIVATIONS)}")
        for option in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
            if self.extra.get(option):
                raise ArgumentError(f"GPTConfig: {option}=true is not supported")
        if self.extra.get("scale_attn_weights") is False or self.extra.get("tie_word_embeddings") is False:
            raise ArgumentError("GPTConfig: only GPT-2's scaled attention and tied LM head are supported")

    @property
    def activation(self) -> str:
        return HF_ACTIVATIONS[self.activation_function]


def as_config(config) -> GPTConfig:
    return GPTConfig.of(config)


# (our name, Hugging Face name, stored transposed): our names are a GPT2LMHeadModel's
# without the "transformer." prefix; GPT-2's Conv1D weights are (in, out)
NAMES = [
    (r"(wte|wpe)\.weight", r"transformer.\1.weight", False),
    (r"h\.(\d+)\.(ln_1|ln_2)\.(weight|bias)", r"transformer.h.\1.\2.\3", False),
    (r"h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight", r"transformer.h.\1.\2.weight", True),
    (r"h\.(\d+)\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.bias", r"transformer.h.\1.\2.bias", False),
    (r"ln_f\.(weight|bias)", r"transformer.ln_f.\1", False),
]
# entries of a checkpoint that are not parameters of ours: the tied head, the causal-mask buffers
IGNORED = (r"^lm_head\.weight$", r"\.attn\.(masked_)?bias$")


def hf_name(name: str) -> tuple[str, bool]:
    """(the Hugging Face name of our parameter ``name``, whether it is stored transposed)."""
    for ours, theirs, transposed in NAMES:
        match = re.fullmatch(ours, name)
        if match:
            return match.expand(theirs), transposed
    raise CheckpointError(f"no Hugging Face name for parameter {name!r}")


class GPTHuggingFaceCheckpoint:
    """Reading and writing a ``GPT2LMHeadModel`` folder (``config.json`` and
    ``model.safetensors``), for ``models.GPT``."""

    @classmethod
    def from_pretrained(cls, folder, dtype=np.float32, device: str = "cpu"):
        """The model of a Hugging Face GPT-2 folder; a missing, unexpected or misshapen
        tensor is a one-line CheckpointError naming it."""
        folder = os.fspath(folder)
        config = GPTConfig.from_json_file(os.path.join(folder, "config.json"))
        tensors, weights = read_weights(folder, cls.__name__)
        model = cls(config)
        model.load_hf_state_dict(tensors, source=weights)
        return model.to(device, dtype=dtype)

    def load_hf_state_dict(self, tensors: dict, source: str = "state dict") -> None:
        if not any(k.startswith("transformer.") for k in tensors):  # a bare GPT2Model's checkpoint
            tensors = {f"transformer.{k}": v for k, v in tensors.items()}
        state, used = {}, set()
        for name, p in self.named_parameters():
            theirs, transposed = hf_name(name)
            if theirs not in tensors:
                raise CheckpointError(f"{source}: {theirs!r} is missing (needed for {name!r} {p.shape})")
            value = tensors[theirs].T if transposed else tensors[theirs]
            if tuple(value.shape) != p.shape:
                raise CheckpointError(f"{source}: {theirs!r} has shape {tuple(tensors[theirs].shape)}, the model's "
                                      f"{name!r} {p.shape}{' transposed' if transposed else ''} (a config.json that "
                                      "does not fit the weights?)")
            state[name] = np.ascontiguousarray(value)
            used.add(theirs)
        unexpected = [k for k in tensors if k not in used and not any(re.search(r, k) for r in IGNORED)]
        if unexpected:
            raise CheckpointError(f"{source}: unexpected entry {unexpected[0]!r} {tuple(tensors[unexpected[0]].shape)} "
                                  f"not in {type(self).__name__} (a checkpoint of another architecture?)")
        self.load_state_dict(state)

    def hf_state_dict(self) -> dict:
        """This model's parameters under their Hugging Face names (host float32 arrays,
        the Conv1D weights transposed back to (in, out))."""
        result = {}
        for name, value in self.state_dict().items():
            theirs, transposed = hf_name(name)
            result[theirs] = np.ascontiguousarray(value.T if transposed else value, dtype=np.float32)
        return result

    def save_pretrained(self, folder) -> None:
        """Write ``config.json`` and ``model.safetensors`` as a ``GPT2LMHeadModel`` folder
        (each atomically), which transformers loads."""
        config = self.gpt_config.to_dict()
        config.update(architectures=["GPT2LMHeadModel"], dtype="float32")
        write_folder(folder, config, self.hf_state_dict())


__all__ = ["GPTConfig", "GPTHuggingFaceCheckpoint", "NAMES", "hf_name", "as_config"]
