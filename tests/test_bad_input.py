"""Bad input: each case gives a typed HubLoaderError that also inherits the natural builtin,
with a message that says what to do — and never runs code it was not told to trust."""

from __future__ import annotations

import json
import os
import pickle
import struct

import pytest
import torch

from hubloader import (AutoLoader, BaseModel, CardError, ConfigError, HubLoaderError, InputError,
                       InvalidModelNameError, ModelNotFoundError, TokenizerError, UnknownTaskError,
                       UnsafeWeightsError, UnsupportedSourceError, WeightsError,
                       WeightsNotFoundError)
from hubloader.models import BertModel

from conftest import write_json


def _tiny(hf_bert):
    _, path = hf_bert("BertModel")
    return path


def test_config_not_json(hf_bert):
    path = _tiny(hf_bert)
    (path / "config.json").write_text("{'model_type': 'bert',")
    with pytest.raises(ConfigError) as info:
        BertModel.from_pretrain(str(path))
    assert isinstance(info.value, ValueError) and isinstance(info.value, HubLoaderError)
    assert "not valid JSON" in str(info.value) and "line 1" in str(info.value)


def test_config_not_an_object(hf_bert):
    path = _tiny(hf_bert)
    write_json(path / "config.json", [1, 2])
    with pytest.raises(ConfigError, match="JSON object"):
        BertModel.from_pretrain(str(path))


@pytest.mark.parametrize("key,value", [("hidden_size", "768"), ("num_hidden_layers", 2.5),
                                       ("hidden_act", 3), ("num_attention_heads", True)])
def test_config_wrong_types(hf_bert, key, value):
    path = _tiny(hf_bert)
    cfg = json.loads((path / "config.json").read_text())
    cfg[key] = value
    write_json(path / "config.json", cfg)
    with pytest.raises(ConfigError) as info:
        BertModel.from_pretrain(str(path))
    assert repr(key) in str(info.value) and "must be" in str(info.value)


def test_config_inconsistent_values(hf_bert):
    with pytest.raises(ConfigError, match="multiple of"):
        BertModel.from_pretrain(str(_tiny(hf_bert)), num_attention_heads=5)


def test_missing_model_type_for_basemodel(hf_bert):
    path = _tiny(hf_bert)
    cfg = json.loads((path / "config.json").read_text())
    del cfg["model_type"]
    write_json(path / "config.json", cfg)
    with pytest.raises(ConfigError, match="model_type"):
        BaseModel.from_pretrain(str(path))
    # a family class knows its own type: FlagAI-style configs without model_type still load
    assert isinstance(BertModel.from_pretrain(str(path)), BertModel)


def test_unknown_model_type(hf_bert):
    path = _tiny(hf_bert)
    cfg = json.loads((path / "config.json").read_text())
    cfg["model_type"] = "bret"
    write_json(path / "config.json", cfg)
    with pytest.raises(ModelNotFoundError, match="Did you mean: bert"):
        BaseModel.from_pretrain(str(path))


def test_unknown_override_keys(hf_bert):
    path = _tiny(hf_bert)
    with pytest.raises(ConfigError) as info:
        BertModel.from_pretrain(str(path), num_layers=2)
    assert "num_layers" in str(info.value) and "num_hidden_layers" in str(info.value)
    with pytest.raises(ConfigError, match="valid keys: .*hidden_size"):
        BertModel.init_from_json(path / "config.json", hiden_size=8)


def test_missing_weight_file(hf_bert):
    path = _tiny(hf_bert)
    (path / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError) as info:
        BertModel.from_pretrain(str(path))
    assert isinstance(info.value, FileNotFoundError)
    assert "model.safetensors" in str(info.value)


def test_missing_shard(hf_bert):
    _, path = hf_bert("BertModel", shard="40KB")
    next(path.glob("model-*.safetensors")).unlink()
    with pytest.raises(WeightsNotFoundError, match="shard"):
        BertModel.from_pretrain(str(path))


def test_shard_index_escaping_directory(hf_bert, tmp_path):
    _, path = hf_bert("BertModel", shard="40KB")
    write_json(path / "model.safetensors.index.json", {"weight_map": {"a": "../../etc/passwd"}})
    with pytest.raises(InvalidModelNameError):
        BertModel.from_pretrain(str(path))


@pytest.mark.parametrize("keep", [0, 5, 200, -100])
def test_truncated_safetensors(hf_bert, keep):
    path = _tiny(hf_bert)
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(WeightsError) as info:
        BertModel.from_pretrain(str(path))
    assert "truncated" in str(info.value) or "corrupt" in str(info.value) or "JSON" in str(info.value)


def test_header_claiming_absurd_length(hf_bert):
    path = _tiny(hf_bert)
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(struct.pack("<Q", 2**62) + data[8:])
    with pytest.raises(WeightsError, match="claims"):
        BertModel.from_pretrain(str(path))


def test_header_claiming_absurd_tensor(hf_bert):
    path = _tiny(hf_bert)
    f = path / "model.safetensors"
    data = f.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["embeddings.word_embeddings.weight"]["shape"] = [2**40, 2**20]
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    f.write_bytes(struct.pack("<Q", len(body)) + body + data[8 + n:])
    with pytest.raises(WeightsError, match="embeddings.word_embeddings.weight"):
        BertModel.from_pretrain(str(path))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_running_pickle_is_refused_and_never_runs(hf_bert, tmp_path):
    path = _tiny(hf_bert)
    (path / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"embeddings.word_embeddings.weight": _Evil(marker)}, path / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError) as info:
        BertModel.from_pretrain(str(path))
    assert not marker.exists()
    assert "not executed" in str(info.value) or "was not" in str(info.value)
    # and a plain pickle (not a torch zip) of the same object is refused too
    with open(path / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"w": _Evil(marker)}, fh)
    with pytest.raises((UnsafeWeightsError, WeightsError)):
        BertModel.from_pretrain(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc", "~/x", "..", "a/b/../../.."])
def test_name_escaping_download_path(hf_bert, tmp_path, name):
    (tmp_path / "state").mkdir()
    with pytest.raises(InvalidModelNameError) as info:
        BertModel.from_pretrain(model_name=name, download_path=str(tmp_path / "state"))
    assert isinstance(info.value, ValueError)


def test_unknown_uri_scheme():
    with pytest.raises(UnsupportedSourceError, match="gs"):
        BertModel.from_pretrain("gs://bucket/model")


def test_unknown_card_name_fails_early_with_close_matches():
    with pytest.raises(ModelNotFoundError) as info:
        BertModel.from_pretrain("bert-base-uncase")
    assert "bert-base-uncased" in str(info.value) and isinstance(info.value, LookupError)


def test_autoloader_unknown_task_fails_at_construction():
    with pytest.raises(UnknownTaskError) as info:
        AutoLoader("text-clasification", model_name="no-such-model-either")
    assert "text-classification" in str(info.value) and isinstance(info.value, KeyError)


def test_autoloader_unknown_model_fails_at_construction():
    with pytest.raises(ModelNotFoundError, match="all-MiniLM-L6-v2"):
        AutoLoader("embedding", model_name="all-MiniLM-L6")


def test_card_with_broken_yaml(tmp_path, monkeypatch, caplog):
    (tmp_path / "bad.md").write_text("---\nname: [unclosed\ntasks: x\n---\nbody\n")
    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(tmp_path))
    from hubloader import list_models
    from hubloader.catalogue.cards import load_card

    assert "BERT-base-en" in list_models()  # skipped with a warning (tests/test_cards_path.py)
    assert "bad.md" in caplog.text and "not valid YAML" in caplog.text
    with pytest.raises(CardError, match="not valid YAML"):
        load_card(tmp_path / "bad.md")


@pytest.mark.parametrize("text,needle", [
    ("---\nname: x\ntasks: [fill-mask]\n---\n", "license"),
    ("no front matter\n", "must start with '---'"),
    ("---\nname: x\n", "not closed"),
    ("---\nname: x\ntasks: [dance]\nlicense: MIT\nauthor: me\narchitecture: bert\n---\n", "unknown task"),
    ("---\nname: x\ntasks: [ner]\nlicense: MIT\nauthor: me\narchitecture: bert\n"
     "files:\n  - path: ../../x\n---\n", "relative"),
    ("---\nname: x\ntasks: [ner]\nlicense: MIT\nauthor: me\narchitecture: bert\n"
     "files:\n  - path: a\n    sha256: abc\n---\n", "64 hex"),
])
def test_card_schema_errors(tmp_path, text, needle):
    from hubloader.catalogue.cards import load_card

    (tmp_path / "c.md").write_text(text)
    with pytest.raises(CardError, match=needle):
        load_card(tmp_path / "c.md")


def test_card_unknown_keys_warn(tmp_path, caplog):
    from hubloader.catalogue.cards import load_card

    (tmp_path / "c.md").write_text("---\nname: x\ntasks: [ner]\nlicense: MIT\nauthor: me\n"
                                   "architecture: bert\ncolour: blue\n---\n")
    card = load_card(tmp_path / "c.md")
    assert card.name == "x" and "colour" in caplog.text


@pytest.mark.parametrize("bad,needle", [
    ([[1, 2, 3]], "must be a torch.Tensor"),
    (torch.tensor([1, 2, 3]), "shape \\[batch, seq\\]"),
    (torch.rand(2, 3), "integer ids"),
])
def test_forward_wrong_inputs(hf_bert, bad, needle):
    model = BertModel.from_pretrain(str(_tiny(hf_bert)))
    with pytest.raises(InputError, match=needle):
        model(input_ids=bad)


def test_forward_mask_shape_mismatch(hf_bert):
    model = BertModel.from_pretrain(str(_tiny(hf_bert)))
    with pytest.raises(InputError, match="attention_mask"):
        model(input_ids=torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))


def test_tokenizer_missing_and_corrupt(minilm_dir, tmp_path):
    from hubloader.text.tokenizer import load_tokenizer

    with pytest.raises(TokenizerError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(tmp_path)


def test_forward_ids_outside_vocabulary(hf_bert):
    model = BertModel.from_pretrain(str(_tiny(hf_bert)))
    with pytest.raises(InputError, match=r"\[0, 120\).*tokenizer"):
        model(input_ids=torch.tensor([[1, 2, 500]]))
