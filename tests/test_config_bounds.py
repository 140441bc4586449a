"""Sizes in ``config.json`` are bounded before anything is allocated: the parameter bytes of
a meta-device build are checked against ``HUBLOADER_MAX_PARAM_BYTES`` or the memory available,
and values no model can be built from (NaN, a dropout outside [0, 1), integers of thousands
of digits, deep nesting, integer weights where floats belong) are typed errors."""

from __future__ import annotations

import json
import resource
import struct

import pytest
import torch

from hubloader import AutoLoader, ConfigError, HubLoaderError, WeightsError
from hubloader.models import BertConfig, BertModel
from hubloader.load.sizing import available_memory, parameter_bytes

from conftest import write_json


@pytest.fixture(scope="module")
def wide_bert(tmp_path_factory):
    """A one-layer BERT with bert-base's hidden size, saved small (a tiny vocabulary)."""
    cfg = BertConfig(vocab_size=64, hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                     intermediate_size=32, max_position_embeddings=16)
    return BertModel.from_config(cfg).save_pretrained(tmp_path_factory.mktemp("wide") / "wide")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_hidden_size_40000_with_strict_false_is_refused_before_allocating(wide_bert, tmp_path):
    """bert-base's depth and vocabulary at hidden_size=40000: ~300 GB of float32."""
    folder = tmp_path / "huge"
    folder.mkdir()
    for f in wide_bert.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((wide_bert / "config.json").read_text())
    config.update(hidden_size=40000, num_hidden_layers=12, vocab_size=30522,
                  intermediate_size=3072, num_attention_heads=16)
    write_json(folder / "config.json", config)
    before = _peak_rss_bytes()
    with pytest.raises(ConfigError, match="would need .* GiB.*memory is available") as info:
        BertModel.from_pretrain(str(folder), strict=False)
    assert isinstance(info.value, ValueError) and "hidden_size" in str(info.value)
    assert _peak_rss_bytes() - before < 1 << 30  # nothing near the estimate was allocated


def test_num_labels_1e8_through_autoloader_is_refused(wide_bert):
    with pytest.raises(ConfigError, match="would need") as info:
        AutoLoader("text-classification", model_name=str(wide_bert), num_labels=10**8)
    assert "num_labels" in str(info.value)


def test_the_cap_variable(wide_bert, monkeypatch):
    model = BertModel.from_pretrain(str(wide_bert))
    need = parameter_bytes(model)
    assert need == sum(p.numel() * 4 for p in model.parameters()) + \
        sum(b.numel() * b.element_size() for b in model.buffers())
    monkeypatch.setenv("HUBLOADER_MAX_PARAM_BYTES", str(need - 1))
    with pytest.raises(ConfigError, match="HUBLOADER_MAX_PARAM_BYTES"):
        BertModel.from_pretrain(str(wide_bert))
    with pytest.raises(ConfigError, match="HUBLOADER_MAX_PARAM_BYTES"):
        BertModel.from_config(model.config)
    monkeypatch.setenv("HUBLOADER_MAX_PARAM_BYTES", str(need))
    assert BertModel.from_pretrain(str(wide_bert)).num_parameters() == model.num_parameters()
    monkeypatch.setenv("HUBLOADER_MAX_PARAM_BYTES", "lots")
    with pytest.raises(ConfigError, match="not an integer"):
        BertModel.from_pretrain(str(wide_bert))


def test_available_memory_is_known_here():
    free = available_memory()
    assert free is not None and free > 0


@pytest.mark.parametrize("key,value,needle", [
    ("layer_norm_eps", float("nan"), "finite"),
    ("layer_norm_eps", float("inf"), "finite"),
    ("layer_norm_eps", 0.0, "epsilon must be positive"),
    ("hidden_dropout_prob", 1.0, r"\[0, 1\)"),
    ("attention_probs_dropout_prob", -0.1, r"\[0, 1\)"),
    ("classifier_dropout", 7, r"\[0, 1\)"),
    ("initializer_range", float("nan"), "finite"),
    ("vocab_size", 10**1000, "1001 digits"),
    ("hidden_size", 2**62, "no model has sizes like that"),
])
def test_values_no_model_can_use(wide_bert, tmp_path, key, value, needle):
    config = json.loads((wide_bert / "config.json").read_text())
    config[key] = value
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))  # NaN and Infinity are what Python's json writes
    with pytest.raises(ConfigError, match=needle) as info:
        BertModel.init_from_json(path)
    assert str(path) in str(info.value)


def test_integer_of_thousands_of_digits_and_deep_nesting(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "bert", "hidden_size": ' + "9" * 5000 + "}")
    with pytest.raises(ConfigError, match="number no config needs"):
        BertModel.init_from_json(path)
    path.write_text('{"model_type": "bert", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match="nests JSON too deeply"):
        BertModel.init_from_json(path)


@pytest.mark.parametrize("dtype", ["I64", "I32", "BOOL", "U8"])
def test_integer_or_bool_weights_where_floats_belong(wide_bert, tmp_path, dtype):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_bytes((wide_bert / "config.json").read_bytes())
    state = load_file(wide_bert / "model.safetensors")
    key = next(k for k in sorted(state) if k.endswith("query.weight"))
    want = {"I64": torch.int64, "I32": torch.int32, "BOOL": torch.bool, "U8": torch.uint8}[dtype]
    state[key] = state[key].to(want)
    save_file(state, folder / "model.safetensors")
    for strict in (True, False):
        with pytest.raises(WeightsError, match="expects floating-point weights") as info:
            BertModel.from_pretrain(str(folder), strict=strict)
        assert "query.weight" in str(info.value) and isinstance(info.value, HubLoaderError)
