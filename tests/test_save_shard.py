"""save_pretrained: one file or shards with an index, a card listing every file's size and
sha256, accepted by validate; reloading gives the same tensors."""

from __future__ import annotations

import json
import pytest
import torch

from hubloader import BaseModel, CardError, ConfigError, IntegrityError
from hubloader.catalogue.cards import load_card
from hubloader.commands.models import validate_path
from publish_helpers import run_cli, sha256, tiny_bert


def _same(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_single_file_card_and_reload(tmp_path):
    model = tiny_bert()
    out = model.save_pretrained(tmp_path / "tiny-bert", card={"license": "apache-2.0",
                                                              "author": "me"})
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors"]
    card = load_card(out)
    assert (card.name, card.architecture, card.license, card.tasks) == (
        "tiny-bert", "bert", "apache-2.0", ("base",))
    assert [f.path for f in card.files] == ["config.json", "model.safetensors"]
    for f in card.files:
        data = (out / f.path).read_bytes()
        assert f.size == len(data) and f.sha256 == sha256(data)
    _same(model, BaseModel.from_pretrain(str(out)))
    assert any(line.startswith("weights ok") for line in validate_path(out))


def test_sharded_index_and_reload(tmp_path):
    model = tiny_bert(seed=1)
    out = model.save_pretrained(tmp_path / "m", max_shard_size="20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) >= 3 and set(index["weight_map"].values()) == set(shards)
    assert set(index["weight_map"]) == set(model.checkpoint_state())  # transformers' names
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in model.state_dict().values())
    # every shard holds at most 20 kB of tensors unless one tensor alone is bigger
    from safetensors import safe_open

    for name in shards:
        with safe_open(str(out / name), "pt") as f:
            keys = list(f.keys())
            total = sum(f.get_tensor(k).numel() * 4 for k in keys)
        assert total <= 20_000 or len(keys) == 1, (name, total, keys)
    assert not (out / "model.safetensors").exists()
    listed = {f.path for f in load_card(out).files}
    assert listed == {"config.json", "model.safetensors.index.json", *shards}
    loaded = BaseModel.from_pretrain(str(out))
    assert loaded.load_report.files == shards
    _same(model, loaded)
    lines = validate_path(out)
    assert f"files ok: {len(listed)} listed, sizes and sha256 match" in lines


def test_resave_switches_layout_without_stale_files(tmp_path):
    model = tiny_bert()
    out = tmp_path / "m"
    model.save_pretrained(out, max_shard_size=20_000)
    model.save_pretrained(out)  # back to one file: old shards must go, or they'd be ambiguous
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    assert not list(out.glob(".*.tmp"))


def test_validate_catches_tampered_file(tmp_path):
    out = tiny_bert().save_pretrained(tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    cfg["hidden_dropout_prob"] = 0.2
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    with pytest.raises(IntegrityError, match="config.json"):
        validate_path(out)


def test_bad_arguments(tmp_path):
    model = tiny_bert()
    with pytest.raises(ConfigError, match="not understood"):
        model.save_pretrained(tmp_path / "a", max_shard_size="lots")
    with pytest.raises(CardError, match="unknown task"):
        model.save_pretrained(tmp_path / "b", card={"tasks": ["juggling"]})
    assert not (tmp_path / "b" / "README.md").exists()


def test_cli_validate(tmp_path, monkeypatch, capsys):
    out = tiny_bert().save_pretrained(tmp_path / "m", max_shard_size="50KB")
    rc, stdout, stderr = run_cli(["validate", out], monkeypatch, capsys)
    assert rc == 0, stderr
    assert "card ok: m" in stdout and stdout.strip().endswith("valid")
    (out / "model.safetensors.index.json").unlink()
    rc, stdout, stderr = run_cli(["validate", out], monkeypatch, capsys)
    assert rc == 1 and "model.safetensors.index.json" in stderr
