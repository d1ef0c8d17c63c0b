"""GPT-2's byte-level BPE: trained here, saved, read back from either of GPT-2's file
layouts, with ids equal to transformers' GPT2TokenizerFast on the same files; any
tokenizer.json (Llama's kind built here) with ids equal to transformers' AutoTokenizer
on the same file; and the character tokenizer of the decoder example."""
import json

import numpy as np
import pytest

from tinygrad_nlp import DataError
from tinygrad_nlp.data import BPETokenizer, CharTokenizer, PretrainedTokenizer, folder_tokenizer, sentiment_corpus

pytest.importorskip("tokenizers", reason="tokenizers is not installed")
TEXTS = ["the cat sat on the mat .", "la chatte est sur le tapis !", "héllo wörld 123 — naïve café"] * 30
SAMPLES = ["the cat sat", " la chatte  est\n sur", "héllo 42 wörld!!<|endoftext|>x", "", "unseen ẞ symbols ✓"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    tokenizer = BPETokenizer.train(TEXTS + [t for t, _ in zip(*sentiment_corpus(200, seed=0))], vocab_size=400)
    tokenizer.save(folder)
    return tokenizer, folder


def test_saved_files_and_ids_equal_gpt2_tokenizer_fast(trained):
    transformers = pytest.importorskip("transformers")
    tokenizer, folder = trained
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "tokenizer.json", "tokenizer_config.json",
                                                        "vocab.json"]
    fast = transformers.GPT2TokenizerFast.from_pretrained(folder)
    for text in SAMPLES:
        assert tokenizer.ids(text).tolist() == fast(text)["input_ids"], text


def test_either_layout_reads_back_the_same_ids_and_decodes_every_byte(trained, tmp_path):
    tokenizer, folder = trained
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    from_pair = BPETokenizer.from_pretrained(tmp_path)
    from_json = BPETokenizer.from_pretrained(folder)
    for text in SAMPLES:
        ids = tokenizer.ids(text)
        assert from_pair.ids(text).tolist() == from_json.ids(text).tolist() == ids.tolist()
        assert tokenizer.decode(ids) == text  # byte-level: nothing is unknown
    assert len(tokenizer) == 400 and tokenizer.eos_id == 0


def test_encode_pads_with_end_of_text_and_masks_it(trained):
    tokenizer, _ = trained
    batch = tokenizer.encode(["the cat", "the cat sat on the mat"], 4)
    assert batch["input_ids"].shape == (2, 4) and batch["attention_mask"].tolist()[0][-1] == 0
    assert batch["input_ids"][0, -1] == tokenizer.eos_id


def test_bad_vocabulary_sizes_and_folders_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="vocab_size 200 leaves no room"):
        BPETokenizer.train(TEXTS, 200)
    with pytest.raises(DataError, match="no tokenizer.json, or vocab.json and merges.txt"):
        BPETokenizer.from_pretrained(tmp_path)


def test_characters_round_trip_and_an_unknown_one_is_named(tmp_path):
    tokenizer = CharTokenizer.train(["hello world", "hold"])
    assert len(tokenizer) == 8 and tokenizer.decode(tokenizer.ids("hold low")) == "hold low"
    tokenizer.save(tmp_path)
    again = CharTokenizer.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again.ids("world"), tokenizer.ids("world"))
    with pytest.raises(DataError, match="character 'a' is not in the vocabulary"):
        tokenizer.ids("lazy")



def llama_style_tokenizer():
    """A tokenizer.json of Llama 2's kind: SentencePiece-style BPE ("▁" for a space, put
    before the text), unknown characters as their bytes (<0x..> tokens), "<s>" added in
    front of every text by the post-processor."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokenizer.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                             show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tokenizer


@pytest.mark.parametrize("kind, config", [
    ("llama", None), ("llama", {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>"}),  # Llama 3's
    ("byte-level", {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>"}),  # SmolLM's
])
def test_a_tokenizer_json_gives_the_ids_of_transformers_auto_tokenizer(kind, config, tmp_path, trained):
    transformers = pytest.importorskip("transformers")
    if kind == "llama":
        PretrainedTokenizer(llama_style_tokenizer()).save(tmp_path)
    else:
        (tmp_path / "tokenizer.json").write_bytes((trained[1] / "tokenizer.json").read_bytes())
    if config:
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours = folder_tokenizer(tmp_path)
    assert type(ours) is PretrainedTokenizer
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(ours) == len(theirs)
    for text in SAMPLES:
        ids = ours.ids(text)
        assert ids.tolist() == theirs(text)["input_ids"], text
        assert ours.decode(ids) == theirs.decode(ids.tolist()), text
    if kind == "llama":
        assert ours.ids("the cat")[0] == 1 and "<0x" in "".join(ours.tokenizer.encode("ẞ").tokens)  # <s>; bytes


def test_a_folder_tokenizer_is_found_by_its_files_or_named_missing(tmp_path, trained):
    CharTokenizer.train(["abc"]).save(tmp_path / "chars")
    assert isinstance(folder_tokenizer(tmp_path / "chars"), CharTokenizer)
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / "pair").mkdir(exist_ok=True)
        (tmp_path / "pair" / name).write_bytes((trained[1] / name).read_bytes())
    assert isinstance(folder_tokenizer(tmp_path / "pair"), BPETokenizer)
    with pytest.raises(DataError, match="no tokenizer in .*: expected chars.json, tokenizer.json, or vocab.json"):
        folder_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="tokenizer.json' is not a tokenizer the tokenizers library reads") as caught:
        folder_tokenizer(tmp_path)
    assert "\n" not in str(caught.value)
