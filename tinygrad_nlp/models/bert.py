"""BERT (Devlin et al., 2019) on this engine's layers; its Hugging Face checkpoints
(``config.json`` + ``model.safetensors``) are read and written by ``bert_hf``.

    model = BertForSequenceClassification.from_pretrained("bert-base-uncased")  # a local folder
    logits = model(input_ids, token_type_ids, attention_mask)
    model.save_pretrained("finetuned")  # transformers.BertForSequenceClassification loads it

Every layer runs through the hand-written backward passes of ``ops/``: word + position +
token-type embeddings (docs/backward.md#embedding), layer norm, post-norm encoder layers
with fused-QKV self-attention and the exact erf GELU (#gelu-exact-and-tanh), the pooler's
tanh, and the MLM head fused with its loss on the scored positions
(#log-softmax-and-cross-entropy).

Names: the module tree reads like the rest of this package (``layers.3.attention.qkv``);
``hf_name_map`` gives the Hugging Face name(s) of each parameter (``bert_hf.NAMES``).
"""
from __future__ import annotations

import re

import numpy as np

from .. import backend
from .. import functional as F
from ..errors import ArgumentError, ShapeError
from ..nn import Dropout, Embedding, LayerNorm, Linear, Loss, Module, ModuleList, MultiHeadAttention, Packing, Parameter
from ..ops.checks import check_ids
from .bert_hf import HIDDEN_ACTIVATIONS, BertConfig, HuggingFaceCheckpoint, as_config, hf_names


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

    def forward(self, x, packing: Packing, wanted=None):
        """The layer on the (N, H) states of the rows ``packing`` names (an
        ``nn.Packing`` of a (B, T) batch): attention among each batch row's rows
        (``MultiHeadAttention.on_rows``), the dense parts on the rows. With ``wanted``
        (places among the rows), only those rows come out, and the parts after the
        attention run on them alone."""
        attended = self.attention.on_rows(x, packing, wanted)
        rows = packing.rows
        if wanted is not None:
            x, rows = x[wanted], rows[wanted]
        x = self.norm1(x + self.dropout(attended, rows, packing.shape))  # each row the mask of its position
        h = F.linear(x, self.intermediate.weight, self.intermediate.bias, activation=HIDDEN_ACTIVATIONS[self.activation])
        return self.norm2(x + self.dropout(self.output(h), rows, packing.shape))


class BertPreTrained(HuggingFaceCheckpoint, Module):
    """What the BERT models share: weight initialisation, checking inputs, and reading
    and writing Hugging Face checkpoint folders (``bert_hf.HuggingFaceCheckpoint``)."""

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
    pooled_output (B, H) or None without a pooler)``; ``states_at`` gives the states at
    chosen positions alone, on the one path through the layers that both take."""

    hf_base_prefix = ""

    def __init__(self, config=None, add_pooling_layer: bool = True):
        config = as_config(config)
        self.bert_config = config
        self.config = dict(config=config.to_dict(), add_pooling_layer=add_pooling_layer)
        self.embeddings = BertEmbeddings(config)
        self.layers = ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.init_weights(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        """``attention_mask`` (B, T): 1 or True on real tokens, 0 on padding. The states
        at every position (``states_at`` all of them, as the (B, T, H) grid; a padding
        position's state is that of a query no token sees, as Hugging Face's) and the
        pooled [CLS] vector from them."""
        every_position = backend.get_array_module(input_ids).arange(np.size(input_ids))
        states = self.states_at(every_position, input_ids, token_type_ids, attention_mask)
        x = F.reshape(states, (*input_ids.shape, -1))
        pooled = None if self.pooler is None else F.tanh(self.pooler(x[:, 0]))
        return x, pooled

    def states_at(self, positions, input_ids, token_type_ids=None, attention_mask=None):
        """The last layer's states at ``positions`` (flat indices into the (B, T) batch),
        (len(positions), H): the one path through the encoder, which ``forward``,
        ``pooled``, the MLM loss and fill-mask's logits take. Every layer skips the
        padding (a masked key, seen by no other token) unless a position asks for it:
        the layers run on the rows that reach the positions (``nn.Packing``), attention
        on each sequence's own rows (``F.ragged_self_attention``), and the last layer's
        parts after its attention on ``positions`` alone, so a padded batch costs its
        real tokens."""
        self.check_inputs(input_ids, token_type_ids, attention_mask, self.bert_config)
        xp = backend.get_array_module(input_ids)
        if token_type_ids is None:
            token_type_ids = xp.zeros(input_ids.shape, dtype=np.int64)
        B, T = input_ids.shape
        mask = None if attention_mask is None else attention_mask.astype(bool)
        positions = xp.asarray(positions)
        check_ids(positions, B * T, "BertModel.states_at", noun="position", of=f"a ({B}, {T}) batch of {{n}} positions")
        packing = Packing.reaching(positions, mask, (B, T))
        x = F.reshape(self.embeddings(input_ids, token_type_ids), (B * T, -1))
        if not packing.whole_grid:  # the whole grid's rows are the batch's own, in order: no copy
            x = x[packing.rows]
        wanted = packing.places(positions)
        if not len(self.layers):
            return x if wanted is None else x[wanted]
        for i, layer in enumerate(self.layers):  # the last one gives the wanted rows alone
            x = layer(x, packing, wanted if i == len(self.layers) - 1 else None)
        return x

    def pooled(self, input_ids, token_type_ids=None, attention_mask=None):
        """The pooled output alone, tanh(dense(h[:, 0])) (B, H), from the states at the
        first tokens only (``states_at``)."""
        if self.pooler is None:
            raise ArgumentError("BertModel.pooled: this model has no pooler (add_pooling_layer=False)")
        first_tokens = backend.get_array_module(input_ids).arange(input_ids.shape[0]) * input_ids.shape[1]
        return F.tanh(self.pooler(self.states_at(first_tokens, input_ids, token_type_ids, attention_mask)))


class BertForMaskedLM(BertPreTrained):
    """BERT with its masked-language-model head: transform = LayerNorm(act(dense(h))),
    then logits = transform W_word^T + bias, the decoder tied to the word embeddings."""

    head_parameters = ("transform", "decoder_bias")

    def __init__(self, config=None):
        config = as_config(config)
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

    def logits_at(self, positions, input_ids, token_type_ids=None, attention_mask=None):
        """The vocabulary logits at ``positions`` alone (flat indices into the (B, T)
        batch, e.g. the [MASK] tokens), (len(positions), vocab_size): those rows of
        ``forward``'s, through ``BertModel.states_at`` (padding skipped, the head on
        those rows only)."""
        h = self.bert.states_at(positions, input_ids, token_type_ids, attention_mask)
        return F.linear(self._transformed(h), self.bert.embeddings.word.weight, self.decoder_bias)

    def loss(self, input_ids, labels, token_type_ids=None, attention_mask=None, ignore_index: int = F.IGNORE_INDEX):
        """Mean cross-entropy over the positions whose label is not ``ignore_index`` (a
        ``Loss`` whose count is how many), the head (transform and decoder) computed at
        those positions only."""
        labels = backend.to_device(labels, backend.device_of(input_ids))
        if tuple(labels.shape) != tuple(input_ids.shape):
            raise ShapeError(f"BertForMaskedLM.loss: labels {tuple(labels.shape)} do not match input_ids "
                             f"{tuple(input_ids.shape)}")
        xp = backend.get_array_module(labels)
        flat_labels = labels.reshape(-1)
        scored = xp.flatnonzero(flat_labels != ignore_index)
        rows = self.bert.states_at(scored, input_ids, token_type_ids, attention_mask)
        loss = F.linear_cross_entropy(self._transformed(rows), self.bert.embeddings.word.weight, flat_labels[scored],
                                      bias=self.decoder_bias, ignore_index=ignore_index)
        return Loss(loss, int(scored.size))


class BertForSequenceClassification(BertPreTrained):
    """BERT, its pooled [CLS] output, dropout and a linear layer to ``num_labels`` logits."""

    head_parameters = ("classifier", "bert.pooler")  # an MLM checkpoint has no pooler

    def __init__(self, config=None, num_labels: int = 2):
        config = as_config(config)
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
        return self.classifier(self.dropout(self.bert.pooled(input_ids, token_type_ids, attention_mask)))

    def loss(self, input_ids, token_type_ids, attention_mask, labels) -> Loss:
        """The mean cross-entropy of the logits against ``labels`` (a ``Loss`` over the
        batch's examples, with ``correct``: how many the logits classify right)."""
        logits = self(input_ids, token_type_ids, attention_mask)
        correct = int((logits.numpy().argmax(-1) == backend.asnumpy(labels)).sum())
        return Loss(F.cross_entropy(logits, labels), len(labels), correct=correct)

    def embed(self, input_ids, token_type_ids=None, attention_mask=None):
        """The pooled [CLS] vectors (B, hidden_size)."""
        return self.bert.pooled(input_ids, token_type_ids, attention_mask)


__all__ = ["BertConfig", "BertModel", "BertForMaskedLM", "BertForSequenceClassification", "hf_names"]
