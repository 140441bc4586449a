"""Bad input to download(), against real servers: a missing bucket, prefix or key, access
denied (a SeaweedFS identity that may list but not read, and a wrong secret key), a hub
revision that does not exist, an unknown URI scheme, names that would escape the cache.
Each is a typed error whose message says what to do, and no file is left behind."""

from __future__ import annotations

import pytest

import hubloader
from hubloader.errors import (AccessDeniedError, InvalidModelNameError, RemoteNotFoundError,
                              RevisionNotFoundError, UnsupportedSourceError)
from hub_helpers import make_tiny_bert, write_card
import servers


def _leftovers(root) -> list[str]:
    """Every temp or final data file under ``root`` (bookkeeping such as locks aside)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and ("snapshots" in p.parts or "partial" in p.parts))


@pytest.fixture
def s3_env(hub_env, weed, monkeypatch):
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", weed.endpoint)
    return hub_env


@pytest.fixture(scope="module")
def denied_model(weed, tmp_path_factory):
    folder = make_tiny_bert(tmp_path_factory.mktemp("denied") / "tiny")
    weed.upload_dir("denied", "tiny-bert", folder)
    return "s3://denied/tiny-bert"


def test_bucket_does_not_exist(s3_env):
    with pytest.raises(RemoteNotFoundError, match="check the bucket") as info:
        hubloader.download("s3://no-such-bucket-hubtest/model")
    assert "no-such-bucket-hubtest" in str(info.value) and isinstance(info.value, FileNotFoundError)
    assert _leftovers(s3_env / "home") == []


def test_prefix_and_key_do_not_exist(s3_env, denied_model):
    with pytest.raises(RemoteNotFoundError, match="check the bucket and prefix"):
        hubloader.download("s3://denied/no-such-prefix")
    write_card(s3_env / "cards", "tiny-bert", source=denied_model,
               files=[{"path": "config.json"}, {"path": "missing-shard.safetensors"}])
    with pytest.raises(RemoteNotFoundError, match="missing-shard.safetensors.*fix the source"):
        hubloader.download("tiny-bert")
    assert _leftovers(s3_env / "home") == []


def test_identity_without_read_rights(s3_env, denied_model, monkeypatch):
    """The listing is allowed, reading is refused by the server's identity config (the HEAD
    for the stated sha256 comes first; a HEAD reply has no body, so the code is the status)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", servers.LIST_ONLY_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", servers.LIST_ONLY_SECRET)
    with pytest.raises(AccessDeniedError, match="AWS_ACCESS_KEY_ID") as info:
        hubloader.download(denied_model)
    msg = str(info.value)
    assert ("AccessDenied" in msg or "(403)" in msg) and denied_model + "/" in msg
    assert isinstance(info.value, PermissionError)
    assert _leftovers(s3_env / "home") == [], "a refused GET left a temp file"


def test_wrong_secret_key(s3_env, denied_model, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(AccessDeniedError, match="credentials"):
        hubloader.download(denied_model)
    assert _leftovers(s3_env / "home") == []


@pytest.fixture
def hf_env(hub_env, hub, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    return hub_env


def test_hf_revision_does_not_exist(hf_env, hub):
    hub.add_commit("org/real", {"config.json": b"{}"})
    for call in (lambda: hubloader.download("hf://org/real@no-such-branch"),
                 lambda: hubloader.download("hf://org/real", revision="f" * 40)):
        with pytest.raises(RevisionNotFoundError, match="check the branch, tag or commit") as info:
            call()
        assert isinstance(info.value, FileNotFoundError)
    write_card(hf_env / "cards", "real", source="hf://org/real", revision="v9")
    with pytest.raises(RevisionNotFoundError, match="v9"):
        hubloader.download("real")
    assert _leftovers(hf_env / "home") == []


def test_hf_listing_with_escaping_names_writes_nothing_outside(hf_env, hub):
    hub.add_commit("org/evil", {"config.json": b"{}", "../../escape.json": b"{}",
                                "a/../../../escape2.json": b"{}"})
    path = hubloader.download("hf://org/evil")
    assert sorted(p.name for p in path.iterdir()) == ["config.json"]
    assert not list(hf_env.rglob("escape*.json"))


def test_unknown_scheme(hub_env):
    for name in ("gs://bucket/model", "ftp://host/model"):
        with pytest.raises(UnsupportedSourceError, match="supported: s3://, hf://, file://"):
            hubloader.download(name)
    assert hubloader.cached_file is not None
    with pytest.raises(UnsupportedSourceError):
        hubloader.cached_file("gs://bucket/model", "config.json")


@pytest.mark.parametrize("name", [
    "hf://org/../repo",        # a hub repository with '..'
    "hf://../repo",
    "s3://bucket/../../etc",   # an S3 prefix climbing up
    "s3://bucket/a/./b",
])
def test_names_escaping_the_cache(hub_env, name):
    with pytest.raises(InvalidModelNameError, match="'..'|not allowed|org/name"):
        hubloader.download(name)
    assert _leftovers(hub_env / "home") == []


def test_download_path_escape(hub_env):
    write_card(hub_env / "cards", "tiny", source="s3://bucket/tiny")
    target = hub_env / "dl"
    for name in ("../outside", "a/../../outside", "/etc", "hf://org/..", "~/x"):
        with pytest.raises(InvalidModelNameError, match="'..'|absolute|org/name"):
            hubloader.download(name, download_path=target)
    assert not (hub_env / "outside").exists()
