"""The zero-network warm path, counted at the servers: a pinned commit or a card whose files
all carry a sha256 is served from a complete cache with no request at all (also with socket
creation forbidden and offline mode off); a moving reference is re-checked with exactly one
listing request per call, never one per file."""

from __future__ import annotations

import hashlib
import logging
import socket

import pytest

import hubloader
from hub_helpers import make_tiny_bert, sha256_of, write_card


class SocketGuard:
    """Makes socket creation raise and counts the attempts (so "no socket" can be asserted,
    not just "it still worked": the cache fallback after a NetworkError also works)."""

    def __init__(self, monkeypatch):
        self.calls = 0

        def refuse(*args, **kwargs):
            self.calls += 1
            raise OSError("network disabled by the test")

        monkeypatch.setattr(socket, "socket", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)


# -- S3 through a counting proxy -----------------------------------------------------------
@pytest.fixture(scope="module")
def s3_tiny(weed, tmp_path_factory):
    folder = make_tiny_bert(tmp_path_factory.mktemp("warm") / "tiny")
    (folder / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(100)))
    weed.upload_dir("warm", "tiny-bert", folder)
    return folder


def _card_files(folder, with_sha=True):
    return [{"path": p, "size": (folder / p).stat().st_size,
             **({"sha256": sha256_of(folder / p)} if with_sha else {})}
            for p in ("config.json", "model.safetensors", "vocab.txt")]


def test_s3_card_with_sha256_warm_call_makes_no_request(proxy, s3_tiny, hub_env, monkeypatch,
                                                        caplog):
    write_card(hub_env / "cards", "tiny-bert", source="s3://warm/tiny-bert",
               files=_card_files(s3_tiny))
    first = hubloader.download("tiny-bert")
    assert proxy.requests, "the cold call must have gone to the server"
    proxy.reset()
    assert hubloader.download("tiny-bert") == first
    assert proxy.requests == [] and proxy.connections == 0

    guard = SocketGuard(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        assert hubloader.download("tiny-bert") == first  # offline mode is NOT on
        from hubloader.models import BertModel

        model = BertModel.from_pretrain("tiny-bert")
    assert model.config.hidden_size == 32
    assert guard.calls == 0, "a warm call with known digests tried to open a socket"
    assert not [r for r in caplog.records if "unreachable" in r.message]


def test_s3_card_sha256_changed_is_rechecked(proxy, s3_tiny, hub_env):
    files = _card_files(s3_tiny)
    write_card(hub_env / "cards", "tiny-bert", source="s3://warm/tiny-bert", files=files)
    hubloader.download("tiny-bert")
    files[0]["sha256"] = "0" * 64  # a card promising other bytes: the cache cannot answer
    write_card(hub_env / "cards", "tiny-bert-v2", source="s3://warm/tiny-bert", files=files)
    proxy.reset()
    with pytest.raises(hubloader.IntegrityError):
        hubloader.download("tiny-bert-v2")
    assert any("list-type=2" in line for line in proxy.get_lines())


def test_s3_moving_label_one_listing_per_call(proxy, s3_tiny, hub_env):
    write_card(hub_env / "cards", "tiny-bert", source="s3://warm/tiny-bert",
               files=_card_files(s3_tiny, with_sha=False))
    first = hubloader.download("tiny-bert")
    for _ in range(2):
        proxy.reset()
        assert hubloader.download("tiny-bert") == first
        lines = proxy.get_lines()
        assert len(proxy.requests) == 1 and "list-type=2" in lines[0], proxy.requests
    proxy.reset()
    assert hubloader.download("s3://warm/tiny-bert", allow_patterns=["*.json"]) == first
    assert len(proxy.requests) == 1, proxy.requests  # one listing, no GET of a cached file


# -- the hub protocol ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def repo(hub, s3_tiny):
    files = {p: (s3_tiny / p).read_bytes() for p in ("config.json", "model.safetensors",
                                                      "vocab.txt")}
    commit = hub.add_commit("org/warm-bert", files)
    return {"commit": commit, "files": files}


@pytest.fixture
def hf_env(hub_env, hub, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    return hub_env


def test_hf_pinned_commit_warm_call_makes_no_request(hf_env, hub, repo, monkeypatch):
    uri = f"hf://org/warm-bert@{repo['commit']}"
    first = hubloader.download(uri)
    assert first.name == repo["commit"]
    hub.hits.clear()
    assert hubloader.download(uri) == first
    assert hubloader.download("hf://org/warm-bert", revision=repo["commit"]) == first
    assert hub.hits == []
    guard = SocketGuard(monkeypatch)
    assert hubloader.download(uri) == first
    assert guard.calls == 0 and hub.hits == []


def test_hf_card_revision_commit_warm_call_makes_no_request(hf_env, hub, repo, monkeypatch):
    write_card(hf_env / "cards", "warm-bert", source="hf://org/warm-bert",
               revision=repo["commit"], files=[{"path": p} for p in repo["files"]])
    first = hubloader.download("warm-bert")
    hub.hits.clear()
    guard = SocketGuard(monkeypatch)
    assert hubloader.download("warm-bert") == first
    from hubloader.models import BertModel

    assert BertModel.from_pretrain("warm-bert").config.hidden_size == 32
    assert guard.calls == 0 and hub.hits == []


def test_hf_card_with_sha256_on_main_makes_no_request(hf_env, hub, repo, monkeypatch):
    write_card(hf_env / "cards", "warm-bert", source="hf://org/warm-bert",
               files=[{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                      for p, d in repo["files"].items()])
    first = hubloader.download("warm-bert")
    hub.hits.clear()
    guard = SocketGuard(monkeypatch)
    assert hubloader.download("warm-bert") == first
    assert guard.calls == 0 and hub.hits == []


def test_hf_moving_ref_rechecked_once_per_call(hf_env, hub, repo):
    first = hubloader.download("hf://org/warm-bert")
    for _ in range(2):
        hub.hits.clear()
        assert hubloader.download("hf://org/warm-bert") == first
        assert len(hub.hits) == 1 and "/api/models/org/warm-bert/revision/main" in hub.hits[0], \
            hub.hits


# -- cached_file: the per-file warm lookup -----------------------------------------------------
def test_cached_file_folder_hub_card(hub_env, s3_tiny, monkeypatch):
    from hubloader.errors import InvalidModelNameError
    from hubloader.hub.cache_admin import remove_from_cache

    files = _card_files(s3_tiny)
    write_card(hub_env / "cards", "tiny-bert", source=s3_tiny.as_uri(), files=files)
    assert hubloader.cached_file("tiny-bert", "config.json") is None  # not fetched yet
    path = hubloader.download("tiny-bert")
    guard = SocketGuard(monkeypatch)
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        for _ in range(2):  # the second one is the memoized path
            got = hubloader.cached_file("tiny-bert", name)
            assert got == path / name and sha256_of(got) == sha256_of(s3_tiny / name)
    assert hubloader.cached_file("tiny-bert", "model.onnx") is None
    with pytest.raises(InvalidModelNameError):
        hubloader.cached_file("tiny-bert", "../../source.json")
    assert hubloader.cached_file(s3_tiny, "config.json") == s3_tiny / "config.json"  # in place
    assert guard.calls == 0

    files[0]["sha256"] = "0" * 64  # a card promising other bytes than the cached ones
    write_card(hub_env / "cards", "tiny-bert-v2", source=s3_tiny.as_uri(), files=files)
    assert hubloader.cached_file("tiny-bert-v2", "config.json") is None
    assert hubloader.cached_file("tiny-bert-v2", "vocab.txt") == path / "vocab.txt"

    remove_from_cache("tiny-bert")
    assert hubloader.cached_file("tiny-bert", "config.json") is None  # the memo re-checks


def test_cached_file_follows_a_moved_branch(hf_env, hub):
    v1 = hub.add_commit("org/moving", {"config.json": b'{"v": 1}'})
    hubloader.download("hf://org/moving")
    first = hubloader.cached_file("hf://org/moving", "config.json")
    assert first.read_bytes() == b'{"v": 1}' and first.parent.name == v1
    assert hubloader.cached_file("hf://org/moving", "config.json", revision=v1) == first
    v2 = hub.add_commit("org/moving", {"config.json": b'{"v": 2}'})
    assert hubloader.cached_file("hf://org/moving", "config.json") == first  # as last resolved
    hubloader.download("hf://org/moving")  # re-checks main: it moved
    second = hubloader.cached_file("hf://org/moving", "config.json")
    assert second.read_bytes() == b'{"v": 2}' and second.parent.name == v2
    assert hubloader.cached_file(f"hf://org/moving@{v1}", "config.json") == first
