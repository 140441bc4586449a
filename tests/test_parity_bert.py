"""Numerical parity with transformers (the oracle) on Hugging Face-format checkpoints."""

from __future__ import annotations

import pytest
import torch

from hubloader import BaseModel
from hubloader.models import (BertForMaskedLM, BertForSequenceClassification,
                              BertForTokenClassification, BertModel, RobertaForMaskedLM,
                              RobertaForSequenceClassification, RobertaForTokenClassification,
                              RobertaModel)

CASES = [
    ("BertModel", BertModel, "bert", "last_hidden_state"),
    ("BertForSequenceClassification", BertForSequenceClassification, "bert", "logits"),
    ("BertForTokenClassification", BertForTokenClassification, "bert", "logits"),
    ("BertForMaskedLM", BertForMaskedLM, "bert", "logits"),
    ("RobertaModel", RobertaModel, "roberta", "last_hidden_state"),
    ("RobertaForSequenceClassification", RobertaForSequenceClassification, "roberta", "logits"),
    ("RobertaForTokenClassification", RobertaForTokenClassification, "roberta", "logits"),
    ("RobertaForMaskedLM", RobertaForMaskedLM, "roberta", "logits"),
]


def _max_diff(hf, model, ids, mask, hf_key: str) -> float:
    """Max abs difference of our ``logits`` against the oracle's ``hf_key`` output."""
    with torch.no_grad():
        expected = getattr(hf(input_ids=ids, attention_mask=mask), hf_key)
        return (expected - model(input_ids=ids, attention_mask=mask)["logits"]).abs().max().item()


def _ids_for(family, ids, mask):
    if family == "roberta":  # RoBERTa pads with id 1; positions must skip padding
        ids = ids.clone()
        ids[mask == 0] = 1
    return ids


@pytest.mark.parametrize("hf_name,ours,family,key", CASES, ids=[c[0] for c in CASES])
def test_outputs_match_transformers(hf_bert, batch, hf_name, ours, family, key):
    hf, path = hf_bert(hf_name, family=family, num_labels=3)
    ids, mask = batch
    ids = _ids_for(family, ids, mask)
    types = torch.zeros_like(ids)
    if family == "bert":
        types[:, 6:] = 1
    model = ours.from_pretrain(str(path))
    with torch.no_grad():
        expected = getattr(hf(input_ids=ids, attention_mask=mask, token_type_ids=types), key)
        got = model(input_ids=ids, attention_mask=mask, token_type_ids=types)["logits"]
    diff = (expected - got).abs().max().item()
    assert diff < 1e-5, f"{hf_name}: max abs diff {diff}"
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert not model.training


@pytest.mark.parametrize("hf_name,expected_cls", [
    ("BertModel", BertModel), ("BertForSequenceClassification", BertForSequenceClassification),
    ("BertForTokenClassification", BertForTokenClassification), ("BertForMaskedLM", BertForMaskedLM)])
def test_basemodel_picks_class_from_config(hf_bert, hf_name, expected_cls):
    _, path = hf_bert(hf_name)
    assert type(BaseModel.from_pretrain(str(path))) is expected_cls


def test_bertmodel_on_roberta_checkpoint_becomes_roberta(hf_bert, batch):
    hf, path = hf_bert("RobertaModel", family="roberta")
    model = BertModel.from_pretrain(str(path))
    assert type(model) is RobertaModel
    ids, mask = batch
    ids = _ids_for("roberta", ids, mask)
    diff = _max_diff(hf, model, ids, mask, "last_hidden_state")
    assert diff < 1e-5


def test_pytorch_bin_checkpoint(hf_bert, batch):
    hf, path = hf_bert("BertForMaskedLM", bin_format=True)
    assert (path / "pytorch_model.bin").is_file() and not (path / "model.safetensors").exists()
    model = BertForMaskedLM.from_pretrain(str(path))
    ids, mask = batch
    diff = _max_diff(hf, model, ids, mask, "logits")
    assert diff < 1e-5


def test_sharded_safetensors_checkpoint(hf_bert, batch):
    hf, path = hf_bert("BertModel", shard="40KB")
    assert (path / "model.safetensors.index.json").is_file()
    assert len(list(path.glob("model-*.safetensors"))) >= 2
    model = BertModel.from_pretrain(str(path))
    ids, mask = batch
    diff = _max_diff(hf, model, ids, mask, "last_hidden_state")
    assert diff < 1e-5
    assert model.load_report.files == sorted(p.name for p in path.glob("model-*.safetensors"))


def test_sharded_bin_checkpoint(hf_bert, batch):
    import json

    hf, path = hf_bert("BertModel", bin_format=True)
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    (path / "pytorch_model.bin").unlink()
    keys = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for fname, ks in halves.items():
        torch.save({k: state[k] for k in ks}, path / fname)
        weight_map.update({k: fname for k in ks})
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = BertModel.from_pretrain(str(path))
    ids, mask = batch
    diff = _max_diff(hf, model, ids, mask, "last_hidden_state")
    assert diff < 1e-5


def test_tied_decoder_shares_embedding_storage(hf_bert):
    _, path = hf_bert("BertForMaskedLM")
    model = BertForMaskedLM.from_pretrain(str(path))
    assert model.mlm_head.decoder.weight is model.backbone.embeddings.word_embeddings.weight
    saved = model.save_pretrained(path.parent / "resaved")
    again = BertForMaskedLM.from_pretrain(str(saved))
    assert again.mlm_head.decoder.weight is again.backbone.embeddings.word_embeddings.weight
    assert torch.equal(again.mlm_head.decoder.weight, model.mlm_head.decoder.weight)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_dtype_argument(hf_bert, batch, dtype):
    hf, path = hf_bert("BertModel")
    model = BertModel.from_pretrain(str(path), torch_dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    ids, mask = batch
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(input_ids=ids, attention_mask=mask)["logits"].float()
    assert (ref - got).abs().max().item() < 0.1  # half precision, same weights


def test_torch_dtype_from_config(hf_bert):
    _, path = hf_bert("BertModel")
    half = BertModel.from_pretrain(str(path), torch_dtype="bfloat16")
    saved = half.save_pretrained(path.parent / "bf16")
    assert BertModel.from_pretrain(str(saved)).dtype == torch.bfloat16
    assert BertModel.from_pretrain(str(saved), torch_dtype="float32").dtype == torch.float32


@pytest.mark.parametrize("param", ["blocks.0.attention.key.weight", "blocks.1.mlp.fc_out.weight",
                                   "embeddings.position_embeddings.weight"])
def test_parity_check_detects_a_one_percent_error(hf_bert, batch, param):
    """The 1e-5 parity check above can fail: a 1% error in one tensor breaks it."""
    hf, path = hf_bert("BertModel")
    model = BertModel.from_pretrain(str(path))
    ids, mask = batch
    with torch.no_grad():
        model.get_parameter(param).mul_(1.01)
    diff = _max_diff(hf, model, ids, mask, "last_hidden_state")
    assert diff > 1e-4
