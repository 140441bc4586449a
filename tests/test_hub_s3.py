"""S3 sources against a real SeaweedFS on 127.0.0.1 (boto3 unmocked)."""

from __future__ import annotations

import socket

import pytest

import hubloader
from hubloader.errors import AccessDeniedError, NetworkError, RemoteNotFoundError
from hub_helpers import MINILM_FILES, make_tiny_bert, sha256_of, write_card


@pytest.fixture
def s3_env(hub_env, weed, monkeypatch):
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", weed.endpoint)
    return hub_env


def _minilm_card_files(minilm_dir):
    return [{"path": p, "size": (minilm_dir / p).stat().st_size, "sha256": sha256_of(minilm_dir / p)}
            for p in MINILM_FILES]


def test_card_with_s3_source_real_minilm(s3_env, s3_minilm, minilm_dir):
    write_card(s3_env / "cards", "all-MiniLM-L6-v2", source=s3_minilm,
               files=_minilm_card_files(minilm_dir))
    path = hubloader.download("all-MiniLM-L6-v2")
    assert path.parent.parent.name == "s3--models--all-MiniLM-L6-v2"
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) \
        == sorted(MINILM_FILES)
    for p in MINILM_FILES:
        assert sha256_of(path / p) == sha256_of(minilm_dir / p)

    from hubloader.models import BertModel

    model = BertModel.from_pretrain("all-MiniLM-L6-v2")
    assert model.config.hidden_size == 384


def test_explicit_s3_uri_default_selection(s3_env, s3_minilm, minilm_dir):
    path = hubloader.download(s3_minilm + "/")
    names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "vocab.txt", "1_Pooling/config.json"} <= names
    assert ".gitattributes" not in names
    assert sha256_of(path / "model.safetensors") == sha256_of(minilm_dir / "model.safetensors")


def test_endpoint_s3_prefix(s3_env, weed, monkeypatch, tmp_path):
    make_tiny_bert(tmp_path / "tiny")
    weed.upload_dir("mirror", "org/tiny-bert", tmp_path / "tiny")
    write_card(s3_env / "cards", "tiny-bert", source="s3://nonexistent-bucket/tiny-bert")
    monkeypatch.setenv("HUBLOADER_ENDPOINT", "s3://mirror/org")
    path = hubloader.download("tiny-bert")
    assert sha256_of(path / "model.safetensors") == sha256_of(tmp_path / "tiny" / "model.safetensors")
    monkeypatch.delenv("HUBLOADER_ENDPOINT")
    with pytest.raises(RemoteNotFoundError, match="nonexistent-bucket"):
        hubloader.download("tiny-bert")


def test_changed_object_is_refetched(s3_env, weed, tmp_path):
    s3 = weed.client()
    s3.put_object(Bucket="models", Key="mutable/config.json", Body=b'{"v": 1}')
    first = hubloader.download("s3://models/mutable")
    assert (first / "config.json").read_bytes() == b'{"v": 1}'
    s3.put_object(Bucket="models", Key="mutable/config.json", Body=b'{"v": 2}')
    second = hubloader.download("s3://models/mutable")
    assert (second / "config.json").read_bytes() == b'{"v": 2}'


def test_missing_prefix_and_denied(s3_env, s3_minilm, monkeypatch):
    with pytest.raises(RemoteNotFoundError, match="no objects under"):
        hubloader.download("s3://models/does-not-exist")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(AccessDeniedError, match="credentials") as info:
        hubloader.download(s3_minilm)
    assert isinstance(info.value, PermissionError)


def test_unreachable_endpoint_is_network_error(s3_env, monkeypatch):
    import servers

    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", f"http://127.0.0.1:{servers.free_port()}")
    monkeypatch.setenv("HUBLOADER_TIMEOUT", "2")
    with pytest.raises(NetworkError, match="HUBLOADER_OFFLINE") as info:
        hubloader.download("s3://models/all-MiniLM-L6-v2")
    assert isinstance(info.value, ConnectionError)


def test_sockets_disabled_warm_cache_still_works(s3_env, s3_minilm, monkeypatch):
    """No HUBLOADER_OFFLINE: the listing fails, the complete cached snapshot is used."""
    path = hubloader.download(s3_minilm, allow_patterns=["*.json", "*.txt"])

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert hubloader.download(s3_minilm, allow_patterns=["*.json", "*.txt"]) == path
    assert hubloader.download(s3_minilm, offline=True) == path
    with pytest.raises(NetworkError):
        hubloader.download("s3://models/never-fetched")
