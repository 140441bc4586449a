"""Helpers shared by the model-family tests: random-init transformers models saved in Hugging
Face format (the test-only oracle), and output comparison."""

from __future__ import annotations

from pathlib import Path

import torch

TOL = 1e-4


def save_hf(model, path: Path) -> Path:
    """``save_pretrained`` a transformers model (safetensors) and return the directory."""
    model.eval()
    model.save_pretrained(str(path), safe_serialization=True)
    return path


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()
