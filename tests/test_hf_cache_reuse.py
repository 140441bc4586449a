"""huggingface_hub's cache reused for hf:// sources: the cache is filled by the real
``huggingface_hub.snapshot_download`` from the project's hub server (servers.HubServer), then
hubloader loads from it with sockets forbidden: offline, and online for a pinned commit."""

from __future__ import annotations

import json
import os
import socket

import pytest

import hubloader
from hubloader.errors import LocalEntryNotFoundError
from hub_helpers import make_tiny_bert

REPO = "hf-org/tiny-bert"


class SocketForbidden(AssertionError):
    pass


def _forbid_sockets(monkeypatch):
    """Any connection attempt fails the test (not a retryable network error)."""
    def refuse(*args, **kwargs):
        raise SocketForbidden(f"a connection was attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def no_sockets(monkeypatch):
    _forbid_sockets(monkeypatch)


@pytest.fixture(scope="module")
def repo(hub, tmp_path_factory):
    folder = make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in sorted(folder.rglob("*")) if p.is_file()}
    commit = hub.add_commit(REPO, files)
    return {"commit": commit, "files": files, "folder": folder}


@pytest.fixture
def hf_cache(hub_env, hub, repo, monkeypatch):
    """huggingface_hub's cache (HF_HOME/hub) filled by its own snapshot_download."""
    from huggingface_hub import snapshot_download

    home = hub_env / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    snap = snapshot_download(REPO, endpoint=hub.url, cache_dir=str(home / "hub"))
    assert os.path.islink(os.path.join(snap, "model.safetensors"))  # its own layout
    hub.hits.clear()
    return home / "hub"


def _manifest(path):
    return json.loads((path.parent.parent / "manifests" / f"{path.name}.json").read_text())


def test_offline_load_from_the_hf_cache_with_sockets_forbidden(hf_cache, repo, hub, no_sockets,
                                                               monkeypatch):
    from hubloader.models import BertModel

    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    model = BertModel.from_pretrain(f"hf://{REPO}")
    reference = BertModel.from_pretrain(repo["folder"])
    for key, value in reference.state_dict().items():
        assert (model.state_dict()[key] == value).all(), key
    assert hub.hits == []
    ours = model.model_dir
    assert ours.name == repo["commit"] and not str(ours).startswith(str(hf_cache))
    blob = hf_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / repo["commit"]
    # a file of hubloader's own, not a link to huggingface_hub's blob (see the next test)
    assert os.stat(ours / "model.safetensors").st_ino != os.stat(blob / "model.safetensors").st_ino
    origins = {p: e.get("origin") for p, e in _manifest(ours)["files"].items()}
    assert origins and set(origins.values()) == {"hf-cache"}, origins


def test_an_in_place_write_to_the_hf_blob_does_not_change_our_copy(hf_cache, repo, hub,
                                                                    no_sockets, monkeypatch):
    """huggingface_hub's own writes rename a new file into place, but anything else may write
    to its blob in place: hubloader's verified copy must stay what it verified."""
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    ours = hubloader.download(f"hf://{REPO}")
    snap = hf_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / repo["commit"]
    with open((snap / "model.safetensors").resolve(), "r+b") as fh:  # same size, other bytes
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([last[0] ^ 0xFF]))
    again = hubloader.download(f"hf://{REPO}")
    assert (again / "model.safetensors").read_bytes() == repo["files"]["model.safetensors"]
    assert (ours / "model.safetensors").read_bytes() == repo["files"]["model.safetensors"]


def test_pinned_commit_online_makes_no_request(hf_cache, repo, hub, no_sockets):
    path = hubloader.download(f"hf://{REPO}@{repo['commit']}")
    assert (path / "config.json").read_bytes() == repo["files"]["config.json"]
    assert hub.hits == []


def test_branch_online_lists_once_and_fetches_no_file(hf_cache, repo, hub):
    path = hubloader.download(f"hf://{REPO}")
    assert (path / "model.safetensors").read_bytes() == repo["files"]["model.safetensors"]
    assert hub.hits and not any("/resolve/" in h for h in hub.hits), hub.hits


def test_a_damaged_hf_blob_is_not_used(hf_cache, repo, hub, monkeypatch):
    snap = hf_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / repo["commit"]
    blob = (snap / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    with pytest.raises(LocalEntryNotFoundError):
        hubloader.download(f"hf://{REPO}")
    monkeypatch.setenv("HUBLOADER_OFFLINE", "0")
    path = hubloader.download(f"hf://{REPO}")  # fetched from the hub instead
    assert (path / "model.safetensors").read_bytes() == repo["files"]["model.safetensors"]
    assert any("/resolve/" in h and "model.safetensors" in h for h in hub.hits), hub.hits
    assert blob.read_bytes() == bytes(data)  # huggingface_hub's cache is left as it was


def test_a_config_alone_in_the_hf_cache_is_not_a_model(hub_env, hub, repo, monkeypatch):
    from huggingface_hub import hf_hub_download

    home = hub_env / "hf-home"
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "elsewhere"))
    monkeypatch.setenv("HF_HOME", str(home))  # HF_HUB_CACHE wins over it
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    hf_hub_download(REPO, "config.json", endpoint=hub.url, cache_dir=str(home / "elsewhere"))
    _forbid_sockets(monkeypatch)
    with pytest.raises(LocalEntryNotFoundError):
        hubloader.download(f"hf://{REPO}")
    path = hubloader.download(f"hf://{REPO}", allow_patterns=["config.json"])
    assert (path / "config.json").read_bytes() == repo["files"]["config.json"]


def test_cache_ls_shows_where_files_came_from(hf_cache, repo, monkeypatch, capsys):
    from hubloader.cli import main

    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    hubloader.download(f"hf://{REPO}")
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "hf-cache" in out, out
    assert main(["cache", "ls", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    snap = next(s for s in data["snapshots"] if s["uri"] == f"hf://{REPO}")
    assert {f["origin"] for f in snap["files"]} == {"hf-cache"}
    assert {f["path"] for f in snap["files"]} == set(repo["files"])
