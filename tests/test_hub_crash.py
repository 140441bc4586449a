"""``kill -9`` at several points of a download, and network faults injected by a TCP proxy
between boto3 and a real SeaweedFS (5xx throttling, connection resets, stalls).

After every kill: no truncated file under a final name; the next call resumes with ranged
requests (byte counts taken at the proxy), verifies, and leaves no temp file. Orphans of an
older object version, or abandoned for long, are removed by the next download."""

from __future__ import annotations

import json

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

import hubloader
from hubloader.errors import NetworkError
from hubloader.hub import cache, durability
from hub_helpers import WORKTREE, sha256_of, upload_random_model

SIZE = 16 << 20
KEY = "/crash/big/model.safetensors"
URI = "s3://crash/big"


@pytest.fixture(scope="module")
def big(weed, tmp_path_factory):
    return upload_random_model(weed, "crash", "big", tmp_path_factory.mktemp("crash"), size=SIZE, seed=7)


def _snap() -> cache.SnapshotPaths:
    return cache.managed_paths(URI + "/", "main")


def _partials() -> list:
    folder = _snap().meta_dir / "partial"
    return sorted(folder.glob("*.incomplete*")) if folder.is_dir() else []


CHILD = """
import os, signal, sys
import hubloader
if sys.argv[1] == "before-blob":  # die at the instant the verified weights would become a blob
    real_link = os.link
    def link(src, dst, **kw):
        if "/blobs/" in str(dst) and os.path.getsize(src) > 1 << 20:  # the weights, not config.json
            os.kill(os.getpid(), signal.SIGKILL)
        return real_link(src, dst, **kw)
    os.link = link
if sys.argv[1] == "before-snapshot-link":  # the blob is stored, the snapshot entry not yet renamed
    real = os.replace
    def replace(src, dst, **kw):
        if str(dst).endswith("model.safetensors"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, **kw)
    os.replace = replace
hubloader.download(sys.argv[2])
"""


def _start(point: str, uri: str = URI) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    return subprocess.Popen([sys.executable, "-c", CHILD, point, uri], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(child: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 60
    try:
        while not ready():
            assert child.poll() is None, f"the download ended before {what}: {child.stderr.read()}"
            assert time.monotonic() < deadline, f"never reached {what}"
            time.sleep(0.02)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def _resume_and_check(proxy, big) -> None:
    proxy.reset()
    proxy.stall = proxy.throttle_bps = None
    path = hubloader.download(URI)
    assert sha256_of(path / "model.safetensors") == sha256_of(big / "model.safetensors")
    assert _partials() == [], "a temp file was left behind"


def _no_final_truncated(big) -> None:
    final = _snap().file("model.safetensors")
    assert not final.exists() or sha256_of(final) == sha256_of(big / "model.safetensors")


def test_kill_before_any_byte(proxy, big):
    proxy.stall = ("/crash/big/config.json", 0, 1)  # the first GET gets no byte back
    child = _start("stalled")
    _kill_when(child, lambda: any("/crash/big/config.json" in g for g in proxy.get_lines()),
               "the first GET")
    assert not _snap().file("config.json").exists() and not _snap().file("model.safetensors").exists()
    assert all(p.stat().st_size == 0 for p in _partials())
    _resume_and_check(proxy, big)
    assert proxy.range_headers() == [], "nothing on disk: nothing to resume"
    assert SIZE <= proxy.down_bytes < SIZE + (256 << 10)


def test_kill_between_files(proxy, big):
    proxy.stall = (KEY, 0, 1)  # config.json completes, the weights' GET gets no byte
    child = _start("stalled")
    # config.json is stored while the weights' transfer starts (the next file's transfer
    # begins once the previous file's bytes are in): kill when both have happened
    _kill_when(child, lambda: any(KEY in g for g in proxy.get_lines())
               and _snap().file("config.json").is_file(), "the weights' GET")
    assert _snap().file("config.json").is_file()
    _no_final_truncated(big)
    _resume_and_check(proxy, big)
    gets = proxy.get_lines()
    assert not any("config.json" in g for g in gets), "a finished file was fetched again"
    assert sum(KEY in g for g in gets) == 1


def test_kill_during_parallel_ranges_resumes_each_part(proxy, big, monkeypatch):
    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")
    monkeypatch.setenv("HUBLOADER_MAX_WORKERS", "4")
    proxy.throttle_bps = 3 << 20
    child = _start("parallel")
    def done():  # bytes each range has recorded as written (the resume sidecar)
        sidecars = [p for p in _partials() if p.name.endswith(".ranges")]
        if not sidecars:
            return None
        try:
            return json.loads(sidecars[0].read_text())["done"]
        except ValueError:  # caught mid-replace
            return None

    _kill_when(child, lambda: (d := done()) is not None and len(d) == 2 and min(d) > 0
               and sum(d) >= 3 << 20, "two ranges with bytes")
    _no_final_truncated(big)
    half = SIZE // 2
    recorded = done()
    have = {"0": recorded[0], "1": recorded[1]}
    assert 0 < have["0"] < half and 0 < have["1"] < half
    # every byte between a range's start and its recorded end is really on disk
    data = next(p for p in _partials() if p.name.endswith(".parallel")).read_bytes()
    original = (big / "model.safetensors").read_bytes()
    assert data[:have["0"]] == original[:have["0"]]
    assert data[half:half + have["1"]] == original[half:half + have["1"]]
    _resume_and_check(proxy, big)
    assert sorted(proxy.range_headers()) == sorted([f"bytes={have['0']}-{half - 1}",
                                                    f"bytes={half + have['1']}-{SIZE - 1}"])
    rest = SIZE - have["0"] - have["1"]
    print(f"parallel kill: {have} on disk; resume fetched {proxy.down_bytes:,} bytes")
    assert rest <= proxy.down_bytes < rest + (256 << 10)


def _blobs() -> list:
    folder = cache.blobs_root()
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("point", ["before-blob", "before-snapshot-link"])
def test_kill_after_verifying_before_the_snapshot_entry(proxy, big, point):
    child = _start(point)
    child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    assert not _snap().file("model.safetensors").exists()
    complete = [p for p in _partials() if p.stat().st_size == SIZE]
    assert [p.name.endswith(".incomplete.verified") for p in complete] == [True], _partials()
    want = sha256_of(big / "model.safetensors")
    stored = [b.name for b in _blobs()]
    assert (want in stored) == (point == "before-snapshot-link"), stored
    assert all(b.stat().st_size in (SIZE, len('{"model_type": "bert"}')) for b in _blobs())
    # the weights' pending mark is made before their blob is linked: the kill leaves it
    marks = sorted(durability.pending_dir(cache.blobs_root()).glob("*.*.*"))
    assert want in [m.name.split(".")[0] for m in marks], marks  # (config.json's may be flushed)
    _resume_and_check(proxy, big)
    assert not any(KEY in g for g in proxy.get_lines()), "the verified bytes were fetched again"
    weights = _snap().file("model.safetensors")
    assert weights.stat().st_ino == (cache.blobs_root() / want).stat().st_ino
    assert weights.stat().st_nlink == 2, "blob + snapshot entry: no stray link left"
    # the killed process's pending mark (its blob unflushed) was settled by this process
    pending = durability.pending_dir(cache.blobs_root())
    assert not [p for p in pending.glob(f"*.{child.pid}")], "the dead process's mark stayed"
    hubloader.hub.flush()  # and this process's own blobs, flushed behind its back, are on disk
    assert not list(pending.glob("*.*.*"))


def test_orphans_of_an_older_version_and_abandoned_partials_are_removed(proxy, weed, big, hub_env):
    s3 = weed.client()
    s3.put_object(Bucket="crash", Key="orphan/model.safetensors", Body=b"v1" * (2 << 20))
    proxy.throttle_bps = 1 << 20
    child = _start("orphan", "s3://crash/orphan")
    snap = cache.managed_paths("s3://crash/orphan/", "main")
    folder = snap.meta_dir / "partial"
    _kill_when(child, lambda: folder.is_dir() and any(p.stat().st_size > 0 for p in folder.iterdir()),
               "some bytes of v1")
    (old,) = list(folder.iterdir())
    abandoned = folder / "0123456789abcdef-0123.incomplete"  # another file's, 2 days old
    abandoned.write_bytes(b"x" * 100)
    two_days = time.time() - 48 * 3600
    os.utime(abandoned, (two_days, two_days))
    s3.put_object(Bucket="crash", Key="orphan/model.safetensors", Body=b"v2" * (2 << 20))
    proxy.throttle_bps = None
    proxy.reset()
    path = hubloader.download("s3://crash/orphan")
    assert (path / "model.safetensors").read_bytes() == b"v2" * (2 << 20)
    assert proxy.range_headers() == [], "v2 must not be glued onto v1's bytes"
    assert not old.exists() and not abandoned.exists()
    assert list(folder.iterdir()) == []


# -- faults --------------------------------------------------------------------------------
def test_throttling_5xx_retried_with_backoff(proxy, big, caplog):
    proxy.fail = (KEY, 503, 3)  # boto3 retries once itself, hubloader retries the rest
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        path = hubloader.download(URI)
    assert sha256_of(path / "model.safetensors") == sha256_of(big / "model.safetensors")
    assert len([i for i in proxy.injected if i.startswith("fail")]) == 3
    assert sum(KEY in g for g in proxy.get_lines()) == 4
    assert any("SlowDown" in r.getMessage() and "retrying" in r.getMessage()
               for r in caplog.records)


def test_persistent_5xx_gives_up_naming_uri_and_cause(proxy, big, monkeypatch):
    monkeypatch.setenv("HUBLOADER_MAX_RETRIES", "3")
    proxy.fail = (KEY, 500, 1000)
    with pytest.raises(NetworkError) as info:
        hubloader.download(URI)
    message = str(info.value)
    assert "s3://crash/big/model.safetensors" in message and "InternalError" in message
    assert "after 3 attempts" in message and isinstance(info.value, ConnectionError)
    # bounded: 3 attempts, to each of which the boto3 client adds its own retries
    assert sum(KEY in g for g in proxy.get_lines()) == 3 * 3
    assert not _snap().file("model.safetensors").exists()


def test_connection_reset_resumes(proxy, big, caplog):
    proxy.reset_conn = (KEY, 10 << 20, 1)  # RST after 10 MiB of the weights' response
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        path = hubloader.download(URI)
    assert sha256_of(path / "model.safetensors") == sha256_of(big / "model.safetensors")
    assert len([i for i in proxy.injected if i.startswith("reset_conn")]) == 1
    assert sum(KEY in g for g in proxy.get_lines()) == 2
    (ranged,) = proxy.range_headers()
    # an RST drops what sat unread in the client's socket buffer (a few MiB at most): the
    # resume starts where the file on disk ends, never at zero
    have = int(ranged.removeprefix("bytes=").rstrip("-"))
    assert 0 < have <= 10 << 20
    assert proxy.down_bytes < SIZE + (10 << 20) - have + (256 << 10)
    assert any("retrying" in r.getMessage() for r in caplog.records)


def test_stall_is_a_read_timeout_then_resumes(proxy, big, monkeypatch):
    monkeypatch.setenv("HUBLOADER_TIMEOUT", "1")
    proxy.stall = (KEY, 2 << 20, 1)
    path = hubloader.download(URI)
    assert sha256_of(path / "model.safetensors") == sha256_of(big / "model.safetensors")
    assert len([i for i in proxy.injected if i.startswith("stall")]) == 1
    assert any(r.startswith("bytes=") and r != "bytes=0-" for r in proxy.range_headers())


def test_persistent_stall_and_reset_give_up(proxy, big, monkeypatch):
    monkeypatch.setenv("HUBLOADER_TIMEOUT", "1")
    monkeypatch.setenv("HUBLOADER_MAX_RETRIES", "2")
    proxy.stall = (KEY, 0, 1000)
    with pytest.raises(NetworkError, match="s3://crash/big/model.safetensors") as info:
        hubloader.download(URI)
    assert "timed out" in str(info.value).lower() or "timeout" in str(info.value).lower()
    proxy.stall = None
    proxy.reset_conn = (KEY, 0, 1000)
    with pytest.raises(NetworkError, match="s3://crash/big/model.safetensors"):
        hubloader.download(URI)
    assert not _snap().file("model.safetensors").exists()
