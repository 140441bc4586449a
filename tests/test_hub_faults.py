"""Concurrency, crashes and faults, measured at a real TCP proxy between boto3 and SeaweedFS:
8 processes fetch exactly once, ``kill -9`` resumes from the byte offset on disk, cut
connections resume in-process, corrupted bytes are caught and re-fetched, big files go as
parallel ranged GETs, and a held lock times out with a typed error."""

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
from hubloader.errors import IntegrityError, LockTimeoutError
from hubloader.hub import cache
from hubloader.hub.sources import RemoteFile
from hub_helpers import WORKTREE, sha256_of, upload_random_model, write_card

SIZE = 16 << 20
WEIGHTS_KEY = "/faults/big/model.safetensors"


@pytest.fixture(scope="module")
def big_blob(weed, tmp_path_factory):
    """16 MiB of seeded random bytes at s3://faults/big/model.safetensors (+ a config.json)."""
    return upload_random_model(weed, "faults", "big", tmp_path_factory.mktemp("big"), size=SIZE, seed=0)


def _weights_gets(proxy) -> int:
    return sum(1 for line in proxy.get_lines() if WEIGHTS_KEY in line)


def _snapshot(proxy_url_unused=None) -> cache.SnapshotPaths:
    return cache.managed_paths("s3://faults/big/", "main")


def _env(extra=None) -> dict:
    env = {k: v for k, v in os.environ.items()}
    env.update(extra or {})
    return env


WORKER = """
import os, sys, time, pathlib
import hubloader, boto3, botocore  # pay import costs before the start line
pathlib.Path(sys.argv[1]).touch()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
print(hubloader.download("s3://faults/big"))
"""


def _run_together(code: str, tmp_path, n: int = 8) -> list[str]:
    """Start ``n`` processes running ``code``; once all have imported (each touches its
    ready file), release them at once (a go file). Returns their stdouts."""
    go = tmp_path / "go"
    procs = []
    for i in range(n):
        ready = tmp_path / f"ready{i}"
        procs.append((ready, subprocess.Popen([sys.executable, "-c", code, str(ready), str(go)],
                                              env=_env({"PYTHONPATH": str(WORKTREE)}),
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r, _ in procs):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs]
        time.sleep(0.05)
    go.touch()
    outs = []
    for _, p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


def test_eight_processes_fetch_exactly_once(proxy, big_blob, tmp_path):
    proxy.throttle_bps = 8 << 20  # ~2 s for the weights: every process is waiting meanwhile
    outs = _run_together(WORKER, tmp_path)
    assert len(set(outs)) == 1
    path = _snapshot().snapshot_dir
    assert outs[0] == str(path)
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    assert _weights_gets(proxy) == 1, proxy.get_lines()
    # every byte the server sent: one copy of the weights, plus 8 listings and headers
    print(f"8 processes: server sent {proxy.down_bytes:,} bytes for a {SIZE:,}-byte file")
    assert SIZE <= proxy.down_bytes < SIZE + (512 << 10)


CARD_WORKER = """
import json, os, sys, time, pathlib
import hubloader  # botocore is not imported here: only a process that fetches needs it
pathlib.Path(sys.argv[1]).touch()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
path = hubloader.download("big-card")
print(json.dumps({"path": str(path), "client": "botocore" in sys.modules}))
"""


def test_eight_processes_with_card_digests_list_once_and_waiters_need_no_client(
        proxy, big_blob, hub_env, tmp_path):
    """With the card's sha256s, processes that arrive during a fetch wait for the whole
    snapshot and then take it from the cache: one listing, one GET of the weights, and only
    the fetching process ever imports botocore."""
    write_card(hub_env / "cards", "big-card", source="s3://faults/big",
               files=[{"path": p, "size": (big_blob / p).stat().st_size,
                       "sha256": sha256_of(big_blob / p)}
                      for p in ("config.json", "model.safetensors")])
    proxy.throttle_bps = 8 << 20  # ~2 s for the weights: the others arrive meanwhile
    reports = [json.loads(out.splitlines()[-1]) for out in _run_together(CARD_WORKER, tmp_path)]
    assert {r["path"] for r in reports} == {str(_snapshot().snapshot_dir)}
    assert sha256_of(_snapshot().file("model.safetensors")) == sha256_of(big_blob / "model.safetensors")
    assert _weights_gets(proxy) == 1, proxy.get_lines()
    listings = [line for line in proxy.get_lines() if "list-type=2" in line]
    assert len(listings) == 1, listings
    assert sum(r["client"] for r in reports) == 1, reports


KILLABLE = """
import hubloader
hubloader.download("s3://faults/big")
"""


def test_kill_9_resumes_from_offset(proxy, big_blob):
    proxy.throttle_bps = 4 << 20
    child = subprocess.Popen([sys.executable, "-c", KILLABLE],
                             env=_env({"PYTHONPATH": str(WORKTREE)}),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial_dir = _snapshot().meta_dir / "partial"
    deadline = time.monotonic() + 60
    try:
        while True:
            parts = list(partial_dir.glob("*.incomplete")) if partial_dir.exists() else []
            if parts and parts[0].stat().st_size >= (3 << 20):
                break
            assert child.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    have = parts[0].stat().st_size
    assert 0 < have < SIZE
    assert not _snapshot().file("model.safetensors").exists(), "a partial file under a final name"

    proxy.reset()
    proxy.throttle_bps = None
    path = hubloader.download("s3://faults/big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    assert f"bytes={have}-" in proxy.range_headers()
    print(f"kill -9 at {have:,} bytes; resume fetched {proxy.down_bytes:,} bytes")
    assert SIZE - have <= proxy.down_bytes < SIZE - have + (256 << 10)
    assert not list(partial_dir.glob("*.incomplete"))


def test_cut_connections_resume_in_process(proxy, big_blob, caplog):
    proxy.cut_after, proxy.cut_times = 5 << 20, 2
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        path = hubloader.download("s3://faults/big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    ranges = proxy.range_headers()
    assert len(ranges) == 2 and all(r.startswith("bytes=") and r.endswith("-") for r in ranges)
    assert proxy.down_bytes < SIZE + (512 << 10), "a retry started over instead of resuming"
    assert sum("retrying" in r.message for r in caplog.records) == 2


def test_corrupted_transfer_is_refetched(proxy, big_blob, hub_env, caplog):
    write_card(hub_env / "cards", "big", source="s3://faults/big",
               files=[{"path": "config.json"},
                      {"path": "model.safetensors",
                       "sha256": sha256_of(big_blob / "model.safetensors")}])
    proxy.corrupt_at, proxy.corrupt_times = 3 << 20, 1
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        path = hubloader.download("big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    assert _weights_gets(proxy) == 2
    assert any("mismatch" in r.message for r in caplog.records)


def test_wrong_bytes_at_source_raise_integrity_error(proxy, weed, big_blob, hub_env):
    weed.client().put_object(Bucket="faults", Key="evil/model.safetensors", Body=b"\0" * 4096)
    write_card(hub_env / "cards", "evil", source="s3://faults/evil",
               files=[{"path": "model.safetensors",
                       "sha256": sha256_of(big_blob / "model.safetensors")}])
    with pytest.raises(IntegrityError, match="twice") as info:
        hubloader.download("evil")
    assert info.value.actual == sha256_of_bytes(b"\0" * 4096)
    assert sum(1 for line in proxy.get_lines() if "/faults/evil/model.safetensors" in line) == 2
    snap = cache.managed_paths("s3://faults/evil/", "main")
    assert not snap.file("model.safetensors").exists()
    assert not list((snap.meta_dir / "partial").iterdir())


def sha256_of_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_parallel_ranged_gets(proxy, big_blob, monkeypatch):
    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")
    monkeypatch.setenv("HUBLOADER_MAX_WORKERS", "4")
    path = hubloader.download("s3://faults/big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    half = SIZE // 2
    assert sorted(proxy.range_headers()) == sorted([f"bytes=0-{half - 1}",
                                                    f"bytes={half}-{SIZE - 1}"])
    assert SIZE <= proxy.down_bytes < SIZE + (256 << 10)
    assert not list((_snapshot().meta_dir / "partial").iterdir())


def test_one_worker_is_one_whole_get_hashed_alongside(proxy, big_blob, monkeypatch):
    """HUBLOADER_MAX_WORKERS=1: one GET for the whole file (the sha256 still runs in a thread
    of its own behind the writes), and the bytes are the source's."""
    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")
    monkeypatch.setenv("HUBLOADER_MAX_WORKERS", "1")
    path = hubloader.download("s3://faults/big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    assert proxy.range_headers() == [f"bytes=0-{SIZE - 1}"]
    assert SIZE <= proxy.down_bytes < SIZE + (256 << 10)
    assert not list((_snapshot().meta_dir / "partial").iterdir())


HOLDER = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1]); lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_held_lock_times_out_then_crash_releases_it(proxy, big_blob, monkeypatch):
    lock_path = _snapshot().lock("config.json")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "0.5")
        with pytest.raises(LockTimeoutError, match="HUBLOADER_LOCK_TIMEOUT") as info:
            hubloader.download("s3://faults/big")
        assert isinstance(info.value, TimeoutError)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    path = hubloader.download("s3://faults/big")  # the dead holder's lock is gone
    assert (path / "config.json").is_file()


HUBLOADER_HOLDER = """
import os, sys, time
from hubloader.hub.locking import file_lock
with file_lock(sys.argv[1]):
    print("held", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def _holder(lock_path, release):
    return subprocess.Popen([sys.executable, "-c", HUBLOADER_HOLDER, str(lock_path), str(release)],
                            stdout=subprocess.PIPE, text=True,
                            env=_env({"PYTHONPATH": str(WORKTREE)}))


def test_waiting_process_logs_file_and_holder(proxy, big_blob, monkeypatch, caplog, tmp_path):
    holder = _holder(_snapshot().lock("config.json"), tmp_path / "release")
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "0.5")
        with caplog.at_level(logging.INFO, logger="hubloader"):
            with pytest.raises(LockTimeoutError) as info:
                hubloader.download("s3://faults/big")
        waits = [r for r in caplog.records if r.getMessage().startswith("waiting for")]
        assert len(waits) == 1 and waits[0].levelno == logging.INFO
        assert "s3://faults/big/config.json" in waits[0].getMessage()
        assert f"pid {holder.pid}" in waits[0].getMessage()
        assert f"pid {holder.pid}" in str(info.value) and "config.json" in str(info.value)
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)


def test_waiter_proceeds_when_holder_finishes(proxy, big_blob, caplog, tmp_path):
    import threading

    holder = _holder(_snapshot().lock("config.json"), tmp_path / "release")
    result = {}
    try:
        assert holder.stdout.readline().strip() == "held"
        with caplog.at_level(logging.INFO, logger="hubloader"):
            waiter = threading.Thread(target=lambda: result.update(
                path=hubloader.download("s3://faults/big", allow_patterns=["*.json"])))
            waiter.start()
            deadline = time.monotonic() + 60
            while not any(r.getMessage().startswith("waiting for") for r in caplog.records):
                assert time.monotonic() < deadline and waiter.is_alive(), "the waiter never waited"
                time.sleep(0.02)
            (tmp_path / "release").touch()
            waiter.join(timeout=60)
        assert (result["path"] / "config.json").is_file()
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("waiting for") and f"pid {holder.pid}" in m for m in messages)
        assert any("is free after" in m for m in messages)
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)


def test_stuck_snapshot_fetch_lock_is_waited_out_not_fatal(proxy, big_blob, monkeypatch, caplog,
                                                           tmp_path):
    """The whole-snapshot turn only saves work: a process stuck holding it delays others by
    HUBLOADER_LOCK_TIMEOUT, after which they fetch anyway (per-file locks still guard)."""
    holder = _holder(_snapshot().fetch_lock, tmp_path / "release")
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "0.5")
        with caplog.at_level(logging.INFO, logger="hubloader"):
            path = hubloader.download("s3://faults/big")
        assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
        assert _weights_gets(proxy) == 1
        waited = [r for r in caplog.records if r.getMessage().startswith("waiting for")]
        assert len(waited) == 1 and f"pid {holder.pid}" in waited[0].getMessage()
        went_on = [r for r in caplog.records if "going on alongside it" in r.getMessage()]
        assert len(went_on) == 1 and went_on[0].levelno == logging.WARNING
        assert holder.poll() is None  # the holder was still in its turn the whole time
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)


def test_waiters_for_a_snapshot_fetch_do_not_take_the_turn(tmp_path):
    """wait_while_held: False at once when nobody fetches; while a fetch runs, every waiter
    blocks, and when it ends they all return True holding nothing (they only look at the
    result), so the turn is free for whoever must fetch next."""
    import filelock
    import threading

    from hubloader.hub.locking import job_lock, wait_while_held

    lock_path = tmp_path / "locks" / "main.fetch.lock"
    assert wait_while_held(lock_path, what="free") is False
    holder = _holder(lock_path, tmp_path / "release")
    try:
        assert holder.stdout.readline().strip() == "held"
        with job_lock(lock_path, what="busy", wait=False) as held:
            assert held is False  # no wait: going on alongside the holder
        results = []
        waiters = [threading.Thread(target=lambda: results.append(
            wait_while_held(lock_path, what="busy"))) for _ in range(3)]
        for w in waiters:
            w.start()
        time.sleep(0.3)
        assert results == [] and all(w.is_alive() for w in waiters)
        (tmp_path / "release").touch()
        for w in waiters:
            w.join(timeout=30)
        assert results == [True, True, True]
        probe = filelock.FileLock(str(lock_path))
        probe.acquire(timeout=0)  # raises Timeout if a waiter had kept the turn
        probe.release()
    finally:
        (tmp_path / "release").touch()
        holder.wait(timeout=30)


def test_next_file_waits_for_the_last_byte_of_the_previous_one(proxy, big_blob, monkeypatch):
    """Files are pipelined (the next transfer starts while the previous file is hashed and
    stored) but transfers never overlap: with config.json's first response stalled into a
    read timeout, the weights' GET comes only after config.json's retry has brought it in."""
    monkeypatch.setenv("HUBLOADER_TIMEOUT", "1")
    proxy.stall = ("/faults/big/config.json", 10, 1)
    path = hubloader.download("s3://faults/big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    gets = [g for g in proxy.get_lines() if "/faults/big/" in g]  # not the listing
    order = [("config" if "config.json" in g else "weights") for g in gets]
    assert order == ["config", "config", "weights"], gets


def test_a_failing_file_fails_the_pipelined_download(proxy, big_blob, hub_env):
    write_card(hub_env / "cards", "liar", source="s3://faults/big",
               files=[{"path": "config.json", "sha256": "0" * 64},
                      {"path": "model.safetensors",
                       "sha256": sha256_of(big_blob / "model.safetensors")}])
    with pytest.raises(IntegrityError, match="twice") as info:
        hubloader.download("liar")
    assert info.value.path == "config.json"
    snap = _snapshot()
    assert not snap.file("config.json").exists()
    # the failed file leaves no bytes; the weights' transfer, stopped mid-way when the load
    # is heavy, may keep a prefix for the resume, as after Ctrl-C
    weights = (big_blob / "model.safetensors").read_bytes()
    for p in (snap.meta_dir / "partial").glob("*.incomplete"):
        assert weights.startswith(p.read_bytes()), f"{p.name} holds bytes of no resumable file"
    assert not cache.read_manifest(snap).get("complete")


INTERRUPTIBLE = """
import hubloader
try:
    hubloader.download("s3://faults/big")
except KeyboardInterrupt:
    raise SystemExit(130)
"""


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_ctrl_c_stops_a_download_at_once_and_it_resumes(proxy, big_blob, mode, monkeypatch):
    """SIGINT mid-transfer: the process stops within a chunk or two, not when the file (or
    its parallel ranges) would have finished; the bytes on disk are kept for the resume."""
    proxy.throttle_bps = 1 << 20  # per connection: the weights would take 4 s or more
    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1" if mode == "parallel" else "0")
    monkeypatch.setenv("HUBLOADER_MAX_WORKERS", "4")
    # SIGINT as a terminal sends it: Python turns it into KeyboardInterrupt unless the child
    # inherited it ignored, as commands started in the background by a script have it
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE],
                             env=_env({"PYTHONPATH": str(WORKTREE)}),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial_dir = _snapshot().meta_dir / "partial"

    def on_disk() -> int:  # a plain partial's size, or what a parallel one recorded
        total = 0
        for p in partial_dir.glob("*.incomplete*") if partial_dir.exists() else []:
            try:
                if p.name.endswith(".incomplete"):
                    total += p.stat().st_size
                elif p.name.endswith(".ranges"):
                    total += sum(json.loads(p.read_text())["done"])
            except (OSError, ValueError):  # caught mid-replace
                pass
        return total

    deadline = time.monotonic() + 60
    while on_disk() < (2 << 20):
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "no bytes arrived"
        time.sleep(0.05)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    stopped_after = time.monotonic() - sent
    assert child.returncode == 130, child.stderr.read()
    assert stopped_after < 4, f"took {stopped_after:.1f} s to stop"
    assert not _snapshot().file("model.safetensors").exists()
    assert on_disk() > 0, "the bytes fetched so far were thrown away"
    proxy.reset()
    proxy.throttle_bps = None
    path = hubloader.download("s3://faults/big")
    assert sha256_of(path / "model.safetensors") == sha256_of(big_blob / "model.safetensors")
    assert proxy.range_headers(), "the resume started over"
    assert proxy.down_bytes < SIZE
