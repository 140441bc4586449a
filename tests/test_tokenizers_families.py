"""Tokenizers built from vocabulary files — WordPiece (BERT), byte-level BPE (GPT-2) and
SentencePiece Unigram (T5) — against transformers' tokenizers on the same files; tokenizer.json
first; missing and corrupt files."""

from __future__ import annotations

import json
import shutil

import pytest

from hubloader.errors import TokenizerError
from hubloader.text.tokenizer import load_tokenizer

import transformers  # noqa: E402  (test-only oracle)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Pretrained models load by name, verified and cached exactly once.",
    "Hello world! Numbers 12345 and symbols #@$ appear too.",
    "café naïve résumé — unicode text, emoji 🙂 and  double  spaces.",
    "Un modèle, deux modèles; 中文 也 可以。",
] * 20
TEXTS = ["Hello world!", " leading space and trailing ", "café 🙂 中文 x", "quick\nbrown\tfox",
         "unseen wordsxyz qqq"]


def _write_config(d, model_type):
    (d / "config.json").write_text(json.dumps({"model_type": model_type}))


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer

    d = tmp_path_factory.mktemp("bpe")
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1,
                                special_tokens=["<|endoftext|>"])
    trainer.save_model(str(d))
    _write_config(d, "gpt2")
    return d


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
    import sentencepiece as spm
    d = tmp_path_factory.mktemp("spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_prefix=str(d / "spiece"), vocab_size=80,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        minloglevel=2)
    (d / "spiece.vocab").unlink()
    _write_config(d, "t5")
    return d


def test_byte_level_bpe_matches_gpt2_tokenizer(bpe_dir):
    ours = load_tokenizer(bpe_dir)
    ref = transformers.GPT2Tokenizer.from_pretrained(str(bpe_dir))
    for text in TEXTS:
        assert ours.encode(text) == ref(text)["input_ids"], text
        assert ours.decode(ours.encode(text)) == text
    batch = ours(TEXTS[:2])
    assert set(batch) == {"input_ids", "attention_mask"}  # GPT-2 takes no token_type_ids
    assert ours.pad_token is None is ref.pad_token  # as transformers: GPT-2 has no pad token


def test_tokenizer_json_takes_precedence(bpe_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(bpe_dir, d)
    ref = transformers.GPT2Tokenizer.from_pretrained(str(d))
    ref.save_pretrained(str(d))
    assert (d / "tokenizer.json").is_file()
    (d / "merges.txt").write_text("garbage that would fail\n")  # not read: tokenizer.json wins
    ours = load_tokenizer(d)
    for text in TEXTS:
        assert ours.encode(text) == ref(text)["input_ids"]


def test_sentencepiece_unigram_matches_t5_tokenizer(spm_dir):
    ours = load_tokenizer(spm_dir)
    ref = transformers.T5Tokenizer.from_pretrained(str(spm_dir))
    for text in TEXTS:
        assert ours.encode(text) == ref(text)["input_ids"], text
        assert ours.decode(ours.encode(text), skip_special_tokens=True) == \
            ref.decode(ref(text)["input_ids"], skip_special_tokens=True)
    ids = ours.encode("Hello world!")
    assert ids[-1] == ours.token_to_id("</s>") == 1
    assert ours.pad_token == "<pad>" and ours.pad_token_id == 0
    # T5's sentinels follow the vocabulary, <extra_id_0> last (as in t5-small's tokenizer.json)
    assert ours.token_to_id("<extra_id_0>") == 80 + 99
    assert ours.token_to_id("<extra_id_99>") == 80
    for sentinel in ("<extra_id_0>", "<extra_id_7>", "<extra_id_99>"):
        assert ours.token_to_id(sentinel) == ref.convert_tokens_to_ids(sentinel)
    assert ours.encode("fox <extra_id_0> dog") == ref("fox <extra_id_0> dog")["input_ids"]
    assert set(ours(["a b", "c"])) == {"input_ids", "attention_mask"}


def test_wordpiece_matches_bert_tokenizer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox",
             "hello", "world", "!", "##s", "##ing", "jump", ".", "cafe"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    _write_config(tmp_path, "bert")
    ours = load_tokenizer(tmp_path)
    ref = transformers.BertTokenizer.from_pretrained(str(tmp_path))
    for text in ["Hello world!", "The quick brown fox jumps.", "Café unknown"]:
        assert ours.encode(text) == ref(text)["input_ids"]
    assert set(ours(["a"])) == {"input_ids", "attention_mask", "token_type_ids"}


def test_missing_tokenizer_files(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.json").write_text("{}")  # merges.txt missing: BPE needs both
    with pytest.raises(TokenizerError, match="merges.txt"):
        load_tokenizer(tmp_path)


def test_corrupt_tokenizer_files(tmp_path, bpe_dir, spm_dir):
    bad = tmp_path / "json"
    shutil.copytree(bpe_dir, bad)
    (bad / "vocab.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        load_tokenizer(bad)
    bad = tmp_path / "merges"
    shutil.copytree(bpe_dir, bad)
    (bad / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(bad)
    bad = tmp_path / "spm"
    shutil.copytree(spm_dir, bad)
    (bad / "spiece.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0fnot a model")
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        load_tokenizer(bad)
    (bad / "spiece.model").write_bytes((spm_dir / "spiece.model").read_bytes()[:50])
    with pytest.raises(TokenizerError, match="SentencePiece"):
        load_tokenizer(bad)
    bad = tmp_path / "tj"
    bad.mkdir()
    (bad / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(bad)
