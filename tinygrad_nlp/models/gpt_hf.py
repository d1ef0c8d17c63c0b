"""GPT-2's Hugging Face checkpoint I/O: ``config.json`` (``GPTConfig``), the name table
between our parameters and a ``GPT2LMHeadModel``'s, and reading and writing
``model.safetensors``. GPT-2's projections are ``Conv1D`` layers whose weights are stored
(in, out); ours are ``Linear`` (out, in), so those are transposed on the way in and out.
The LM head is the token embedding (tied), so a checkpoint's ``lm_head.weight`` is not
read and is not written (transformers ties it again when it loads the folder).
"""
from __future__ import annotations

import dataclasses

from ..errors import ArgumentError
from .hf import HF_ACTIVATIONS, HFCheckpoint, HFConfig, rename


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
    return rename(name, NAMES)


class GPTHuggingFaceCheckpoint(HFCheckpoint):
    """Reading and writing a ``GPT2LMHeadModel`` folder (``config.json`` and
    ``model.safetensors``), for ``models.GPT``."""

    config_class, architecture = GPTConfig, "GPT2LMHeadModel"

    def hf_name(self, name: str) -> tuple[str, bool]:
        return hf_name(name)

    def ignored(self) -> tuple:
        return IGNORED

    def with_checkpoint_prefix(self, tensors: dict) -> dict:
        if not any(k.startswith("transformer.") for k in tensors):  # a bare GPT2Model's checkpoint
            return {f"transformer.{k}": v for k, v in tensors.items()}
        return tensors


__all__ = ["GPTConfig", "GPTHuggingFaceCheckpoint", "NAMES", "hf_name", "as_config"]
