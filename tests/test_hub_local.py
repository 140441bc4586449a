"""Folder hubs through the cache: card sources, HUBLOADER_ENDPOINT, download_path, integrity,
offline (sockets disabled), disk full, and loading a model from what was fetched."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest
import torch

import hubloader
from hubloader.errors import (DiskFullError, IntegrityError, LocalEntryNotFoundError,
                              ModelNotFoundError, RemoteNotFoundError)
from hubloader.hub import cache, partials
from hub_helpers import make_tiny_bert, run_py, sha256_of, write_card


@pytest.fixture
def folder_hub(hub_env):
    """A folder hub holding a tiny BERT under <hub>/tiny-bert/ plus a card pointing at it."""
    hub = hub_env / "hub"
    make_tiny_bert(hub / "tiny-bert")
    (hub / "tiny-bert" / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(100)))
    (hub / "tiny-bert" / "model.onnx").write_bytes(b"not fetched by default")
    files = [{"path": p, "size": (hub / "tiny-bert" / p).stat().st_size,
              "sha256": sha256_of(hub / "tiny-bert" / p)}
             for p in ("config.json", "model.safetensors", "vocab.txt")]
    write_card(hub_env / "cards", "tiny-bert", source=(hub / "tiny-bert").as_uri(), files=files)
    return hub


def test_card_source_goes_through_cache_and_loads(folder_hub, hub_env):
    path = hubloader.download("tiny-bert")
    home = hub_env / "home"
    assert home in path.parents, "a card's folder source is cached, not used in place"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors",
                                                      "vocab.txt"]
    for name in ("config.json", "model.safetensors"):
        assert sha256_of(path / name) == sha256_of(folder_hub / "tiny-bert" / name)
    manifest = json.loads((path.parents[1] / "manifests" / "main.json").read_text())
    assert manifest["complete"] is True
    assert manifest["files"]["model.safetensors"]["sha256"] == sha256_of(path / "model.safetensors")
    assert not list((path.parents[1] / "partial").iterdir()), "no temp file is left behind"

    from hubloader.models import BertModel

    model = BertModel.from_pretrain("tiny-bert")
    reference = BertModel.from_pretrain(folder_hub / "tiny-bert")
    ids = torch.tensor([[1, 5, 7, 2]])
    model.eval(), reference.eval()
    out, ref = model(ids)["hidden_states"], reference(ids)["hidden_states"]
    assert torch.equal(out, ref)


def test_warm_cache_reads_nothing(folder_hub):
    first = hubloader.download("tiny-bert")
    weights = first / "model.safetensors"
    inode = weights.stat().st_ino
    again = hubloader.download("tiny-bert")
    assert again == first and weights.stat().st_ino == inode, "warm cache rewrote the file"


def test_changed_source_is_refetched(folder_hub, hub_env):
    write_card(hub_env / "cards", "tiny-bert", source=(folder_hub / "tiny-bert").as_uri())
    first = hubloader.download("tiny-bert")
    original = (first / "vocab.txt").read_text()
    assert original != "changed\n"
    (folder_hub / "tiny-bert" / "vocab.txt").write_text("changed\n")
    second = hubloader.download("tiny-bert")
    assert (second / "vocab.txt").read_text() == "changed\n"


def test_default_selection_skips_exports(folder_hub, hub_env):
    write_card(hub_env / "cards", "tiny-bert", source=(folder_hub / "tiny-bert").as_uri())
    path = hubloader.download("tiny-bert")
    assert (path / "model.safetensors").is_file() and not (path / "model.onnx").exists()
    only = hubloader.download("tiny-bert", allow_patterns="*.onnx")
    assert (only / "model.onnx").read_bytes() == b"not fetched by default"


def test_endpoint_overrides_card_source(folder_hub, hub_env, monkeypatch):
    mirror = hub_env / "mirror"
    shutil.copytree(folder_hub / "tiny-bert", mirror / "tiny-bert")
    shutil.rmtree(folder_hub)  # the card's own source is gone: only the endpoint can serve it
    monkeypatch.setenv("HUBLOADER_ENDPOINT", mirror.as_uri())
    path = hubloader.download("tiny-bert")
    assert sha256_of(path / "model.safetensors") == sha256_of(mirror / "tiny-bert" / "model.safetensors")
    assert "mirror" in json.loads((path.parents[1] / "source.json").read_text())["uri"]


def test_explicit_uri_wins_and_local_dir_in_place(folder_hub, hub_env, monkeypatch):
    monkeypatch.setenv("HUBLOADER_ENDPOINT", (hub_env / "nowhere").as_uri())
    local = folder_hub / "tiny-bert"
    assert hubloader.download(str(local)) == local
    assert hubloader.download(local.as_uri()) == local  # file:// is a local directory


def test_download_path_layout(folder_hub, hub_env):
    target = hub_env / "checkpoints"
    path = hubloader.download("tiny-bert", download_path=target)
    assert path == target / "tiny-bert"
    assert (path / "config.json").is_file()
    assert not (hub_env / "home").exists(), "download_path bypasses the managed cache"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]

    from hubloader.load.resolve import resolve_model_dir

    shutil.rmtree(folder_hub)  # in place now: no source needed any more
    assert resolve_model_dir("tiny-bert", download_path=target) == path
    assert hubloader.download("tiny-bert", download_path=target, offline=True) == path

    by_hand = hub_env / "by-hand"
    make_tiny_bert(by_hand / "tiny-bert")
    assert hubloader.download("tiny-bert", download_path=by_hand) == by_hand / "tiny-bert"


def test_wrong_card_sha256_raises_and_writes_nothing(folder_hub, hub_env):
    p = folder_hub / "tiny-bert" / "model.safetensors"
    write_card(hub_env / "cards", "tiny-bert", source=(folder_hub / "tiny-bert").as_uri(),
               files=[{"path": "config.json"}, {"path": "model.safetensors", "sha256": "0" * 64}])
    with pytest.raises(IntegrityError) as info:
        hubloader.download("tiny-bert")
    assert info.value.path == "model.safetensors" and info.value.expected == "0" * 64
    assert info.value.actual == sha256_of(p)
    assert isinstance(info.value, ValueError)
    snap = cache.managed_paths(p.parent.as_uri(), "main")
    assert not snap.file("model.safetensors").exists()
    assert not list((snap.meta_dir / "partial").iterdir())
    assert not cache.read_manifest(snap).get("complete")


def test_card_file_missing_at_source(folder_hub, hub_env):
    write_card(hub_env / "cards", "tiny-bert", source=(folder_hub / "tiny-bert").as_uri(),
               files=[{"path": "config.json"}, {"path": "tokenizer.json"}])
    with pytest.raises(RemoteNotFoundError, match="tokenizer.json"):
        hubloader.download("tiny-bert")


def test_unknown_card_and_sourceless_card(hub_env):
    with pytest.raises(ModelNotFoundError):
        hubloader.download("no-such-model")
    write_card(hub_env / "cards", "orphan")
    with pytest.raises(ModelNotFoundError, match="HUBLOADER_ENDPOINT"):
        hubloader.download("orphan")


def test_offline_warm_cache_with_sockets_disabled(folder_hub, monkeypatch):
    path = hubloader.download("tiny-bert")

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    shutil.rmtree(folder_hub)  # the source is gone too
    assert hubloader.download("tiny-bert") == path
    from hubloader.models import BertModel

    model = BertModel.from_pretrain("tiny-bert")
    assert model(torch.tensor([[1, 2, 3]]))["hidden_states"].shape[-1] == 32


def test_offline_cold_cache(folder_hub):
    with pytest.raises(LocalEntryNotFoundError, match="offline") as info:
        hubloader.download("tiny-bert", offline=True)
    assert isinstance(info.value, FileNotFoundError)


def test_incomplete_snapshot_not_served_offline(folder_hub):
    path = hubloader.download("tiny-bert")
    (path / "model.safetensors").unlink()
    with pytest.raises(LocalEntryNotFoundError):
        hubloader.download("tiny-bert", offline=True)
    assert hubloader.download("tiny-bert") == path  # online: the missing file comes back
    assert (path / "model.safetensors").is_file()


def test_disk_full_is_typed_and_leaves_nothing(folder_hub, hub_env):
    """A real write error from the kernel: the download runs under a file-size limit that the
    weights exceed (EFBIG, as a quota or a full disk would stop it)."""
    from hubloader.hub.sources import open_source

    src = open_source((folder_hub / "tiny-bert").as_uri())
    snap = cache.managed_paths(src.uri, "main")
    code = ("import resource, signal, hubloader\n"
            "from hubloader.errors import DiskFullError\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))\n"
            "try:\n"
            "    hubloader.download('tiny-bert')\n"
            "except DiskFullError as err:\n"
            "    assert isinstance(err, OSError) and 'HUBLOADER_HOME' in str(err), err\n"
            "    print('typed')\n")
    done = run_py(code)
    assert done.stdout.strip() == "typed", done.stderr
    assert not snap.file("model.safetensors").exists()
    partial_dir = snap.meta_dir / "partial"
    assert not partial_dir.exists() or list(partial_dir.iterdir()) == [], \
        "a temp file was left behind"
    assert hubloader.download("tiny-bert") == snap.snapshot_dir  # recovers once space is back


def test_source_changing_after_listing_is_listed_again(folder_hub, hub_env):
    """A real file is rewritten between the listing and the read: the stale listing is
    dropped (no partial kept, nothing mixed) and the new content is fetched."""
    from hubloader.hub.snapshot import SnapshotRequest, fetch_snapshot
    from hubloader.hub.sources.local import LocalSource
    from hubloader.hub.sources.base import RemoteChangedError

    vocab = folder_hub / "tiny-bert" / "vocab.txt"

    class ChangesOnce(LocalSource):
        listed = 0

        def list_files(self, revision):
            listing = super().list_files(revision)
            ChangesOnce.listed += 1
            if ChangesOnce.listed == 1:
                vocab.write_text("rewritten after listing\n")
            return listing

    source = ChangesOnce(folder_hub / "tiny-bert")
    snap = cache.managed_paths(source.uri, "main")
    path = fetch_snapshot(SnapshotRequest(source, allow_patterns=["*.txt"], progress=False))
    assert path == snap.snapshot_dir
    assert ChangesOnce.listed == 2
    assert (path / "vocab.txt").read_text() == "rewritten after listing\n"

    stale = source.list_files(None)
    vocab.write_text("changed again\n")
    from hubloader.hub.transfer import fetch_file

    file = next(f for f in stale.files if f.path == "vocab.txt")
    partial = snap.partial(file, partials.new_owner())
    with pytest.raises(RemoteChangedError):
        fetch_file(source, file, revision="main", final=hub_env / "out.txt",
                   partial=partial, progress=False)
    assert not (hub_env / "out.txt").exists() and not partial.exists()


@pytest.mark.timeout(120, method="thread")  # a hang here would outlive a signal
def test_a_range_that_ends_early_without_an_error_fails_the_attempt_and_resumes(
        hub_env, tmp_path, monkeypatch):
    """A body that stops short of its range with no error (a server closing cleanly, with no
    length to check against) fails that attempt instead of leaving the hasher waiting for
    bytes that never come; the retry resumes the range and the file comes out whole."""
    import hashlib

    from hubloader.hub.sources.local import LocalSource
    from hubloader.hub.transfer import fetch_file

    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")
    data = os.urandom(24 << 20)  # three ranges of 8 MiB
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "w.bin").write_bytes(data)

    class EndsEarlyOnce(LocalSource):
        cut = True
        starts: list[int] = []

        def iter_bytes(self, file, *, revision, start=0, end=None):
            EndsEarlyOnce.starts.append(start)
            sent = 0
            for chunk in super().iter_bytes(file, revision=revision, start=start, end=end):
                if EndsEarlyOnce.cut and start == 8 << 20 and sent >= 2 << 20:
                    EndsEarlyOnce.cut = False
                    return  # no exception: the body just ends
                sent += len(chunk)
                yield chunk

    source = EndsEarlyOnce(tmp_path / "src")
    file = next(f for f in source.list_files(None).files if f.path == "w.bin")
    digest = fetch_file(source, file, revision="main", final=tmp_path / "out.bin",
                        partial=tmp_path / "partial" / "w.incomplete", progress=False)
    assert digest == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "out.bin").read_bytes() == data
    assert not EndsEarlyOnce.cut
    # the second attempt resumed the cut range from what it had, not from its start
    assert any((8 << 20) < s < (16 << 20) for s in EndsEarlyOnce.starts), EndsEarlyOnce.starts
