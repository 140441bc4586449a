"""A symlink planted anywhere in the cache's write path (a partial, its ``.verified`` bytes, its
progress sidecar, the partial folder, a snapshot entry, a blob) is replaced or refused, never
followed: no byte is written to, or read from, the file it points at.

A read is caught by the file's access time: it is set before its modification time, which the
kernel (``relatime``, the default) moves forward on the next read.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import hubloader
from hubloader.errors import LocalEntryNotFoundError
from hubloader.hub import cache, cache_admin, partials
from hubloader.hub.sources import open_source
from hub_helpers import make_tiny_bert, sha256_of, write_card

_WEIGHTS = "model.safetensors"


@pytest.fixture
def folder_hub(hub_env):
    hub = hub_env / "hub"
    make_tiny_bert(hub / "tiny-bert")
    files = [{"path": p, "size": (hub / "tiny-bert" / p).stat().st_size,
              "sha256": sha256_of(hub / "tiny-bert" / p)} for p in ("config.json", _WEIGHTS)]
    write_card(hub_env / "cards", "tiny-bert", source=(hub / "tiny-bert").as_uri(), files=files)
    return hub


class _Outside:
    """A file outside the cache whose writes and reads are both detectable."""

    def __init__(self, path, content: bytes):
        self.path, self.content = path, content
        path.write_bytes(content)
        st = os.stat(path)
        os.utime(path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
        self.stat = os.stat(path)

    def untouched(self) -> bool:
        st = os.stat(self.path)
        return (self.path.read_bytes() == self.content and st.st_mtime_ns == self.stat.st_mtime_ns
                and st.st_atime_ns == self.stat.st_atime_ns)


def _dead_owner() -> str:
    dead = subprocess.Popen(["true"])
    dead.wait()
    return f"{partials.new_owner().split('~')[0]}~{dead.pid}~00"


def _snap(folder_hub):
    src = open_source((folder_hub / "tiny-bert").as_uri())
    weights = next(f for f in src.list_files(None).files if f.path == _WEIGHTS)
    return cache.managed_paths(src.uri, "main"), weights


def _no_links(root) -> list:
    return [p for p in root.rglob("*") if p.is_symlink()]


def _check_download(folder_hub, hub_env) -> None:
    path = hubloader.download("tiny-bert")
    for name in ("config.json", _WEIGHTS):
        entry = path / name
        assert not entry.is_symlink() and entry.is_file()
        assert entry.read_bytes() == (folder_hub / "tiny-bert" / name).read_bytes()
    assert _no_links(hub_env / "home") == []


@pytest.mark.parametrize("suffix", ["", partials.VERIFIED, partials.RANGES, partials.PARALLEL])
def test_planted_partial_links_are_never_followed(folder_hub, hub_env, suffix):
    """A dead writer's temp file (or its verified bytes, or its progress sidecar and data) that
    is a link: the next download neither appends through it nor takes its bytes."""
    snap, weights = _snap(folder_hub)
    base = snap.partial(weights, _dead_owner())
    base.parent.mkdir(parents=True)
    real = (folder_hub / "tiny-bert" / _WEIGHTS).read_bytes()
    # the verified bytes are the right ones: taking them would still read outside the cache
    content = real if suffix == partials.VERIFIED else (
        b'{"size": %d, "bounds": [[0, %d]], "done": [%d]}' % (len(real), len(real), len(real))
        if suffix == partials.RANGES else real[: len(real) // 2])
    outside = _Outside(hub_env / "outside.bin", content)
    os.symlink(outside.path, base.with_name(base.name + suffix))
    if suffix == partials.RANGES:  # its data file beside it, a real one
        base.with_name(base.name + partials.PARALLEL).write_bytes(real)
    _check_download(folder_hub, hub_env)
    assert outside.untouched()


def test_planted_partial_folder_link_is_replaced(folder_hub, hub_env):
    snap, weights = _snap(folder_hub)
    elsewhere = hub_env / "elsewhere"
    elsewhere.mkdir()
    snap.meta_dir.mkdir(parents=True)
    os.symlink(elsewhere, snap.meta_dir / "partial")
    _check_download(folder_hub, hub_env)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["config.json", _WEIGHTS])
def test_planted_snapshot_entry_link_is_not_read(folder_hub, hub_env, name):
    path = hubloader.download("tiny-bert")
    outside = _Outside(hub_env / "outside.bin", b"x" * (path / name).stat().st_size)
    (path / name).unlink()
    os.symlink(outside.path, path / name)
    with pytest.raises(LocalEntryNotFoundError):  # offline: not counted as cached
        hubloader.download("tiny-bert", offline=True)
    _check_download(folder_hub, hub_env)  # online: replaced by the verified file
    assert outside.untouched()


def test_planted_blob_link_is_not_linked_into_a_snapshot(folder_hub, hub_env):
    path = hubloader.download("tiny-bert")
    blob = cache.blobs_root() / sha256_of(path / _WEIGHTS)
    data = blob.read_bytes()
    cache_admin.remove_from_cache("tiny-bert")
    blob.unlink(missing_ok=True)
    outside = _Outside(hub_env / "outside.bin", data)
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside.path, blob)
    path = hubloader.download("tiny-bert")
    assert not (path / _WEIGHTS).is_symlink() and (path / _WEIGHTS).read_bytes() == data
    assert os.stat(path / _WEIGHTS).st_ino != os.stat(outside.path).st_ino
    assert outside.untouched()
