"""A model is never silently left with random weights."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from hubloader import WeightsMismatchError
from hubloader.models import BertForSequenceClassification, BertForTokenClassification, BertModel


def _drop_key(path, needle):
    f = path / "model.safetensors"
    state = load_file(f)
    dropped = sorted(k for k in state if needle in k)
    save_file({k: v for k, v in state.items() if needle not in k}, str(f), metadata={"format": "pt"})
    return dropped


def test_missing_key_raises_with_sorted_list(hf_bert):
    _, path = hf_bert("BertModel")
    _drop_key(path, "encoder.layer.1.attention.self.query")
    with pytest.raises(WeightsMismatchError) as info:
        BertModel.from_pretrain(str(path))
    assert info.value.missing == ["blocks.1.attention.query.bias", "blocks.1.attention.query.weight"]
    assert "blocks.1.attention.query.weight" in str(info.value)
    assert "strict=False" in str(info.value)


def test_unexpected_key_raises(hf_bert):
    _, path = hf_bert("BertModel")
    f = path / "model.safetensors"
    state = load_file(f)
    state["encoder.layer.9.extra.weight"] = torch.zeros(3)
    save_file(state, str(f), metadata={"format": "pt"})
    with pytest.raises(WeightsMismatchError) as info:
        BertModel.from_pretrain(str(path))
    assert info.value.unexpected == ["encoder.layer.9.extra.weight"]


def test_strict_false_logs_and_initializes(hf_bert, caplog):
    hf, path = hf_bert("BertModel")
    _drop_key(path, "encoder.layer.0.output.dense")
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        model = BertModel.from_pretrain(str(path), strict=False)
    assert model.load_report.missing == ["blocks.0.mlp.fc_out.bias", "blocks.0.mlp.fc_out.weight"]
    assert "blocks.0.mlp.fc_out.weight" in caplog.text and "randomly initialized" in caplog.text
    w = model.blocks[0].mlp.fc_out.weight
    assert not w.is_meta and torch.isfinite(w).all() and w.std() > 0
    # the rest of the module and model keeps the checkpoint's values
    ref = hf.encoder.layer[0].intermediate.dense.weight
    assert torch.equal(model.blocks[0].mlp.fc_in.weight, ref)


def test_partly_missing_tensor_in_module_keeps_loaded_sibling(hf_bert):
    hf, path = hf_bert("BertModel")
    f = path / "model.safetensors"
    state = load_file(f)
    del state["encoder.layer.0.output.dense.bias"]
    save_file(state, str(f), metadata={"format": "pt"})
    model = BertModel.from_pretrain(str(path), strict=False)
    assert torch.equal(model.blocks[0].mlp.fc_out.weight, hf.encoder.layer[0].output.dense.weight)
    assert model.load_report.missing == ["blocks.0.mlp.fc_out.bias"]


def test_fresh_head_on_base_checkpoint_is_reported(hf_bert, caplog):
    _, path = hf_bert("BertModel")
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        model = BertForTokenClassification.from_pretrain(str(path), num_labels=5)
    assert model.load_report.newly_initialized == ["classifier.bias", "classifier.weight"]
    assert "newly initialized head" in caplog.text
    assert model.classifier.weight.shape == (5, 32)


def test_head_checkpoint_with_other_num_labels_fails(hf_bert):
    _, path = hf_bert("BertForSequenceClassification", num_labels=3)
    with pytest.raises(WeightsMismatchError) as info:
        BertForSequenceClassification.from_pretrain(str(path), num_labels=4)
    assert info.value.mismatched[0][0] == "classifier.bias"
    assert "num_labels" in str(info.value)


def test_base_model_from_head_checkpoint_discards_head(hf_bert):
    hf, path = hf_bert("BertForSequenceClassification")
    model = BertModel.from_pretrain(str(path))
    assert model.load_report.discarded == ["classifier.bias", "classifier.weight"]
    assert torch.equal(model.pooler["dense"].weight, hf.bert.pooler.dense.weight)


def test_parameters_view_the_mapped_file(hf_bert):
    """safetensors tensors are views of one copy-on-write mapping of the file, not copies:
    two tensors lie exactly as far apart in memory as in the file."""
    import json
    import struct

    _, path = hf_bert("BertModel")
    f = path / "model.safetensors"
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    model = BertModel.from_pretrain(str(path))
    a = model.embeddings.word_embeddings.weight
    b = model.blocks[1].mlp.fc_in.weight
    off_a = header["embeddings.word_embeddings.weight"]["data_offsets"][0]
    off_b = header["encoder.layer.1.intermediate.dense.weight"]["data_offsets"][0]
    assert b.data_ptr() - a.data_ptr() == off_b - off_a
    a.data.add_(1.0)  # writes are private: the file on disk is unchanged
    assert f.read_bytes() == raw
    fresh = BertModel.from_pretrain(str(path))
    assert torch.equal(fresh.embeddings.word_embeddings.weight + 1.0, a)
