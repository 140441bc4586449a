"""GLM's tokenizers against FlagAI's (GLMLargeChTokenizer, GLMLargeEnWordPieceTokenizer and the
unified Tokenizer) on the same tiny vocabulary files: command-token ids, text ids, decoding,
FlagAI's seq2seq sample; and bad input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from _flagai import EN_VOCAB, write_sentencepiece, write_wordpiece
from hubloader.errors import TokenizerError
from hubloader.text.glm import GLMTokenizer, load_glm_tokenizer
from hubloader.text.tokenizer import load_tokenizer

import flagai.data.tokenizer as ftok  # test-only oracle (see pyproject's test extra)

TEXTS = ["[CLS]北京是[MASK]的首都 [gMASK]", "今天 天气  很好[sMASK] 散步<|startofpiece|>我们<|endofpiece|>"
         "<|endoftext|>", "Hello  world [MASK]", "上海 [SEP] 经济发达 [UNK]", "   "]
EN_TEXTS = ["[CLS] The quick brown fox [MASK] jumps over the lazy dogs [gMASK]",
            "Hello, World! <|startofpiece|> 北京 Zebra [sMASK]", "jumping  foxes<|endofpiece|>"]


@pytest.fixture(scope="module")
def ch_dir(tmp_path_factory):
    return write_sentencepiece(tmp_path_factory.mktemp("GLM-large-ch") / "cog-pretrain.model").parent


@pytest.fixture(scope="module")
def en_dir(tmp_path_factory):
    return write_wordpiece(tmp_path_factory.mktemp("GLM-large-en"))


@pytest.mark.parametrize("fix", [True, False])
def test_chinese_sentencepiece_ids_equal_flagai(ch_dir, fix):
    ref = ftok.GLMLargeChTokenizer(vocab_path=str(ch_dir / "cog-pretrain.model"),
                                   fix_command_token=fix)
    ours = load_glm_tokenizer(ch_dir, fix_command_token=fix)
    assert {n: c.Id for n, c in ref.command_name_map.items()} == \
        {n: c.Id for n, c in ours.command_name_map.items()}
    for text in TEXTS:
        ids = ours.EncodeAsIds(text)
        assert ids == ref.EncodeAsIds(text), text
        if "[UNK]" not in text and ids:
            assert ours.DecodeIds(ids) == ref.DecodeIds(ids)
    n = ours.num_text_tokens
    assert ours.get_command_id("gMASK") == (n + 9 if fix else n + 7)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["北京", "城市", "[MASK]", "[gMASK]", " ", "  ", "Hello", "的",
                                 "<|endofpiece|>", "天气很好", "x", "。"]), max_size=8).map("".join))
def test_any_mix_of_text_and_command_tokens_matches_flagai(ch_dir, text):
    ref = ftok.GLMLargeChTokenizer(vocab_path=str(ch_dir / "cog-pretrain.model"))
    assert load_glm_tokenizer(ch_dir).EncodeAsIds(text) == ref.EncodeAsIds(text)


def test_english_wordpiece_ids_equal_flagai(en_dir, monkeypatch):
    import flagai.data.tokenizer.glm_large_en.wordpiece as wordpiece

    monkeypatch.setattr(wordpiece, "_get_model_id", lambda name: None)  # FlagAI asks its hub
    ref = ftok.GLMLargeEnWordPieceTokenizer(cache_dir=str(en_dir))
    ours = load_glm_tokenizer(en_dir)
    assert {n: c.Id for n, c in ref.command_name_map.items()} == \
        {n: c.Id for n, c in ours.command_name_map.items()}
    assert ours.get_command_id("sop") == len(EN_VOCAB)
    for text in EN_TEXTS:
        ids = ours.EncodeAsIds(text)
        assert ids == ref.EncodeAsIds(text), text
        assert ours.DecodeIds(ids) == ref.DecodeIds(ids)


def test_seq2seq_sample_equals_flagai_unified_tokenizer(ch_dir, tmp_path):
    """FlagAI's AutoLoader builds the unified Tokenizer; on spiece.model it has the unfixed
    command layout."""
    (tmp_path / "spiece.model").write_bytes((ch_dir / "cog-pretrain.model").read_bytes())
    ref = ftok.Tokenizer(sp_model_file=str(tmp_path / "spiece.model"), tokenizer_class="sp",
                         tokenizer_model_name="GLM-large-ch",
                         special_tokens_map=str(tmp_path / "special_tokens_map.json"))
    ours = load_glm_tokenizer(tmp_path)  # spiece.model: the unified Tokenizer's layout
    assert ours.get_command_id("gMASK") == ours.get_command_id("eop")
    for src, tgt, limit in (("北京是中国的首都", "城市", None), ("今天天气很好", "散步", 16),
                            ("上海", None, None)):
        assert ours.encode_plus(src, target_text=tgt, max_length=limit) == \
            ref.encode_plus(src, target_text=tgt, max_length=limit)
    assert ours.CommandTokenIds(exception=["eop", "gMASK"]) == \
        ref.CommandTokenIds(exception=["eop", "gMASK"])


def test_load_tokenizer_serves_glm_and_the_call_shape_fits_glm(ch_dir):
    tok = load_tokenizer(ch_dir, model_type="glm")
    assert isinstance(tok, GLMTokenizer)
    batch = tok(["北京是中国的首都", "上海"])
    cls, eos = tok.get_command_id("cls"), tok.get_command_id("eos")
    first = batch["input_ids"][0].tolist()
    assert first[0] == cls and first[-1] == eos
    assert batch["position_ids"].shape == (2, 2, len(first))
    assert batch["attention_mask"].tolist() == [len(first), len(tok.encode("上海"))]
    assert tok.decode(batch["input_ids"][0]) == "北京是中国的首都"
    assert tok("北京是中国的首都", max_length=4)["input_ids"].shape == (1, 4)
    with pytest.raises(TokenizerError, match="template"):
        tok("北京", "上海")


def test_glm_large_en_layout_through_load_tokenizer(en_dir):
    tok = load_tokenizer(en_dir, model_type="glm")
    assert isinstance(tok, GLMTokenizer) and tok.kind == "wordpiece"
    assert tok.get_command_id("gMASK") == len(EN_VOCAB) + 2


def test_bad_files_and_input_raise_typed_errors(tmp_path, ch_dir):
    with pytest.raises(TokenizerError, match="cog-pretrain.model"):
        load_glm_tokenizer(tmp_path)
    (tmp_path / "cog-pretrain.model").write_bytes(b"\x00not a model")
    with pytest.raises(TokenizerError):
        load_glm_tokenizer(tmp_path)
    (tmp_path / "cog-pretrain.model").unlink()
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(TokenizerError):
        load_glm_tokenizer(tmp_path)
    tok = load_glm_tokenizer(ch_dir)
    with pytest.raises(TokenizerError, match="no command token"):
        tok.get_command_id("nope")
    with pytest.raises(TokenizerError, match="string"):
        tok.EncodeAsIds(b"bytes")  # type: ignore[arg-type]
