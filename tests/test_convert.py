"""convert: a transformers .bin checkpoint into safetensors (renamed through the model class,
cast, sharded), equal outputs; a pickle that would run code is refused and never runs."""

from __future__ import annotations

import json
import pathlib

import pytest
import torch

from hubloader import BaseModel, UnsafeWeightsError, WeightsMismatchError
from hubloader.catalogue.cards import load_card
from hubloader.commands.models import validate_path
from hubloader.tools.convert import convert
from publish_helpers import TINY, run_cli


@pytest.fixture(scope="module")
def hf_bin(tmp_path_factory):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(**TINY)
    model = transformers.BertModel(cfg).eval()
    d = tmp_path_factory.mktemp("hf") / "hf-bert"
    # transformers 5 writes safetensors only; a .bin checkpoint is its state dict pickled
    # with torch.save next to its config.json, as transformers 4 wrote it
    model.config.save_pretrained(d)
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    return d, model


def _ids():
    return torch.tensor([[1, 5, 7, 9, 2], [1, 8, 3, 2, 0]]), torch.tensor([[1] * 5, [1, 1, 1, 1, 0]])


def test_convert_bin_to_safetensors_same_outputs(hf_bin, tmp_path):
    src, hf = hf_bin
    result = convert(src, tmp_path / "st", max_shard_size="30KB")
    assert result.model_class == "BertModel"
    out = tmp_path / "st"
    assert (out / "model.safetensors.index.json").is_file()
    assert len(list(out.glob("model-*.safetensors"))) >= 3
    assert not list(out.glob("*.bin"))
    keys = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert sorted(keys) == sorted(k for k in hf.state_dict() if "position_ids" not in k)
    assert not any(k.startswith("blocks.") for k in keys)  # transformers' names, not ours
    model = BaseModel.from_pretrain(str(out))
    ids, mask = _ids()
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)["logits"]
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert any(line.startswith("weights ok") for line in validate_path(out))
    assert load_card(out).architecture == "bert"


def test_convert_dtype_cli(hf_bin, tmp_path, monkeypatch, capsys):
    src, _ = hf_bin
    rc, out, err = run_cli(["convert", src, tmp_path / "half", "--dtype", "float16"],
                           monkeypatch, capsys)
    assert rc == 0, err
    assert "into" in out and "model.safetensors" in out
    model = BaseModel.from_pretrain(str(tmp_path / "half"))
    assert model.dtype == torch.float16
    cfg = json.loads((tmp_path / "half" / "config.json").read_text())
    assert cfg["dtype"] == "float16" and "torch_dtype" not in cfg


def test_convert_raw_keeps_names(hf_bin, tmp_path):
    src, hf = hf_bin
    result = convert(src / "pytorch_model.bin", tmp_path / "raw", raw=True)
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "raw" / "model.safetensors"))
    assert set(tensors) == set(torch.load(src / "pytorch_model.bin", weights_only=True))
    assert result.num_tensors == len(tensors)


def test_convert_strict_mismatch(hf_bin, tmp_path):
    src, _ = hf_bin
    state = torch.load(src / "pytorch_model.bin", weights_only=True)
    state["encoder.layer.9.output.dense.weight"] = torch.zeros(2, 2)  # no such layer
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(state, bad / "pytorch_model.bin")
    (bad / "config.json").write_text((src / "config.json").read_text())
    with pytest.raises(WeightsMismatchError, match="unexpected"):
        convert(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "README.md").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_convert_refuses_code_running_pickle(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    src = tmp_path / "evil"
    src.mkdir()
    torch.save({"weight": torch.zeros(2), "payload": _Evil(str(marker))}, src / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="not executed"):
        convert(src, tmp_path / "out", raw=True)
    assert not marker.exists()
    rc, out, err = run_cli(["convert", src / "pytorch_model.bin", tmp_path / "out2"],
                           monkeypatch, capsys)
    assert rc == 1 and "refused" in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
