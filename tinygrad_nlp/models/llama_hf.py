"""Llama's Hugging Face checkpoint I/O: ``config.json`` (``LlamaConfig``), the name table
between our parameters and a ``LlamaForCausalLM``'s, and reading and writing
``model.safetensors``. Our names are the checkpoint's without the "model." prefix (and
``lm_head.weight`` as it is); every weight is a ``Linear``'s (out, in), as stored. A tied
LM head (``tie_word_embeddings``) is the token embedding: no ``lm_head.weight`` is read or
written (transformers ties it again when it loads the folder).
"""
from __future__ import annotations

import dataclasses

from ..errors import ArgumentError
from .hf import HFCheckpoint, HFConfig, rename


@dataclasses.dataclass
class LlamaConfig(HFConfig):
    """The fields of a Hugging Face Llama ``config.json`` this model uses (others are kept
    and written back as they were). The defaults are transformers' (Llama 2 7B's).
    ``rope_theta`` is read from ``rope_parameters`` (transformers 5) or the top level
    (older files); a RoPE scaling (linear, dynamic, YaRN, Llama 3's) is not supported."""

    model_type, model_name = "llama", "Llama"

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    pad_token_id: int | None = None
    extra: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ArgumentError(f"LlamaConfig: hidden_size {self.hidden_size} is not divisible by "
                                    f"num_attention_heads {self.num_attention_heads}")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads < 1 or self.num_attention_heads % self.num_key_value_heads:
            raise ArgumentError(f"LlamaConfig: num_attention_heads {self.num_attention_heads} is not a multiple of "
                                f"num_key_value_heads {self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ArgumentError(f"LlamaConfig: head_dim {self.head_dim} must be even (RoPE turns pairs of features)")
        if self.hidden_act != "silu":
            raise ArgumentError(f"LlamaConfig: hidden_act {self.hidden_act!r} is not supported (Llama's MLP is "
                                "SwiGLU: 'silu')")
        if not 0 <= self.attention_dropout < 1:
            raise ArgumentError(f"LlamaConfig: attention_dropout must be in [0, 1), got {self.attention_dropout}")
        scaling = self.extra.get("rope_scaling") or {}
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind != "default":
            raise ArgumentError(f"LlamaConfig: rope_scaling {scaling} is not supported (only RoPE without scaling, "
                                "rope_type 'default')")
        if self.extra.get("pretraining_tp", 1) != 1:
            raise ArgumentError(f"LlamaConfig: pretraining_tp {self.extra['pretraining_tp']} is not supported (only 1)")

    @classmethod
    def from_dict(cls, values: dict):
        """transformers 5 writes ``rope_parameters`` ({"rope_theta", "rope_type", and a
        scaling's settings}); older files ``rope_theta`` and ``rope_scaling``. Both are
        read into ``rope_theta``, and a scaling kept in ``extra`` to be refused."""
        values = dict(values)
        parameters = values.pop("rope_parameters", None) or {}
        if "rope_theta" in parameters:
            values.setdefault("rope_theta", parameters["rope_theta"])
        if parameters.get("rope_type", "default") != "default":
            values["rope_scaling"] = parameters
        return super().from_dict(values)

    def to_dict(self) -> dict:
        """The fields, with ``rope_theta`` written both as transformers 5 reads it
        (``rope_parameters``) and as older versions do (top level)."""
        values = super().to_dict()
        values["rope_parameters"] = {"rope_theta": self.rope_theta, "rope_type": "default"}
        return values


def as_config(config) -> LlamaConfig:
    return LlamaConfig.of(config)


# (our name, Hugging Face name, stored transposed): a LlamaForCausalLM's names without "model."
NAMES = [
    (r"(embed_tokens\.weight|norm\.weight|layers\.\d+\..+)", r"model.\1", False),
    (r"lm_head\.weight", r"lm_head.weight", False),
]


def hf_name(name: str) -> tuple[str, bool]:
    """(the Hugging Face name of our parameter ``name``, whether it is stored transposed)."""
    return rename(name, NAMES)


class LlamaHuggingFaceCheckpoint(HFCheckpoint):
    """Reading and writing a ``LlamaForCausalLM`` folder (``config.json`` and
    ``model.safetensors``), for ``models.Llama``."""

    config_class, architecture = LlamaConfig, "LlamaForCausalLM"

    def hf_name(self, name: str) -> tuple[str, bool]:
        return hf_name(name)

    def ignored(self) -> tuple:
        """The rotary tables some older checkpoints stored; the head of a tied checkpoint
        (the token embedding again)."""
        return (r"\.rotary_emb\.inv_freq$",) + ((r"^lm_head\.weight$",) if self.hf_config.tie_word_embeddings else ())

    def with_checkpoint_prefix(self, tensors: dict) -> dict:
        if not any(k.startswith("model.") for k in tensors):  # a bare LlamaModel's checkpoint
            return {k if k == "lm_head.weight" else f"model.{k}": v for k, v in tensors.items()}
        return tensors


__all__ = ["LlamaConfig", "LlamaHuggingFaceCheckpoint", "NAMES", "hf_name", "as_config"]
