"""hubloader's tokenizers against transformers' on the same files, for the same calls: ids,
masks, token types and decoded text, every padding and truncation mode, single texts, batches
and pairs; English, Chinese, accented text and emoji; the special-token attributes; and
``save_pretrained`` read back by transformers' ``AutoTokenizer`` with equal ids."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from hubloader.errors import TokenizerError
from hubloader.text.tokenizer import load_tokenizer
from test_tokenizers_families import bpe_dir, spm_dir  # noqa: F401  (fixtures)

transformers = pytest.importorskip("transformers")

TEXTS = ["The quick brown fox jumps over the lazy dog, isn't it?",
         "中文也可以。模型按名字加载",
         "Café naïve résumé — über façade",
         "emoji 🙂🚀 and 👩‍👩‍👧 family",
         "a"]
PAIRS = ["second part", "第二部分", "déjà vu", "🙂 ok", "b b b b b b b b b b b b"]
CALLS = [
    {},
    {"padding": True}, {"padding": "longest"}, {"padding": False}, {"padding": "do_not_pad"},
    {"truncation": "do_not_truncate", "max_length": 5}, {"truncation": False, "max_length": 5},
    {"padding": "max_length", "max_length": 24},
    {"padding": "max_length"},  # to the model's limit (none for some: then no padding)
    {"truncation": True, "max_length": 6}, {"max_length": 7},  # max_length alone truncates
    {"truncation": "longest_first", "max_length": 9, "padding": "max_length"},
    {"truncation": True, "padding": True},
    {"padding": True, "return_tensors": "pt"},
    {"padding": True, "truncation": True, "max_length": 8, "return_tensors": "pt"},
    {"padding": True, "return_attention_mask": False},
    {"padding": True, "return_token_type_ids": False},
    {"padding": "max_length", "max_length": 20, "pad_to_multiple_of": 8},
    {"add_special_tokens": False, "padding": True},
]
PAIR_CALLS = [{}, {"padding": True}, {"truncation": True, "max_length": 10},
              {"truncation": "only_first", "max_length": 14, "padding": "max_length"},
              {"truncation": "only_second", "max_length": 16, "padding": True},
              {"truncation": "only_second", "max_length": 4},  # impossible: both refuse
              {"truncation": True, "max_length": 12, "padding": True, "return_tensors": "pt"}]
ATTRS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
         "mask_token", "bos_token_id", "eos_token_id", "unk_token_id", "sep_token_id",
         "pad_token_id", "cls_token_id", "mask_token_id", "model_max_length", "vocab_size",
         "padding_side", "model_input_names")


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def _outcome(tok, *args, **kwargs):
    """The call's output as plain lists, or ``"error"`` (both libraries must refuse alike)."""
    try:
        out = tok(*args, **kwargs)
    except (ValueError, Exception):  # transformers raises bare Exception from the Rust side
        return "error"
    kind = {k: type(v).__name__ for k, v in out.items()}
    return {k: _plain(v) for k, v in out.items()}, sorted(set(kind.values()))


def _assert_same_calls(ours, ref, texts=TEXTS, pairs=PAIRS):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in CALLS:
            for args in ((texts,), (texts[0],), (texts[3],)):
                assert _outcome(ours, *args, **call) == _outcome(ref, *args, **call), (call, args)
        for call in PAIR_CALLS:
            for args in ((texts, pairs), (texts[1], pairs[1])):
                assert _outcome(ours, *args, **call) == _outcome(ref, *args, **call), (call, args)


def _assert_same_decoding(ours, ref, texts=TEXTS):
    ids = ref(texts)["input_ids"]
    for row in ids:
        for skip in (False, True):
            assert ours.decode(row, skip_special_tokens=skip) == \
                ref.decode(row, skip_special_tokens=skip), (row, skip)
        assert ours.decode(torch.tensor(row)) == ref.decode(row)
        assert ours.convert_ids_to_tokens(row) == ref.convert_ids_to_tokens(row)
        assert ours.convert_ids_to_tokens(row[0]) == ref.convert_ids_to_tokens(row[0])
        tokens = ref.convert_ids_to_tokens(row)
        assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    assert ours.batch_decode(ids) == ref.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == \
        ref.batch_decode(ids, skip_special_tokens=True)
    assert ours.convert_tokens_to_ids("no-such-token-xyz") == \
        ref.convert_tokens_to_ids("no-such-token-xyz")
    for text in texts:
        assert ours.encode(text) == ref.encode(text)
        assert ours.tokenize(text) == ref.tokenize(text)
    for name in ATTRS:
        assert getattr(ours, name) == getattr(ref, name), name
    assert len(ours) == len(ref)
    assert sorted(ours.all_special_tokens) == sorted(ref.all_special_tokens)
    assert sorted(ours.all_special_ids) == sorted(ref.all_special_ids)


def _assert_save_round_trip(ours, ref, tmp_path):
    saved = tmp_path / "saved"
    written = ours.save_pretrained(saved)
    assert sorted(p.name for p in written) == ["tokenizer.json", "tokenizer_config.json"]
    back = transformers.AutoTokenizer.from_pretrained(str(saved))
    for text in TEXTS:
        assert back(text)["input_ids"] == ref(text)["input_ids"], text
    batch = back(TEXTS, padding=True)
    assert batch["input_ids"] == ref(TEXTS, padding=True)["input_ids"]
    assert batch["attention_mask"] == ref(TEXTS, padding=True)["attention_mask"]
    for name in ATTRS:
        assert getattr(back, name) == getattr(ref, name), name
    again = load_tokenizer(saved)  # and hubloader reads its own save
    assert again(TEXTS)["input_ids"] == ours(TEXTS)["input_ids"]


@pytest.fixture(params=["tokenizer.json", "vocab.txt"])
def minilm_pair(request, minilm_dir, tmp_path):
    """all-MiniLM-L6-v2's real tokenizer, from tokenizer.json or rebuilt from vocab.txt."""
    d = tmp_path / "tok"
    d.mkdir()
    for name in (request.param, "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, d)
    return load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


def test_minilm_calls_match_transformers(minilm_pair):
    _assert_same_calls(*minilm_pair)


def test_minilm_decoding_and_attributes_match_transformers(minilm_pair):
    _assert_same_decoding(*minilm_pair)


def test_minilm_save_pretrained_reads_back_in_transformers(minilm_pair, tmp_path):
    _assert_save_round_trip(*minilm_pair, tmp_path)


@pytest.fixture
def roberta_dir(bpe_dir, tmp_path):  # noqa: F811
    """The byte-level BPE test vocabulary with RoBERTa's special tokens."""
    d = tmp_path / "roberta"
    shutil.copytree(bpe_dir, d)
    vocab = json.loads((d / "vocab.json").read_text())
    for token in ("<s>", "<pad>", "</s>", "<unk>", "<mask>"):
        vocab.setdefault(token, len(vocab))
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer",
                                                         "model_max_length": 64}))
    return d


@pytest.mark.parametrize("family", ["gpt2", "roberta", "t5"])
def test_family_tokenizers_match_transformers(family, bpe_dir, spm_dir, roberta_dir,  # noqa: F811
                                              tmp_path):
    """The families' test vocabularies (byte-level BPE, RoBERTa's, SentencePiece), read by
    transformers' class for the family and by hubloader."""
    src = {"gpt2": bpe_dir, "roberta": roberta_dir, "t5": spm_dir}[family]
    cls = {"gpt2": "GPT2Tokenizer", "roberta": "RobertaTokenizer", "t5": "T5Tokenizer"}[family]
    ref = getattr(transformers, cls).from_pretrained(str(src))
    ours = load_tokenizer(src)
    _assert_same_decoding(ours, ref)
    if ref.pad_token is None:  # GPT-2 has none: both refuse to pad, then pad with eos
        with pytest.raises(TokenizerError, match="padding token"):
            ours(TEXTS, padding=True)
        ours.pad_token = ours.eos_token
        ref.pad_token = ref.eos_token
    _assert_same_calls(ours, ref)
    _assert_save_round_trip(ours, ref, tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=4),
       max_length=st.integers(min_value=3, max_value=20),
       padding=st.sampled_from([True, False, "max_length"]))
def test_any_text_matches_transformers(minilm_dir, texts, max_length, padding):
    ours, ref = _cached(minilm_dir)
    call = {"padding": padding, "truncation": True, "max_length": max_length}
    assert _outcome(ours, texts, **call) == _outcome(ref, texts, **call)


_TOKS: dict = {}


def _cached(minilm_dir):
    if "pair" not in _TOKS:
        _TOKS["pair"] = (load_tokenizer(minilm_dir),
                         transformers.AutoTokenizer.from_pretrained(str(minilm_dir)))
    return _TOKS["pair"]


def test_bad_arguments_are_typed_errors(minilm_dir):
    tok = load_tokenizer(minilm_dir)
    for call in ({"padding": "sideways"}, {"truncation": "middle"}, {"max_length": 0},
                 {"return_tensors": "tf"}, {"padding_side": "up"}):
        with pytest.raises(TokenizerError):
            tok(TEXTS, **call)
    with pytest.raises(TokenizerError, match="padding=True"):
        tok(TEXTS, return_tensors="pt")  # rows of different lengths
    with pytest.raises(TokenizerError):
        tok(TEXTS, PAIRS[:2])


def test_model_takes_the_tokenizer_output(minilm_dir):
    """``model(**tok(texts, padding=True, return_tensors="pt"))``, as the README shows."""
    from hubloader import AutoLoader

    loader = AutoLoader("feature-extraction", str(minilm_dir))
    model, tok = loader.get_model(), loader.get_tokenizer()
    batch = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    assert batch.input_ids is batch["input_ids"]
    with torch.no_grad():
        emb = model(**batch)["embeddings"]
        one = model(**tok(TEXTS[1], return_tensors="pt"))["embeddings"]
    assert emb.shape == (len(TEXTS), 384)
    assert (emb[1] - one[0]).abs().max().item() < 1e-5
