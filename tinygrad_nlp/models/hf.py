"""What the Hugging Face checkpoint readers of every model share: config.json's activation
names, the safetensors loader (bfloat16 tensors widened to float32), a config.json as a
dataclass (``HFConfig``), reading and writing a checkpoint folder's two files, and the
folder I/O of a model whose parameters map one to one onto a checkpoint's tensors
(``HFCheckpoint``: GPT and Llama)."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

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


def read_config_json(path, model_type: str | None, what: str) -> dict:
    """The values of a Hugging Face ``config.json`` for ``model_type`` ("bert", "gpt2",
    "llama"; None: any); a CheckpointError naming the file when it is missing, not JSON,
    or another model's."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} config {path!r} does not exist (expected a Hugging Face config.json)")
    with open(path, encoding="utf-8") as f:
        try:
            values = json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{what} config {path!r} is not valid JSON ({e})") from None
    if model_type is not None and values.get("model_type", model_type) != model_type:
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
    return load_safetensors(path), path


def load_safetensors(path) -> dict:
    """{name: array} of a ``.safetensors`` file. NumPy has no bfloat16, the type most
    Llama checkpoints are stored in, so those tensors are widened to float32 here: a
    bfloat16 number is the upper 16 bits of a float32's."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path!r} is not a safetensors file ({e})") from None
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if not any(v["dtype"] == "BF16" for v in entries.values()):
        return safetensors().load_file(path)
    from safetensors import safe_open  # (safetensors() above: it is installed)
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    tensors = {}
    with safe_open(path, framework="numpy") as f:
        for name, entry in entries.items():
            if entry["dtype"] == "BF16":
                begin, end = entry["data_offsets"]
                bits = np.frombuffer(raw[begin:end], dtype="<u2").astype(np.uint32) << 16
                tensors[name] = bits.view(np.float32).reshape(entry["shape"])
            else:
                tensors[name] = f.get_tensor(name)
    return tensors


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


class HFCheckpoint:
    """Reading and writing a Hugging Face folder (``config.json`` and ``model.safetensors``)
    for a model each of whose parameters is one tensor of the checkpoint (GPT, Llama). The
    model names its ``config_class`` and ``architecture`` ("GPT2LMHeadModel"), keeps its
    config as ``hf_config``, and gives ``hf_name`` (the checkpoint's name of a parameter,
    and whether it is stored transposed) and ``ignored`` (patterns of checkpoint entries
    that are not parameters of this model)."""

    config_class: type = HFConfig
    architecture = ""

    def hf_name(self, name: str) -> tuple[str, bool]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ignored(self) -> tuple:
        return ()

    def with_checkpoint_prefix(self, tensors: dict) -> dict:
        """A bare base model's tensors (no "transformer." or "model." prefix) as the
        full model's; the others as they are."""
        return tensors

    @classmethod
    def from_pretrained(cls, folder, dtype=np.float32, device: str = "cpu"):
        """The model of a Hugging Face folder; a config.json of another model, or a
        missing, unexpected or misshapen tensor, is a one-line CheckpointError naming it."""
        folder = os.fspath(folder)
        config = cls.config_class.from_json_file(os.path.join(folder, "config.json"))
        tensors, weights = read_weights(folder, cls.__name__)
        model = cls(config)
        model.load_hf_state_dict(tensors, source=weights)
        return model.to(device, dtype=dtype)

    def load_hf_state_dict(self, tensors: dict, source: str = "state dict") -> None:
        tensors = self.with_checkpoint_prefix(tensors)
        state, used = {}, set()
        for name, p in self.named_parameters():
            theirs, transposed = self.hf_name(name)
            if theirs not in tensors:
                raise CheckpointError(f"{source}: {theirs!r} is missing (needed for {name!r} {p.shape})")
            value = tensors[theirs].T if transposed else tensors[theirs]
            if tuple(value.shape) != p.shape:
                raise CheckpointError(f"{source}: {theirs!r} has shape {tuple(tensors[theirs].shape)}, the model's "
                                      f"{name!r} {p.shape}{' transposed' if transposed else ''} (a config.json that "
                                      "does not fit the weights?)")
            state[name] = np.ascontiguousarray(value)
            used.add(theirs)
        unexpected = [k for k in tensors if k not in used and not any(re.search(r, k) for r in self.ignored())]
        if unexpected:
            raise CheckpointError(f"{source}: unexpected entry {unexpected[0]!r} {tuple(tensors[unexpected[0]].shape)} "
                                  f"not in {type(self).__name__} (a checkpoint of another architecture?)")
        self.load_state_dict(state)

    def hf_state_dict(self) -> dict:
        """This model's parameters under their Hugging Face names (host float32 arrays in
        the checkpoint's layout: GPT-2's Conv1D weights back to (in, out))."""
        result = {}
        for name, value in self.state_dict().items():
            theirs, transposed = self.hf_name(name)
            result[theirs] = np.ascontiguousarray(value.T if transposed else value, dtype=np.float32)
        return result

    def save_pretrained(self, folder) -> None:
        """Write ``config.json`` and ``model.safetensors`` as a folder of ``architecture``
        (each atomically), which transformers loads."""
        config = self.hf_config.to_dict()
        config.update(architectures=[self.architecture], dtype="float32")
        write_folder(folder, config, self.hf_state_dict())


def rename(name: str, table) -> tuple[str, bool]:
    """(the Hugging Face name of our parameter ``name``, whether it is stored transposed)
    from ``table``'s rows (our name's pattern, their name's template, transposed)."""
    for ours, theirs, transposed in table:
        match = re.fullmatch(ours, name)
        if match:
            return match.expand(theirs), transposed
    raise CheckpointError(f"no Hugging Face name for parameter {name!r}")


__all__ = ["HF_ACTIVATIONS", "HFConfig", "HFCheckpoint", "safetensors", "load_safetensors", "read_config_json",
           "read_weights", "write_folder", "rename"]
