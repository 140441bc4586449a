"""hf:// sources: the real huggingface_hub client against a hub-protocol server on 127.0.0.1
(``servers.HubServer``: the /api/models/.../revision/... and /resolve/... endpoints)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hubloader
from hubloader.errors import HubLoaderError, IntegrityError, RemoteNotFoundError, RevisionNotFoundError
from hub_helpers import MINILM_FILES, sha256_of, write_card


@pytest.fixture(scope="module")
def bert_repo(hub, minilm_dir):
    files = {p: (minilm_dir / p).read_bytes() for p in MINILM_FILES}
    files["tf_model.h5"] = b"tensorflow weights are not fetched"
    v1 = hub.add_commit("google-bert/bert-tiny", files)
    files2 = dict(files, **{"config.json": files["config.json"].replace(b"384", b"384 ")})
    v2 = hub.add_commit("google-bert/bert-tiny", files2)
    hub.repos["google-bert/bert-tiny"]["refs"]["v1"] = v1
    return {"v1": v1, "v2": v2, "files": files, "files2": files2}


@pytest.fixture
def hf_env(hub_env, hub, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    return hub_env


def test_hf_uri_main_and_pinned(hf_env, bert_repo, hub, minilm_dir):
    path = hubloader.download("hf://google-bert/bert-tiny")
    assert path.name == bert_repo["v2"], "snapshots are keyed by the resolved commit"
    assert (path / "config.json").read_bytes() == bert_repo["files2"]["config.json"]
    assert sha256_of(path / "model.safetensors") == sha256_of(minilm_dir / "model.safetensors")
    assert not (path / "tf_model.h5").exists()
    old = hubloader.download("hf://google-bert/bert-tiny@v1")
    assert old.name == bert_repo["v1"] and old != path
    assert (old / "config.json").read_bytes() == bert_repo["files"]["config.json"]
    same = hubloader.download("hf://google-bert/bert-tiny", revision=bert_repo["v1"])
    assert same == old


def test_card_with_hf_source_and_revision(hf_env, bert_repo, hub):
    write_card(hf_env / "cards", "bert-tiny", source="hf://google-bert/bert-tiny",
               revision="v1",
               files=[{"path": "config.json",
                       "sha256": hashlib.sha256(bert_repo["files"]["config.json"]).hexdigest()},
                      {"path": "model.safetensors"}, {"path": "vocab.txt"}])
    path = hubloader.download("bert-tiny")
    assert path.name == bert_repo["v1"]
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    from hubloader.models import BertModel

    assert BertModel.from_pretrain("bert-tiny").config.hidden_size == 384


def test_offline_by_ref_with_sockets_disabled(hf_env, bert_repo, monkeypatch):
    path = hubloader.download("hf://google-bert/bert-tiny@v1", allow_patterns=["*.json"])

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    assert hubloader.download("hf://google-bert/bert-tiny@v1", allow_patterns=["*.json"]) == path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hubloader.download("hf://google-bert/bert-tiny@v1") == path


def test_hf_errors(hf_env, bert_repo):
    with pytest.raises(RevisionNotFoundError, match="revision"):
        hubloader.download("hf://google-bert/bert-tiny@no-such-branch")
    with pytest.raises(RemoteNotFoundError, match="does not exist"):
        hubloader.download("hf://nobody/nothing")


def test_the_token_goes_to_the_hub_not_to_the_storage_it_redirects_to(hf_env, hub,
                                                                      monkeypatch):
    """A hub sends LFS files to its storage on another host: the bytes are fetched from
    there (in parallel ranges), and the token the hub got is not passed on."""
    token = "hf_" + "T0kenForTheHubOnly" * 2
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")
    monkeypatch.setenv("HUBLOADER_MAX_WORKERS", "3")
    weights = os.urandom(20 << 20)
    hub.add_commit("org/stored", {"config.json": b"{}", "model.safetensors": weights})
    hub.storage_host, hub.storage_auth[:], hub.hub_auth[:] = "localhost", [], []
    try:
        path = hubloader.download("hf://org/stored")
    finally:
        hub.storage_host = None
    assert (path / "model.safetensors").read_bytes() == weights
    assert len(hub.storage_auth) >= 3, "the ranges were not fetched from the storage host"
    assert hub.hub_auth and all(a == f"Bearer {token}" for a in hub.hub_auth)
    assert hub.storage_auth == [None] * len(hub.storage_auth)


def test_lfs_sha256_is_verified(hf_env, hub):
    """The server lists an LFS sha256 that does not match the bytes it serves."""
    commit = hub.add_commit("org/liar", {"config.json": b"{}", "model.safetensors": b"A" * 1000})
    hub.repos["org/liar"]["commits"][commit]["model.safetensors"] = b"B" * 1000
    real_meta = hub._meta

    def lying_meta(path, data):
        meta = real_meta(path, data)
        if path == "model.safetensors":
            meta["lfs"]["sha256"] = hashlib.sha256(b"A" * 1000).hexdigest()
        return meta

    hub._meta = lying_meta
    try:
        with pytest.raises(IntegrityError):
            hubloader.download("hf://org/liar")
    finally:
        hub._meta = real_meta


def test_server_speaks_the_protocol_huggingface_hub_expects(hub, bert_repo, tmp_path):
    """Sanity check of the test server itself: huggingface_hub's own downloader uses it."""
    from huggingface_hub import hf_hub_download

    got = hf_hub_download("google-bert/bert-tiny", "model.safetensors", revision="v1",
                          endpoint=hub.url, cache_dir=tmp_path)
    assert sha256_of(got) == hashlib.sha256(bert_repo["files"]["model.safetensors"]).hexdigest()


def test_warm_pinned_commit_makes_no_request(hf_env, bert_repo, hub, tmp_path, monkeypatch):
    """A commit is immutable: once its snapshot is cached, hubloader asks the hub nothing.
    huggingface_hub (2.x) behaves the same way for a pinned commit: ``snapshot_download``
    keeps the commit's file tree in its cache and ``hf_hub_download`` short-cuts a cached
    commit, so a warm pinned call of either makes no request; both ask again for a branch."""
    from huggingface_hub import hf_hub_download, snapshot_download

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # nothing for hubloader to adopt
    commit = bert_repo["v1"]
    uri = f"hf://google-bert/bert-tiny@{commit}"
    before = len(hub.hits)
    cold = hubloader.download(uri)
    assert cold.name == commit
    assert len(hub.hits) > before, "the cold fetch reaches the hub"
    before = len(hub.hits)
    assert hubloader.download(uri) == cold
    assert hubloader.download("hf://google-bert/bert-tiny", revision=commit) == cold
    assert hub.hits[before:] == [], "a warm pinned commit must not reach the hub"
    assert hubloader.download("hf://google-bert/bert-tiny@v1") == cold
    assert len(hub.hits) > before, "a branch or tag is asked again: it can move"

    theirs = dict(endpoint=hub.url, cache_dir=tmp_path / "hf-cache",
                  allow_patterns=["*.json", "*.safetensors", "*.txt"])
    before = len(hub.hits)
    snapshot_download("google-bert/bert-tiny", revision=commit, **theirs)
    assert any("/tree/" in hit for hit in hub.hits[before:]), hub.hits[before:]
    before = len(hub.hits)
    snapshot_download("google-bert/bert-tiny", revision=commit, **theirs)
    assert hub.hits[before:] == [], "huggingface_hub keeps a pinned commit's tree"
    hf_hub_download("google-bert/bert-tiny", "model.safetensors", revision=commit,
                    endpoint=hub.url, cache_dir=tmp_path / "hf-cache")
    assert hub.hits[before:] == [], "hf_hub_download short-cuts a cached commit"
    snapshot_download("google-bert/bert-tiny", revision="v1", **theirs)
    assert any("/revision/v1" in hit for hit in hub.hits[before:]), hub.hits[before:]


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**12) | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["rfilename", "size", "blobId", "lfs", None]),
       value=_JSON | st.fixed_dictionaries({"sha256": _JSON, "size": _JSON}))
def test_a_hostile_listing_entry_never_crashes(hf_env, hub, tmp_path, monkeypatch, field, value):
    """The hub lists a third file whose entry carries any JSON in one field (or is not an
    object at all): the two real files still arrive verified, or a typed error says why."""
    files = {"config.json": b'{"hidden_size": 8}', "model.safetensors": b"W" * 4096,
             "extra.txt": b"extra"}
    commit = hub.add_commit("org/hostile", files)
    real_meta = hub._meta

    def hostile_meta(path, data):
        meta = dict(real_meta(path, data))
        if path != "extra.txt":
            return meta
        if field is None:
            return value
        meta[field] = value
        return meta

    home = tmp_path / f"home-{len(list(tmp_path.iterdir()))}"
    monkeypatch.setenv("HUBLOADER_HOME", str(home))
    hub._meta = hostile_meta
    try:
        got = hubloader.download(f"hf://org/hostile@{commit}",
                                 allow_patterns=["*.json", "*.safetensors"])
    except HubLoaderError:
        return
    finally:
        hub._meta = real_meta
    assert (got / "config.json").read_bytes() == files["config.json"]
    assert (got / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_a_cold_fetch_imports_neither_hfapi_nor_file_download(hf_env, bert_repo, tmp_path):
    """The listing and the bytes go through huggingface_hub's session alone: HfApi and
    file_download cost a cold process more time to import than the listing takes."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys, hubloader\n"
            f"path = hubloader.download('hf://google-bert/bert-tiny@{bert_repo['v1']}')\n"
            "print(json.dumps([str(path), sorted(m for m in sys.modules "
            "if m.startswith('huggingface_hub.'))]))")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    path, modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert (Path(path) / "model.safetensors").is_file()
    assert "huggingface_hub.utils" in modules, modules  # the session was used
    assert "huggingface_hub.hf_api" not in modules and \
        "huggingface_hub.file_download" not in modules, modules
