"""The test-only FlagAI oracle (``pip install --no-deps flagai==1.8.4``): tiny random FlagAI
models, saved as FlagAI's model hub lays them out (``<model_dir>/<name>/config.json`` without
``model_type``, ``pytorch_model.bin`` with the state dict under ``"module"``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

# FlagAI logs through its own handlers and prints at import; keep the test output readable
logging.getLogger("flagai").setLevel(logging.ERROR)
os.environ.setdefault("ENV_TYPE", "pytorch")

TOL = 1e-5
GLM_VOCAB = 120
TINY_GLM = dict(num_layers=2, vocab_size=GLM_VOCAB, hidden_size=32, num_attention_heads=4,
                embedding_dropout_prob=0.1, attention_dropout_prob=0.1, output_dropout_prob=0.1,
                max_sequence_length=64, max_memory_length=0, checkpoint_activations=False,
                checkpoint_num_layers=1, parallel_output=True, relative_encoding=False,
                block_position_encoding=True, output_predict=True, spell_length=None,
                spell_func="lstm", attention_scale=1.0)


def flagai_config(data: dict):
    from flagai.model.base_model import change_json_to_cls

    return change_json_to_cls(dict(data))


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value (layer norms start at exactly 1 and 0, which
    would hide a swapped or missing norm)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def save_flagai(model: torch.nn.Module, config: dict, model_dir: Path, name: str, *,
                under_module: bool = True) -> Path:
    """Write ``model`` as FlagAI's hub serves it: ``<model_dir>/<name>/``."""
    out = Path(model_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    torch.save({"module": state} if under_module else state, out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()
