"""GLM's tokenizer has the surface every hubloader tokenizer has, with transformers' meaning:
``convert_tokens_to_ids``, padding, truncation, ``max_length``, ``return_tensors``, ``decode``
and ``batch_decode``, the special-token attributes, ``save_pretrained``.

The oracle is transformers' own ``PreTrainedTokenizerFast`` over the same vocabulary, with GLM's
command tokens added at GLM's ids (the SentencePiece layout's free slot held by a placeholder)
and GLM's template ``[CLS] text <eos>``: its padding and truncation are transformers' code.
GLM's ``attention_mask`` is FlagAI's form, each row's separation index: transformers' 0/1
mask summed over the row.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from _flagai import write_sentencepiece, write_wordpiece
from hubloader.errors import TokenizerError
from hubloader.text.base import BaseTokenizer
from hubloader.text.glm import GLMTokenizer, load_glm_tokenizer
from hubloader.text.tokenizer import Tokenizer, load_tokenizer

transformers = pytest.importorskip("transformers")

CH_TEXTS = ["北京是中国的首都", "今天天气很好", "上海", "北京 上海 天气很好 我们去散步"]
EN_TEXTS = ["the quick brown fox", "hello world", "jumping foxes over the lazy dogs", "fox"]
CALLS = [
    {"padding": False, "truncation": False, "return_tensors": None},
    {"padding": True, "return_tensors": None},
    {"padding": "longest", "return_tensors": None},
    {"padding": "max_length", "max_length": 24, "return_tensors": None},
    {"padding": False, "truncation": True, "max_length": 5, "return_tensors": None},
    {"padding": False, "truncation": None, "max_length": 4, "return_tensors": None},  # alone
    {"padding": "max_length", "truncation": "longest_first", "max_length": 6,
     "return_tensors": None},
    {"padding": True, "return_tensors": "pt"},
    {"padding": True, "truncation": True, "max_length": 5, "return_tensors": "pt"},
    {"padding": True, "return_tensors": "np"},
    {"padding": "max_length", "max_length": 20, "pad_to_multiple_of": 8, "truncation": False,
     "return_tensors": None},
    {"padding": True, "add_special_tokens": False, "return_tensors": None},
]


def _oracle(tok: GLMTokenizer):
    """transformers' fast tokenizer over ``tok``'s vocabulary, command tokens and template."""
    from tokenizers import Tokenizer as RustTokenizer, processors

    backend = RustTokenizer.from_str(tok.backend.to_str())
    base = backend.get_vocab_size(with_added_tokens=True)
    by_id = {c.Id: c.token for c in tok.command_name_map.values()}
    added = [by_id.get(i, f"<glm-free-slot-{i}>") for i in range(base, tok.num_tokens)]
    backend.add_special_tokens(added)
    cls, eos = tok.command_name_map["cls"], tok.command_name_map["eos"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls.token} $A {eos.token}", special_tokens=[(cls.token, cls.Id), (eos.token, eos.Id)])
    ref = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=tok.model_max_length,
        **{k: v for k, v in tok.special_tokens_map.items()})
    for c in tok.command_name_map.values():  # the oracle is GLM's layout, or the test is void
        assert ref.convert_tokens_to_ids(c.token) == c.Id, c
    return ref


@pytest.fixture(scope="module", params=["sentencepiece", "wordpiece"])
def pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    if request.param == "sentencepiece":
        write_sentencepiece(d / "cog-pretrain.model")
        texts = CH_TEXTS
    else:
        write_wordpiece(d)
        texts = EN_TEXTS
    tok = load_tokenizer(d, model_type="glm")
    return tok, _oracle(tok), texts


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def test_glm_tokenizer_is_the_shared_interface(pair):
    tok, _, _ = pair
    assert isinstance(tok, GLMTokenizer) and isinstance(tok, BaseTokenizer)
    assert issubclass(Tokenizer, BaseTokenizer)


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_calls_match_transformers(pair, call):
    tok, ref, texts = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for args in ((texts,), (texts[0],), (texts[3],)):
            ours, theirs = tok(*args, **call), ref(*args, **call)
            assert type(ours["input_ids"]) is type(theirs["input_ids"]), (call, args)
            assert _plain(ours["input_ids"]) == _plain(theirs["input_ids"]), (call, args)
            single = isinstance(args[0], str) and call["return_tensors"] is None  # unbatched
            masks = [_plain(theirs["attention_mask"])] if single else _plain(theirs["attention_mask"])
            seps = [sum(m) for m in masks]
            assert _plain(ours["attention_mask"]) == (seps[0] if single else seps), (call, args)
            rows = [_plain(ours["input_ids"])] if single else _plain(ours["input_ids"])
            positions = [_plain(ours["position_ids"])] if single else _plain(ours["position_ids"])
            assert positions == [[list(range(len(r))), [0] * len(r)] for r in rows], (call, args)


def test_return_tensors_kinds(pair):
    tok, _, texts = pair
    pt = tok(texts, padding=True, return_tensors="pt")
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.long for v in pt.values())
    npy = tok(texts, padding=True, return_tensors="np")
    assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in npy.values())
    with pytest.raises(TokenizerError, match="differ in length"):
        tok(texts, padding=False, return_tensors="pt")
    with pytest.raises(TokenizerError, match="return_tensors"):
        tok(texts, return_tensors="tf")


def test_tokens_ids_and_decoding_match_transformers(pair):
    tok, ref, texts = pair
    ids = ref(texts)["input_ids"]
    for row in ids:
        tokens = ref.convert_ids_to_tokens(row)
        assert tok.convert_ids_to_tokens(row) == tokens
        assert tok.convert_ids_to_tokens(torch.tensor(row)) == tokens
        assert tok.convert_ids_to_tokens(row[0]) == tokens[0]
        assert tok.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
        assert tok.convert_ids_to_tokens(row, skip_special_tokens=True) == \
            ref.convert_ids_to_tokens(row, skip_special_tokens=True)
        assert tok.decode(row, skip_special_tokens=True) == \
            ref.decode(row, skip_special_tokens=True)
    for name in ("[gMASK]", "[sMASK]", "<|startofpiece|>", "no-such-token-xyz"):
        assert tok.convert_tokens_to_ids(name) == ref.convert_tokens_to_ids(name), name
    padded = ref(texts, padding=True, return_tensors="pt")["input_ids"]
    assert tok.batch_decode(padded, skip_special_tokens=True) == \
        ref.batch_decode(padded, skip_special_tokens=True)
    assert tok.batch_decode(padded) == tok.batch_decode(padded, skip_special_tokens=True)
    for name in ("eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
                 "eos_token_id", "unk_token_id", "sep_token_id", "pad_token_id",
                 "cls_token_id", "mask_token_id", "model_max_length"):
        assert getattr(tok, name) == getattr(ref, name), name
    assert len(tok) == len(ref)
    assert set(tok.all_special_ids) <= set(tok.command_id_map)
    for text in texts:
        assert tok.encode(text) == ref.encode(text)
        assert tok.encode(text, add_special_tokens=False) == \
            ref.encode(text, add_special_tokens=False)


def test_special_tokens_are_settable(pair):
    tok, _, _ = pair
    tok = load_glm_tokenizer(tok.vocab_file.parent)
    tok.pad_token = tok.cls_token
    assert tok.pad_token_id == tok.get_command_id("cls")
    texts = ["a", "the quick fox"] if tok.kind == "wordpiece" else ["北", "北京是中国的首都"]
    assert tok(texts)["input_ids"][0][-1] == tok.get_command_id("cls")


def test_save_pretrained_reads_back_the_same(pair, tmp_path):
    tok, _, texts = pair
    tok = load_glm_tokenizer(tok.vocab_file.parent)
    tok.model_max_length = 7
    written = tok.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in written) == sorted([tok.vocab_file.name, "tokenizer_config.json"])
    back = load_tokenizer(tmp_path / "saved", model_type="glm")
    assert isinstance(back, GLMTokenizer) and back.model_max_length == 7
    assert {n: c.Id for n, c in back.command_name_map.items()} == \
        {n: c.Id for n, c in tok.command_name_map.items()}
    assert back(texts)["input_ids"].tolist() == tok(texts)["input_ids"].tolist()
    assert not [p for p in (tmp_path / "saved").iterdir() if p not in written]


def test_unsupported_arguments_are_typed_errors(pair):
    tok, _, texts = pair
    with pytest.raises(TokenizerError, match="right"):
        tok(texts, padding_side="left")
    with pytest.raises(TokenizerError, match="template"):
        tok(texts[0], texts[1])
    with pytest.raises(TokenizerError, match="padding"):
        tok(texts, padding="sideways")
    with pytest.raises(TokenizerError, match="max_length"):
        tok(texts, max_length=0)
    with pytest.raises(TokenizerError, match="no room"):
        tok(texts, truncation=True, max_length=1)
    with pytest.raises(TokenizerError, match="string"):
        tok([texts[0], 3])  # type: ignore[list-item]
