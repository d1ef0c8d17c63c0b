"""BERT (Devlin et al., 2019) on this engine's layers, reading and writing Hugging Face
checkpoints (``config.json`` + ``model.safetensors``).

    model = BertForSequenceClassification.from_pretrained("bert-base-uncased")  # a local folder
    logits = model(input_ids, token_type_ids, attention_mask)
    model.save_pretrained("finetuned")  # transformers.BertForSequenceClassification loads it

Every layer runs through the hand-written backward passes of ``ops/``: word + position +
token-type embeddings (docs/backward.md#embedding), layer norm, post-norm encoder layers
with fused-QKV self-attention and the exact erf GELU (#gelu-exact-and-tanh), the pooler's
tanh, and the MLM head fused with its loss on the scored positions
(#log-softmax-and-cross-entropy).

Names: the module tree reads like the rest of this package (``layers.3.attention.qkv``);
``hf_name_map`` gives the Hugging Face name(s) of each parameter. The separate query, key
and value projections of a checkpoint become one fused (3 * hidden, hidden) QKV
projection, stacked in that order, the layout ``F.self_attention`` reads.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import warnings

import numpy as np

from .. import backend
from .. import functional as F
from ..errors import ArgumentError, CheckpointError, MissingDependencyError, ShapeError
from ..nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, MultiHeadAttention, Parameter

HIDDEN_ACTIVATIONS = {  # config.json's hidden_act -> linear(..., activation=)
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


@dataclasses.dataclass
class BertConfig:
    """The fields of a Hugging Face BERT ``config.json`` this model uses (others are
    ignored when read, and written back as they were)."""

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

    @classmethod
    def from_dict(cls, values: dict) -> BertConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in values.items() if k in names}
        return cls(**known, extra={k: v for k, v in values.items() if k not in names})

    @classmethod
    def from_json_file(cls, path) -> BertConfig:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise CheckpointError(f"BERT config {path!r} does not exist (expected a Hugging Face config.json)")
        with open(path, encoding="utf-8") as f:
            try:
                values = json.load(f)
            except json.JSONDecodeError as e:
                raise CheckpointError(f"BERT config {path!r} is not valid JSON ({e})") from None
        if values.get("model_type", "bert") != "bert":
            raise CheckpointError(f"BERT config {path!r} is for model_type {values['model_type']!r}, not 'bert'")
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        values = dict(self.extra)
        values.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        values["model_type"] = "bert"
        return values


def _as_config(config) -> BertConfig:
    if config is None:
        return BertConfig()
    return config if isinstance(config, BertConfig) else BertConfig.from_dict(config)


class BertEmbeddings(Module):
    """LayerNorm(word[ids] + position[0..T-1] + token_type[types]), then dropout."""

    def __init__(self, config: BertConfig):
        self.word = Embedding(config.vocab_size, config.hidden_size)
        self.position = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids):
        xp = backend.get_array_module(input_ids)
        positions = xp.arange(input_ids.shape[1])
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class BertLayer(Module):
    """A post-norm encoder layer, as BERT's:
        x = norm1(x + dropout(out(self_attention(qkv(x)))))
        x = norm2(x + dropout(output(act(intermediate(x)))))
    (no dropout inside the feed-forward block, unlike PyTorch's encoder layer)."""

    def __init__(self, config: BertConfig):
        d = config.hidden_size
        self.attention = MultiHeadAttention(d, config.num_attention_heads, config.attention_probs_dropout_prob)
        self.norm1 = LayerNorm(d, config.layer_norm_eps)
        self.intermediate = Linear(d, config.intermediate_size)
        self.output = Linear(config.intermediate_size, d)
        self.norm2 = LayerNorm(d, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.activation = config.hidden_act

    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.attention(x, mask)))
        h = F.linear(x, self.intermediate.weight, self.intermediate.bias, activation=HIDDEN_ACTIVATIONS[self.activation])
        return self.norm2(x + self.dropout(self.output(h)))


class BertPreTrained(Module):
    """What the BERT models share: weight initialisation, checking inputs, and reading
    and writing Hugging Face checkpoint folders."""

    # parameters a checkpoint of another head may lack (they start freshly initialised)
    head_parameters: tuple = ()
    # checkpoint entries this model does not use and skips without complaint
    ignored_entries = (r"^cls\.", r"^classifier\.", r"(^|\.)position_ids$")

    def init_weights(self, config: BertConfig) -> None:
        """BERT's initialisation: weights and embeddings N(0, initializer_range), biases
        0, layer norms 1 and 0, the padding token's embedding 0 (each model calls it
        once built; a head's call covers the encoder inside it again)."""
        rng = backend.rng(np)
        for name, p in self.named_parameters():
            if re.search(r"norm\d?\.weight$", name):  # layer norms: norm, norm1, norm2, transform_norm
                p.data[...] = 1
            elif name.endswith("bias"):
                p.data[...] = 0
            else:
                p.data[...] = rng.normal(0.0, config.initializer_range, p.shape)
        word = self.named_module("word")
        if word is not None and config.pad_token_id is not None and 0 <= config.pad_token_id < config.vocab_size:
            word.weight.data[config.pad_token_id] = 0

    def named_module(self, attribute):
        for m in self.modules():
            if attribute in vars(m) and isinstance(vars(m)[attribute], Module):
                return vars(m)[attribute]
        return None

    # -- Hugging Face checkpoints ----------------------------------------------------------
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
        weights_path = os.path.join(folder, "model.safetensors")
        if not os.path.isfile(weights_path):
            other = [f for f in ("pytorch_model.bin", "tf_model.h5") if os.path.isfile(os.path.join(folder, f))]
            hint = f" (found {other[0]}: convert it with transformers' save_pretrained)" if other else ""
            raise CheckpointError(f"{cls.__name__}.from_pretrained: no model.safetensors in {folder!r}{hint}")
        tensors = _safetensors().load_file(weights_path)
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
        tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
                   for k, v in tensors.items()}
        if self.hf_base_prefix and not any(k.startswith(self.hf_base_prefix) for k in tensors):
            tensors = {self.hf_base_prefix + k: v for k, v in tensors.items()}  # a bare BertModel's checkpoint
        elif not self.hf_base_prefix and any(k.startswith("bert.") for k in tensors):
            tensors = {k[len("bert."):]: v for k, v in tensors.items() if k.startswith("bert.")}  # a head's checkpoint
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
        unexpected = [k for k in tensors if k not in used and not any(re.search(r, k) for r in self.ignored_entries)
                      and not (k.startswith(("pooler.", "bert.pooler.")) and not self.has_pooler())]
        if unexpected:
            raise CheckpointError(f"{source}: unexpected entry {unexpected[0]!r} {tuple(tensors[unexpected[0]].shape)} "
                                  f"not in {type(self).__name__} (a checkpoint of another architecture?)")
        self.load_state_dict(state, strict=False)
        return fresh

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
        through a temporary file and an atomic rename)."""
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        config = self.bert_config.to_dict()
        config.update(architectures=[type(self).__name__], dtype="float32", tie_word_embeddings=True)
        config.update(self.extra_config())
        _write_atomically(os.path.join(folder, "config.json"),
                          lambda path: _write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n"))
        tensors = self.hf_state_dict()
        _write_atomically(os.path.join(folder, "model.safetensors"),
                          lambda path: _safetensors().save_file(tensors, path, metadata={"format": "pt"}))

    def extra_config(self) -> dict:
        return {}

    def check_inputs(self, input_ids, token_type_ids, attention_mask, config: BertConfig):
        if getattr(input_ids, "ndim", 0) != 2:
            raise ShapeError(f"{type(self).__name__}: input_ids must be (batch, seq_len), got shape "
                             f"{getattr(input_ids, 'shape', None)}")
        if input_ids.shape[1] > config.max_position_embeddings:
            raise ShapeError(f"{type(self).__name__}: sequence length {input_ids.shape[1]} exceeds "
                             f"max_position_embeddings {config.max_position_embeddings}")
        for what, array in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if array is not None and tuple(array.shape) != tuple(input_ids.shape):
                raise ShapeError(f"{type(self).__name__}: {what} {tuple(array.shape)} does not match input_ids "
                                 f"{tuple(input_ids.shape)}")


class BertModel(BertPreTrained):
    """Embeddings, ``num_hidden_layers`` post-norm encoder layers, and a pooler
    (tanh(dense(h[:, 0]))) on the first token. Returns ``(sequence_output (B, T, H),
    pooled_output (B, H) or None without a pooler)``."""

    hf_base_prefix = ""

    def __init__(self, config=None, add_pooling_layer: bool = True):
        config = _as_config(config)
        self.bert_config = config
        self.config = dict(config=config.to_dict(), add_pooling_layer=add_pooling_layer)
        self.embeddings = BertEmbeddings(config)
        self.layers = ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.init_weights(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """``attention_mask`` (B, T): 1 or True on real tokens, 0 on padding."""
        self.check_inputs(input_ids, token_type_ids, attention_mask, self.bert_config)
        xp = backend.get_array_module(input_ids)
        if token_type_ids is None:
            token_type_ids = xp.zeros(input_ids.shape, dtype=np.int64)
        mask = None if attention_mask is None else attention_mask.astype(bool)
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask)
        pooled = None if self.pooler is None else F.tanh(self.pooler(x[:, 0]))
        return x, pooled


class BertForMaskedLM(BertPreTrained):
    """BERT with its masked-language-model head: transform = LayerNorm(act(dense(h))),
    then logits = transform W_word^T + bias, the decoder tied to the word embeddings."""

    head_parameters = ("transform", "decoder_bias")

    def __init__(self, config=None):
        config = _as_config(config)
        self.bert_config = config
        self.config = dict(config=config.to_dict())
        self.bert = BertModel(config, add_pooling_layer=False)
        self.transform = Linear(config.hidden_size, config.hidden_size)
        self.transform_norm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.decoder_bias = Parameter(np.zeros(config.vocab_size, dtype=np.float32))
        self.init_weights(config)

    def _transformed(self, h):
        activation = HIDDEN_ACTIVATIONS[self.bert_config.hidden_act]
        return self.transform_norm(F.linear(h, self.transform.weight, self.transform.bias, activation=activation))

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """Vocabulary logits at every position, (B, T, vocab_size)."""
        h, _ = self.bert(input_ids, token_type_ids, attention_mask)
        return F.linear(self._transformed(h), self.bert.embeddings.word.weight, self.decoder_bias)

    def loss(self, input_ids, labels, token_type_ids=None, attention_mask=None, ignore_index: int = -100):
        """Mean cross-entropy over the positions whose label is not ``ignore_index``,
        the head (transform and decoder) computed at those positions only."""
        labels = backend.to_device(labels, backend.device_of(input_ids))
        if tuple(labels.shape) != tuple(input_ids.shape):
            raise ShapeError(f"BertForMaskedLM.loss: labels {tuple(labels.shape)} do not match input_ids "
                             f"{tuple(input_ids.shape)}")
        h, _ = self.bert(input_ids, token_type_ids, attention_mask)
        xp = backend.get_array_module(labels)
        flat_labels = labels.reshape(-1)
        scored = xp.flatnonzero(flat_labels != ignore_index)
        rows = h.reshape(-1, h.shape[-1])[scored]
        return F.linear_cross_entropy(self._transformed(rows), self.bert.embeddings.word.weight, flat_labels[scored],
                                      bias=self.decoder_bias, ignore_index=ignore_index)


class BertForSequenceClassification(BertPreTrained):
    """BERT, its pooled [CLS] output, dropout and a linear layer to ``num_labels`` logits."""

    head_parameters = ("classifier", "bert.pooler")  # an MLM checkpoint has no pooler

    def __init__(self, config=None, num_labels: int = 2):
        config = _as_config(config)
        if num_labels < 1:
            raise ArgumentError(f"BertForSequenceClassification: num_labels must be >= 1, got {num_labels}")
        self.bert_config, self.num_labels = config, int(num_labels)
        self.config = dict(config=config.to_dict(), num_labels=self.num_labels)
        self.bert = BertModel(config, add_pooling_layer=True)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = Linear(config.hidden_size, self.num_labels)
        self.init_weights(config)

    @classmethod
    def config_kwargs(cls, config, kwargs):
        labels = config.extra.get("id2label")
        if labels and "num_labels" not in kwargs:
            kwargs = dict(kwargs, num_labels=len(labels))
        return kwargs

    def extra_config(self) -> dict:
        labels = self.bert_config.extra.get("id2label")
        if not labels or len(labels) != self.num_labels:
            labels = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
        return {"id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """Class logits (B, num_labels)."""
        _, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(pooled))

    def embed(self, input_ids, token_type_ids=None, attention_mask=None):
        """The pooled [CLS] vectors (B, hidden_size)."""
        return self.bert(input_ids, token_type_ids, attention_mask)[1]


# -- names ---------------------------------------------------------------------------------
_BASE_NAMES = [  # (our name, Hugging Face name), as regular expressions over a BertModel's names
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
_HEAD_NAMES = [
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
    for ours, theirs in _BASE_NAMES if base is not None else ():
        match = re.fullmatch(ours, base)
        if match:
            hf = base_prefix + match.expand(theirs)
            return [hf.format(part) for part in ("query", "key", "value")] if "{}" in hf else [hf]
    for ours, theirs in _HEAD_NAMES:
        match = re.fullmatch(ours, name)
        if match:
            return [match.expand(theirs)]
    raise CheckpointError(f"no Hugging Face name for parameter {name!r}")


# -- files ---------------------------------------------------------------------------------
def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise MissingDependencyError("reading and writing BERT checkpoints needs safetensors: "
                                     "pip install 'tinygrad_nlp[bert]'") from None
    return safetensors.numpy


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _write_atomically(path, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
