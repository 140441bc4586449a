"""Helpers shared by the hub tests (their fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

__all__ = ["write_card", "sha256_of", "make_tiny_bert", "run_py", "WORKTREE", "MINILM_FILES",
           "upload_random_model", "files_in"]

WORKTREE = Path(__file__).resolve().parents[1]
MINILM_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "vocab.txt", "special_tokens_map.json", "modules.json", "1_Pooling/config.json"]


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def files_in(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (a snapshot): ``/``-separated relative path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file()}


def write_card(cards_dir: Path, name: str, *, source: str | None = None,
               revision: str | None = None, files: list[dict] | None = None) -> Path:
    import yaml

    meta = {"name": name, "tasks": ["embedding"], "license": "apache-2.0", "author": "hubtest",
            "architecture": "bert"}
    if source:
        meta["source"] = source
    if revision:
        meta["revision"] = revision
    if files:
        meta["files"] = files
    path = Path(cards_dir) / f"{name}.md"
    path.write_text("---\n" + yaml.safe_dump(meta) + "---\n\ntest card\n")
    return path


def make_tiny_bert(folder: Path) -> Path:
    from hubloader.models import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64)
    BertModel.from_config(cfg).save_pretrained(folder)
    return folder


def run_py(code: str, *, env: dict | None = None, timeout: float = 120, **kw):
    """Run ``code`` in a fresh interpreter with the worktree on PYTHONPATH."""
    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = str(WORKTREE) + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=full, timeout=timeout,
                          capture_output=True, text=True, **kw)


def upload_random_model(weed, bucket: str, prefix: str, folder: Path, *, size: int, seed: int) -> Path:
    """A config.json and ``size`` seeded random bytes as model.safetensors, in ``folder`` and
    at ``s3://bucket/prefix/``."""
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(random.Random(seed).randbytes(size))
    weed.upload_dir(bucket, prefix, folder)
    return folder
