"""A family declares its tokenizer's defaults with its ``register_model``; ``load_tokenizer``
reads them from the registry, so adding a family edits one file."""

from __future__ import annotations

import json

import pytest

import hubloader.load.registry as registry
from hubloader.load.modeling import BaseModel
from hubloader.load.registry import TokenizerDefaults, register_model, tokenizer_defaults
from hubloader.text.tokenizer import load_tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<toy>", "hello", "world"]


@pytest.fixture
def toy_family(monkeypatch, tmp_path):
    registry.import_families()
    monkeypatch.setattr(registry, "_REGISTRY", {k: dict(v) for k, v in registry._REGISTRY.items()})
    monkeypatch.setattr(registry, "_TOKENIZERS", dict(registry._TOKENIZERS))

    @register_model("toyfam", "base", tokenizer=TokenizerDefaults(
        "ToyTokenizer", {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                         "unk_token": "[UNK]", "bos_token": "<toy>", "eos_token": "<absent>"},
        token_type_ids=False, padding_side="left", kinds=("toyish",)))
    class ToyModel(BaseModel):
        pass

    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toyfam"}))
    return tmp_path


def test_family_declares_its_tokenizer_defaults(toy_family):
    tok = load_tokenizer(toy_family)
    assert tok.tokenizer_class == "ToyTokenizer" and tok.padding_side == "left"
    assert tok.model_input_names == ["input_ids", "attention_mask"]
    assert tok.bos_token == "<toy>" and tok.pad_token == "[PAD]"
    assert tok.eos_token is None  # a default the vocabulary lacks is not used
    batch = tok(["hello", "hello world"], padding=True)
    assert batch["input_ids"][0][0] == VOCAB.index("[PAD]")  # padded on the left
    assert "token_type_ids" not in batch
    # a tokenizer_class naming another kind the family declared reaches the same defaults
    (toy_family / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ToyishTokenizer"}))
    assert load_tokenizer(toy_family).padding_side == "left"
    assert tokenizer_defaults("toyish") is tokenizer_defaults("toyfam")


def test_builtin_families_declare_theirs():
    assert tokenizer_defaults("bert").tokenizer_class == "BertTokenizer"
    assert tokenizer_defaults("llama").padding_side == "left"
    assert not tokenizer_defaults("gpt2").token_type_ids
    assert tokenizer_defaults("xlmroberta").tokenizer_class == "XLMRobertaTokenizer"
    assert tokenizer_defaults("no-such-family") is None
