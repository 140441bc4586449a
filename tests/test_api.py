"""The public API of the core: from_pretrain layouts, init_from_json, save_pretrained,
forward outputs, AutoLoader, cards."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

import hubloader
from hubloader import AutoLoader, BaseModel, list_models, model_info
from hubloader.models import (BertConfig, BertForMaskedLM, BertForSequenceClassification,
                              BertForTokenClassification, BertModel)


def test_flagai_download_path_layout(hf_bert, tmp_path, batch):
    hf, path = hf_bert("BertModel")
    state = tmp_path / "state_dict"
    shutil.copytree(path, state / "BERT-base-en")
    model = BertModel.from_pretrain(model_name="BERT-base-en", download_path=str(state))
    assert model.model_dir == state / "BERT-base-en"
    ids, mask = batch
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids)["logits"], hf(input_ids=ids).last_hidden_state,
                              atol=1e-5)


def test_card_name_matches_folder_case_insensitively(hf_bert, tmp_path):
    _, path = hf_bert("BertModel")
    shutil.copytree(path, tmp_path / "state" / "BERT-base-en")  # the card's own spelling
    model = BaseModel.from_pretrain(model_name="bert-BASE-en", download_path=tmp_path / "state")
    assert isinstance(model, BertModel)


def test_a_card_names_the_model_and_a_directory_reads_no_cards(hf_bert, tmp_path):
    from hubloader.catalogue import cards

    _, path = hf_bert("BertModel")
    shutil.copytree(path, tmp_path / "state" / "BERT-base-en")
    by_card = BertModel.from_pretrain("bert-base-en", download_path=tmp_path / "state")
    assert by_card.card_name == "BERT-base-en"
    cards._INDEX.clear()
    by_dir = BertModel.from_pretrain(str(tmp_path / "state" / "BERT-base-en"))
    assert by_dir.card_name is None
    assert not cards._INDEX, "a load from a directory parsed every model card"


def test_init_from_json_with_overrides(hf_bert):
    _, path = hf_bert("BertModel")
    model = BertModel.init_from_json(path / "config.json", num_hidden_layers=1, hidden_dropout_prob=0.0)
    assert len(model.blocks) == 1 and model.config.hidden_dropout_prob == 0.0
    w = model.embeddings.word_embeddings.weight
    std = model.config.initializer_range  # BERT's init, not torch's default N(0, 1)
    assert 0.8 * std < w.std().item() < 1.2 * std
    assert torch.all(w[0] == 0)  # padding row
    auto = BaseModel.init_from_json(path / "config.json", num_hidden_layers=3)
    assert type(auto) is BertModel and len(auto.blocks) == 3


def test_save_and_reload_round_trip(tmp_path, batch):
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, num_labels=3)
    model = BertForSequenceClassification.from_config(cfg).eval()
    out = model.save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    from hubloader.catalogue.cards import load_card

    card = load_card(out)
    assert {f.path for f in card.files} == {"config.json", "model.safetensors"}
    again = BaseModel.from_pretrain(str(out))
    assert type(again) is BertForSequenceClassification and again.config.num_labels == 3
    ids, mask = batch
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, attention_mask=mask)["logits"],
                           again(input_ids=ids, attention_mask=mask)["logits"])


@pytest.mark.parametrize("cls,labels", [
    (BertForSequenceClassification, lambda ids: torch.tensor([0, 2])),
    (BertForTokenClassification, lambda ids: torch.randint(0, 3, ids.shape)),
    (BertForMaskedLM, lambda ids: ids.clone()),
])
def test_forward_returns_loss_with_labels(cls, labels, batch):
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                     intermediate_size=64, num_labels=3)
    model = cls.from_config(cfg)
    ids, mask = batch
    out = model(input_ids=ids, attention_mask=mask, labels=labels(ids))
    assert {"logits", "hidden_states", "loss"} <= set(out)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.backbone.embeddings.word_embeddings.weight.grad is not None
    assert "loss" not in model(input_ids=ids)


def test_all_hidden_states(hf_bert, batch):
    hf, path = hf_bert("BertModel")
    model = BertModel.from_pretrain(str(path))
    ids, mask = batch
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)["all_hidden_states"]
        ref = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert len(ours) == len(ref) == 3
    assert max((a - b).abs().max().item() for a, b in zip(ours, ref)) < 1e-5


def test_autoloader_new_head_from_flagai_layout(hf_bert, tmp_path, minilm_dir):
    _, path = hf_bert("BertModel", vocab_size=30522)
    shutil.copytree(path, tmp_path / "state_dict" / "BERT-base-en")
    shutil.copy(minilm_dir / "vocab.txt", tmp_path / "state_dict" / "BERT-base-en")
    loader = AutoLoader("text-classification", model_name="BERT-base-en",
                        model_dir=str(tmp_path / "state_dict"), num_labels=3)
    model, tok, cfg = loader.get_model(), loader.get_tokenizer(), loader.get_config()
    assert type(model) is BertForSequenceClassification and cfg.num_labels == 3
    assert model.load_report.newly_initialized == ["classifier.bias", "classifier.weight"]
    out = model(**tok(["hello world", "a longer second sentence"], padding=True,
                    return_tensors="pt"))
    assert out["logits"].shape == (2, 3)


@pytest.mark.parametrize("task,cls", [("ner", BertForTokenClassification),
                                      ("sequence-labeling", BertForTokenClassification),
                                      ("semantic-matching", BertForSequenceClassification),
                                      ("masklm", BertForMaskedLM), ("fill-mask", BertForMaskedLM)])
def test_autoloader_task_aliases(hf_bert, task, cls):
    _, path = hf_bert("BertForMaskedLM")
    loader = AutoLoader(task, model_name=str(path))
    assert type(loader.get_model()) is cls


def test_autoloader_task_family_cannot_serve(hf_bert):
    _, path = hf_bert("BertModel")
    with pytest.raises(hubloader.UnknownTaskError, match="cannot serve"):
        AutoLoader("text-generation", model_name=str(path))  # BERT serves seq2seq (UniLM), not causal LM


def test_list_models_and_model_info():
    names = list_models()
    assert {"all-MiniLM-L6-v2", "bert-base-uncased", "BERT-base-en", "RoBERTa-base-ch"} <= set(names)
    assert "all-MiniLM-L6-v2" in list_models(task="embedding")
    assert "all-MiniLM-L6-v2" not in list_models(task="fill-mask")
    assert list_models(pattern="BERT*") == [n for n in names if n.lower().startswith("bert")]
    card = model_info("ALL-minilm-l6-V2")
    assert card.architecture == "bert" and card.source.startswith("hf://")


def test_extra_card_dirs_take_precedence(tmp_path, monkeypatch):
    (tmp_path / "mine.md").write_text("---\nname: bert-base-uncased\ntasks: [ner]\nlicense: MIT\n"
                                      "author: me\narchitecture: bert\nsource: s3://b/p/\n---\n")
    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(tmp_path))
    assert model_info("bert-base-uncased").source == "s3://b/p/"


def test_builtin_minilm_card_digests_match_the_real_files(minilm_dir):
    import hashlib

    card = model_info("all-MiniLM-L6-v2")
    assert len(card.files) >= 5
    for f in card.files:
        data = (minilm_dir / f.path).read_bytes()
        assert len(data) == f.size, f.path
        assert hashlib.sha256(data).hexdigest() == f.sha256, f.path


def test_import_is_cheap():
    code = ("import sys, hubloader; heavy = [m for m in ('torch', 'boto3', 'botocore', "
            "'huggingface_hub', 'tokenizers', 'safetensors', 'yaml') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
