"""BERT's Hugging Face checkpoint I/O: ``config.json`` (``BertConfig``), the name table
between our parameters and Hugging Face's (``BASE_NAMES``, ``HEAD_NAMES``), and reading
and writing ``model.safetensors`` (``HuggingFaceCheckpoint``, which the BERT models
inherit). The separate query, key and value projections of a checkpoint become one fused
(3 * hidden, hidden) QKV projection, stacked in that order, the layout
``F.self_attention`` reads.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings

import numpy as np

from ..errors import ArgumentError, CheckpointError
from .hf import HF_ACTIVATIONS, HFConfig, read_weights, write_folder

HIDDEN_ACTIVATIONS = HF_ACTIVATIONS


@dataclasses.dataclass
class BertConfig(HFConfig):
    """The fields of a Hugging Face BERT ``config.json`` this model uses (others are
    ignored when read, and written back as they were)."""

    model_type, model_name = "bert", "BERT"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    extra: dict = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ArgumentError(f"BertConfig: hidden_size {self.hidden_size} is not divisible by "
                                f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in HIDDEN_ACTIVATIONS:
            raise ArgumentError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; "
                                f"expected one of {sorted(HIDDEN_ACTIVATIONS)}")
        if self.extra.get("position_embedding_type", "absolute") != "absolute":
            raise ArgumentError(f"BertConfig: position_embedding_type {self.extra['position_embedding_type']!r} "
                                "is not supported (only 'absolute')")


def as_config(config) -> BertConfig:
    return BertConfig.of(config)


class HuggingFaceCheckpoint:
    """Reading and writing a Hugging Face checkpoint folder, for a BERT model (a Module
    with ``bert_config``, ``head_parameters``, ``ignored_entries`` and ``config_kwargs``)."""

    def hf_name_map(self) -> dict:
        """{our parameter name: [its Hugging Face name(s)]} (three for a fused QKV)."""
        return {name: hf_names(name, self.hf_base_prefix) for name, _ in self.named_parameters()}

    hf_base_prefix = "bert."

    @classmethod
    def from_pretrained(cls, folder, dtype=np.float32, device: str = "cpu", **kwargs):
        """The model of a Hugging Face checkpoint folder (``config.json`` and
        ``model.safetensors``). Parameters of this model's head that the checkpoint
        lacks are freshly initialised, with a warning naming them; anything else missing,
        unexpected or of the wrong shape raises CheckpointError naming the first."""
        folder = os.fspath(folder)
        config = BertConfig.from_json_file(os.path.join(folder, "config.json"))
        tensors, weights_path = read_weights(folder, cls.__name__)
        model = cls(config, **cls.config_kwargs(config, kwargs))
        fresh = model.load_hf_state_dict(tensors, source=weights_path)
        if fresh:
            warnings.warn(f"{cls.__name__}.from_pretrained: {', '.join(fresh)} not in {weights_path!r}; "
                          "they are newly initialised (train them before use)", stacklevel=2)
        return model.to(device, dtype=dtype)

    @classmethod
    def config_kwargs(cls, config, kwargs):
        return kwargs

    def load_hf_state_dict(self, tensors: dict, source: str = "state dict") -> list:
        """Load Hugging Face-named arrays (``model.safetensors``' contents) into this
        model; returns the head parameters that were missing (left as initialised)."""
        tensors = self._in_our_prefix(_with_current_layer_norm_names(tensors))
        state, used, fresh = {}, set(), []
        for name, p in self.named_parameters():
            wanted = hf_names(name, self.hf_base_prefix)
            if not all(w in tensors for w in wanted):
                if name.startswith(self.head_parameters) and self.head_parameters:
                    fresh.append(name)
                    continue
                missing = next(w for w in wanted if w not in tensors)
                raise CheckpointError(f"{source}: {missing!r} is missing (needed for {name!r} {p.shape})")
            parts = [tensors[w] for w in wanted]
            value = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
            if tuple(value.shape) != p.shape:
                shapes = " + ".join(str(tuple(part.shape)) for part in parts)
                raise CheckpointError(f"{source}: {' / '.join(wanted)} has shape {shapes}, the model's {name!r} "
                                      f"{p.shape} (a config.json that does not fit the weights?)")
            state[name] = value
            used.update(wanted)
        unexpected = [k for k in tensors if k not in used and not self._skipped(k)]
        if unexpected:
            raise CheckpointError(f"{source}: unexpected entry {unexpected[0]!r} {tuple(tensors[unexpected[0]].shape)} "
                                  f"not in {type(self).__name__} (a checkpoint of another architecture?)")
        self.load_state_dict(state, strict=False)
        return fresh

    def _in_our_prefix(self, tensors: dict) -> dict:
        """A bare BertModel's checkpoint read by a model with a head gains the "bert."
        prefix; a head's checkpoint read by a bare BertModel loses it (and the head)."""
        if self.hf_base_prefix and not any(k.startswith(self.hf_base_prefix) for k in tensors):
            return {self.hf_base_prefix + k: v for k, v in tensors.items()}
        if not self.hf_base_prefix and any(k.startswith("bert.") for k in tensors):
            return {k[len("bert."):]: v for k, v in tensors.items() if k.startswith("bert.")}
        return tensors

    def _skipped(self, key: str) -> bool:
        """Whether an entry this model has no parameter for is one it may ignore: another
        head's, the position ids buffer, a pooler this model was built without."""
        return any(re.search(r, key) for r in self.ignored_entries) or \
            (key.startswith(("pooler.", "bert.pooler.")) and not self.has_pooler())

    def has_pooler(self) -> bool:
        return self.named_module("pooler") is not None

    def hf_state_dict(self) -> dict:
        """This model's parameters under their Hugging Face names (host float32 arrays,
        the fused QKV split back into query, key and value)."""
        result = {}
        for name, value in self.state_dict().items():
            wanted = hf_names(name, self.hf_base_prefix)
            for w, part in zip(wanted, np.split(value, len(wanted), axis=0)):
                result[w] = np.ascontiguousarray(part, dtype=np.float32)
        return result

    def save_pretrained(self, folder) -> None:
        """Write ``config.json`` and ``model.safetensors`` in Hugging Face's layout (each
        atomically)."""
        config = self.bert_config.to_dict()
        config.update(architectures=[type(self).__name__], dtype="float32", tie_word_embeddings=True)
        config.update(self.extra_config())
        write_folder(folder, config, self.hf_state_dict())

    def extra_config(self) -> dict:
        return {}

# -- names ---------------------------------------------------------------------------------
BASE_NAMES = [  # (our name, Hugging Face name), as regular expressions over a BertModel's names
    (r"embeddings\.word\.weight", r"embeddings.word_embeddings.weight"),
    (r"embeddings\.position\.weight", r"embeddings.position_embeddings.weight"),
    (r"embeddings\.token_type\.weight", r"embeddings.token_type_embeddings.weight"),
    (r"embeddings\.norm\.(weight|bias)", r"embeddings.LayerNorm.\1"),
    (r"layers\.(\d+)\.attention\.qkv\.(weight|bias)", r"encoder.layer.\1.attention.self.{}.\2"),
    (r"layers\.(\d+)\.attention\.out\.(weight|bias)", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"layers\.(\d+)\.norm1\.(weight|bias)", r"encoder.layer.\1.attention.output.LayerNorm.\2"),
    (r"layers\.(\d+)\.intermediate\.(weight|bias)", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"layers\.(\d+)\.output\.(weight|bias)", r"encoder.layer.\1.output.dense.\2"),
    (r"layers\.(\d+)\.norm2\.(weight|bias)", r"encoder.layer.\1.output.LayerNorm.\2"),
    (r"pooler\.(weight|bias)", r"pooler.dense.\1"),
]
HEAD_NAMES = [
    (r"transform\.(weight|bias)", r"cls.predictions.transform.dense.\1"),
    (r"transform_norm\.(weight|bias)", r"cls.predictions.transform.LayerNorm.\1"),
    (r"decoder_bias", r"cls.predictions.bias"),
    (r"classifier\.(weight|bias)", r"classifier.\1"),
]


def hf_names(name: str, base_prefix: str = "") -> list:
    """The Hugging Face name(s) of our parameter ``name`` (query, key and value for a
    fused QKV projection). ``base_prefix``: "bert." inside a model with a head."""
    if base_prefix and name.startswith(base_prefix):
        base = name[len(base_prefix):]
    else:
        base = None if base_prefix else name
    for ours, theirs in BASE_NAMES if base is not None else ():
        match = re.fullmatch(ours, base)
        if match:
            hf = base_prefix + match.expand(theirs)
            return [hf.format(part) for part in ("query", "key", "value")] if "{}" in hf else [hf]
    for ours, theirs in HEAD_NAMES:
        match = re.fullmatch(ours, name)
        if match:
            return [match.expand(theirs)]
    raise CheckpointError(f"no Hugging Face name for parameter {name!r}")


# -- files ---------------------------------------------------------------------------------
def _with_current_layer_norm_names(tensors: dict) -> dict:
    """Old TensorFlow-converted checkpoints call layer norms' weight and bias gamma and beta."""
    return {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
            for k, v in tensors.items()}
