"""A shared cache whose locks lie (Lustre, GPFS, some NFS mounts): correct bytes without
trusting the lock, soft locks that cannot wedge, one bounded wait, and a read-only cache.

A filesystem whose ``flock`` succeeds for every caller is made real in every child process
by a ``sitecustomize.py`` on ``PYTHONPATH`` that turns ``fcntl.flock`` into a no-op. The
children download from SeaweedFS through a throttling TCP proxy that counts the bytes the
server sends."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hubloader
from hubloader.errors import IntegrityError, LockTimeoutError
from hubloader.hub import cache
from hubloader.hub.transfer import fetch_file
from hub_helpers import WORKTREE, run_py, sha256_of, upload_random_model

SIZE = 15 << 20  # above boto3's 8 MiB multipart threshold: uploaded in parts
URI = "s3://shared/model"

#: a filesystem whose flock succeeds for every caller (or, HUBTEST_NO_FLOCK, fails with ENOSYS)
LYING_FLOCK = """
import errno, fcntl, os
def flock(fd, operation):
    if os.environ.get("HUBTEST_NO_FLOCK"):
        raise OSError(errno.ENOSYS, "Function not implemented")
fcntl.flock = flock
if os.environ.get("HUBTEST_TRUST_FLOCK"):  # a lie no probe can see (Lustre localflock)
    import hubloader.hub.locking as locking
    locking._probe_flock = lambda path: True
"""

WORKER = """
import logging, os, sys, time, pathlib
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
import hubloader, boto3, botocore  # pay import costs before the start line
pathlib.Path(sys.argv[1]).touch()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
print(hubloader.download(sys.argv[3]))
"""


@pytest.fixture(scope="module")
def model(weed, tmp_path_factory) -> Path:
    folder = upload_random_model(weed, "shared", "model", tmp_path_factory.mktemp("shared"),
                                 size=SIZE, seed=19)
    etag = weed.client().head_object(Bucket="shared", Key="model/model.safetensors")["ETag"]
    assert "-" in etag, f"not a multipart upload: ETag {etag}"
    return folder


@pytest.fixture
def lying(tmp_path) -> dict[str, str]:
    """The environment of a child process on a filesystem whose flock lies."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(LYING_FLOCK)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(WORKTREE)])}


def _start_together(n: int, env: dict, tmp_path: Path, uri: str = URI) -> list[subprocess.Popen]:
    """Start ``n`` workers; once all have imported, release them at once."""
    go = tmp_path / "go"
    go.unlink(missing_ok=True)
    procs, ready = [], []
    for i in range(n):
        ready.append(tmp_path / f"ready{i}-{time.monotonic_ns()}")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(ready[-1]), str(go), uri],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()
    return procs


def _finish(procs: list[subprocess.Popen]) -> tuple[list[str], str]:
    outs, errs = [], []
    for p in procs:
        out, err = p.communicate(timeout=300)
        outs.append(out.strip())
        errs.append(err)
    assert [p.returncode for p in procs] == [0] * len(procs), "\n".join(errs)
    return outs, "\n".join(errs)


def _snap() -> cache.SnapshotPaths:
    return cache.managed_paths(URI + "/", "main")


def _check_cache(model: Path, outs: list[str]) -> None:
    assert set(outs) == {str(_snap().snapshot_dir)}
    for name in ("config.json", "model.safetensors"):
        assert sha256_of(_snap().file(name)) == sha256_of(model / name)
    verify = run_py("import sys; from hubloader import cli; sys.exit(cli.main(['cache', 'verify']))")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "0 problem(s)" in verify.stdout
    assert list((_snap().meta_dir / "partial").iterdir()) == [], "a temp file was left behind"


@pytest.mark.parametrize("flock", ["lying", "missing"])
def test_four_cold_downloads_on_lying_flock(proxy, model, lying, tmp_path, flock):
    """flock succeeds for everyone (or is missing): the probe sees it, and soft locks keep the
    work single."""
    proxy.throttle_bps = 8 << 20  # ~2 s for the weights: the others arrive meanwhile
    env = {**lying, "HUBTEST_NO_FLOCK": "1"} if flock == "missing" else lying
    outs, errs = _finish(_start_together(4, env, tmp_path))
    _check_cache(model, outs)
    assert "flock does not exclude" in errs, "the lying flock was not in effect"
    print(f"4 processes, {flock} flock: server sent {proxy.down_bytes:,} bytes for {SIZE:,}")
    assert proxy.down_bytes < 2 * SIZE


def test_four_cold_downloads_trusting_a_lying_flock(proxy, model, lying, tmp_path):
    """A lie no probe can see: all four fetch at once, each into files of its own, and every
    one ends with the right bytes (the lock only ever saved work)."""
    proxy.throttle_bps = 16 << 20
    outs, errs = _finish(_start_together(4, {**lying, "HUBTEST_TRUST_FLOCK": "1"}, tmp_path))
    _check_cache(model, outs)
    assert "IntegrityError" not in errs and "different file" not in errs
    gets = sum("/shared/model/model.safetensors" in g for g in proxy.get_lines())
    assert gets >= 2, "the processes did not fetch at the same time: nothing was tested"
    print(f"4 processes trusting a lying flock: {gets} GETs of the weights, server sent "
          f"{proxy.down_bytes:,} bytes")


def _partial_bytes() -> int:
    folder = _snap().meta_dir / "partial"
    return sum(p.stat().st_size for p in folder.glob("*.incomplete")) if folder.is_dir() else 0


def test_kill_mid_download_then_three_resumers_on_lying_flock(proxy, model, lying, tmp_path):
    proxy.throttle_bps = 4 << 20
    (first,) = _start_together(1, lying, tmp_path)
    deadline = time.monotonic() + 60
    while _partial_bytes() < 4 << 20:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no bytes arrived"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    killed_at = proxy.down_bytes
    assert not _snap().file("model.safetensors").exists()
    proxy.throttle_bps = 8 << 20
    outs, errs = _finish(_start_together(3, lying, tmp_path))
    _check_cache(model, outs)
    starts = [int(r.removeprefix("bytes=").split("-")[0]) for r in proxy.range_headers()]
    assert starts and min(starts) >= 4 << 20, f"the dead process's bytes were not resumed: {starts}"
    assert f"pid {first.pid}" in errs, "the dead holder's lock was not reported as taken over"
    print(f"kill -9 after {killed_at:,} bytes, 3 resumers: {proxy.down_bytes:,} bytes in all")
    assert proxy.down_bytes < 2 * SIZE


def test_a_frozen_writer_taken_for_dead_cannot_spoil_the_bytes(proxy, model, lying, tmp_path):
    """A download frozen (SIGSTOP) past HUBLOADER_LOCK_LIFETIME counts as gone: another
    process takes over its locks and adopts its bytes. When the frozen one wakes, its late
    writes land in a file nobody uses any more; it finds its temp file gone, fetches again
    into one of its own, and says why. Both end with the right bytes, and nobody blames the
    source."""
    env = {**lying, "HUBLOADER_LOCK_LIFETIME": "2"}
    proxy.throttle_bps = 2 << 20
    (frozen,) = _start_together(1, env, tmp_path)
    resumer = None
    try:
        deadline = time.monotonic() + 60
        while _partial_bytes() < 2 << 20:
            assert frozen.poll() is None, frozen.communicate()
            assert time.monotonic() < deadline, "no bytes arrived"
            time.sleep(0.02)
        os.kill(frozen.pid, signal.SIGSTOP)
        (its_partial,) = (_snap().meta_dir / "partial").glob("*.incomplete")
        proxy.throttle_bps = 8 << 20
        (resumer,) = _start_together(1, env, tmp_path)
        while its_partial.exists():  # adopted once its heartbeat is older than the lifetime
            assert resumer.poll() is None, resumer.communicate()
            assert time.monotonic() < deadline + 60, "the frozen writer's bytes were not adopted"
            time.sleep(0.02)
        os.kill(frozen.pid, signal.SIGCONT)
        outs, errs = _finish([resumer, frozen])
    finally:
        for p in (frozen, resumer):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    _check_cache(model, outs)
    assert f"pid {frozen.pid}" in errs, "the frozen holder's locks were not reported as taken over"
    assert "another process wrote to or took over" in errs
    assert "different file" not in errs and "mismatch" not in errs
    print(f"a frozen writer taken for dead: {proxy.down_bytes:,} bytes in all")


HOLDER = """
import os, sys, time
from hubloader.hub.locking import file_lock
with file_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_soft_lock_of_a_gone_holder_is_taken_over(proxy, model, monkeypatch, caplog, how):
    """A soft lock's holder dies (kill -9: its pid is dead) or stops (SIGSTOP: its heartbeat
    stops): the next process takes the lock over, at once or after HUBLOADER_LOCK_LIFETIME,
    and names the holder; it never waits for HUBLOADER_LOCK_TIMEOUT."""
    lifetime = 2.0
    monkeypatch.setenv("HUBLOADER_SOFT_LOCKS", "1")
    monkeypatch.setenv("HUBLOADER_LOCK_LIFETIME", str(lifetime))
    monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "60")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(_snap().lock("config.json"))],
                              env={**os.environ, "PYTHONPATH": str(WORKTREE)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert Path(str(_snap().lock("config.json")) + ".lease").exists()
        os.kill(holder.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        if how == "killed":
            holder.wait(timeout=30)
        started = time.time()
        with caplog.at_level(logging.WARNING, logger="hubloader"):
            path = hubloader.download(URI)
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    assert sha256_of(path / "model.safetensors") == sha256_of(model / "model.safetensors")
    took = [r for r in caplog.records if "took over the lock" in r.getMessage()]
    assert len(took) == 1, [r.getMessage() for r in took]
    assert f"pid {holder.pid}" in took[0].getMessage() and "config.json" in took[0].getMessage()
    waited = took[0].created - started  # until the lock was taken, not the whole download
    print(f"soft lock, holder {how}: the next process went on after {waited:.1f} s")
    if how == "killed":
        assert waited < lifetime, "a dead pid on this host needs no heartbeat to expire"
    else:
        assert lifetime <= waited < lifetime + 10


def test_lock_timeout_bounds_the_whole_wait(proxy, model, monkeypatch, tmp_path):
    """Another process holds both the snapshot's fetch lock and a file's lock: the download
    gives up after HUBLOADER_LOCK_TIMEOUT in all, not that long for each lock."""
    timeout = 3.0
    holder = subprocess.Popen([sys.executable, "-c", """
import sys, time
from hubloader.hub.locking import file_lock
with file_lock(sys.argv[1]), file_lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
""", str(_snap().fetch_lock), str(_snap().lock("config.json"))],
        env={**os.environ, "PYTHONPATH": str(WORKTREE)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", str(timeout))
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="config.json"):
            hubloader.download(URI)
        waited = time.monotonic() - started
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    print(f"two held locks, HUBLOADER_LOCK_TIMEOUT={timeout:.0f}: gave up after {waited:.1f} s")
    assert timeout <= waited < 1.6 * timeout  # not a timeout per lock (2 x 3 s)


# -- a concurrent writer is not blamed on the source -------------------------------------
def _intruding_source(folder: Path, partial_of, times: int):
    """A folder source during whose transfers another process appends to the temp file."""
    from hubloader.hub.sources.local import LocalSource

    class Intruded(LocalSource):
        left = times

        def iter_bytes(self, file, *, revision, start=0, end=None):
            for i, chunk in enumerate(super().iter_bytes(file, revision=revision, start=start,
                                                         end=end)):
                yield chunk
                if i == 0 and Intruded.left > 0:
                    Intruded.left -= 1
                    run_py(f"open({str(partial_of())!r}, 'ab').write(b'x' * 100)")

    return Intruded(folder)


def _weights(tmp_path: Path) -> tuple[Path, bytes]:
    folder = tmp_path / "src"
    folder.mkdir()
    data = os.urandom(3 << 20)
    (folder / "model.safetensors").write_bytes(data)
    return folder, data


def test_a_concurrent_writer_is_not_blamed_on_the_source(hub_env, tmp_path, caplog):
    from hubloader.hub import partials

    folder, data = _weights(tmp_path)
    holder: dict[str, Path] = {}
    source = _intruding_source(folder, lambda: holder["partial"], times=1)
    (file,) = source.list_files(None).files
    snap = cache.managed_paths(source.uri, "main")
    holder["partial"] = snap.partial(file, partials.new_owner())
    final = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        fetch_file(source, file, revision="main", final=final, partial=holder["partial"],
                   progress=False)
    assert final.read_bytes() == data
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "another process wrote to or took over" in messages
    assert "mismatch" not in messages and "different file" not in messages
    assert list(holder["partial"].parent.iterdir()) == []

    # it never stops: a typed error that names the real cause
    final.unlink()
    holder["partial"] = snap.partial(file, partials.new_owner())

    def follow():  # the transfer moves to fresh temp files: the intruder follows it
        live = [p for p in holder["partial"].parent.glob("*.incomplete")]
        return live[0] if live else holder["partial"]

    source2 = _intruding_source(folder, follow, times=10)
    with pytest.raises(IntegrityError, match="source is not at fault") as info:
        fetch_file(source2, file, revision="main", final=final, partial=holder["partial"],
                   progress=False)
    assert "different file than promised" not in str(info.value)
    assert not final.exists()


# -- a read-only shared cache -------------------------------------------------------------
READ_ONLY = """
import json, sys
import hubloader
from hubloader.errors import HubLoaderError
try:
    path = hubloader.download(sys.argv[1])
    print(json.dumps({"path": str(path), "weights": (path / "model.safetensors").stat().st_size}))
except HubLoaderError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err),
                      "permission": isinstance(err, PermissionError)}))
"""


def _read_only_run(home: Path, uri: str) -> dict:
    """Run a download in a mount namespace where ``home`` (HUBLOADER_HOME) is read-only."""
    import json

    script = (f"mount --bind {home} {home} && mount -o remount,bind,ro {home} && "
              f"exec {sys.executable} -c '{READ_ONLY}' {uri}")
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                            env={**os.environ, "PYTHONPATH": str(WORKTREE)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip(), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _can_mount_read_only(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount --bind {tmp_path} {tmp_path} && "
                            f"mount -o remount,bind,ro {tmp_path} && ! touch {tmp_path}/x"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def test_read_only_cache_serves_a_complete_snapshot(proxy, weed, model, hub_env, tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no unprivileged user and mount namespaces here (unshare) to mount a "
                    "read-only cache")
    home = Path(os.environ["HUBLOADER_HOME"])
    hubloader.download(URI)  # filled where the shared cache is writable
    hubloader.hub.flush()
    weed.client().put_object(Bucket="shared", Key="other/config.json", Body=b"{}")
    served = _read_only_run(home, URI)
    assert served.get("path") == str(_snap().snapshot_dir), served
    assert served["weights"] == SIZE
    # nothing cached for this one, and no write access: a typed error that says so
    refused = _read_only_run(home, "s3://shared/other")
    assert refused.get("error") == "ReadOnlyCacheError" and refused["permission"], refused
    assert "not writable" in refused["message"] and "HUBLOADER_HOME" in refused["message"]


# -- claiming a partial download ----------------------------------------------------------
def test_only_a_gone_writers_partial_is_adopted_and_one_claimant_wins(hub_env, monkeypatch):
    import threading

    from hubloader.hub import partials
    from hubloader.hub.sources.base import RemoteFile

    monkeypatch.setenv("HUBLOADER_LOCK_LIFETIME", "5")
    snap = cache.managed_paths("s3://b/p/", "main")
    file = RemoteFile("model.safetensors", 1000, "etag")
    host = partials.new_owner().split("~")[0]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen(["true"])
    dead.wait()

    def write(owner: str, n: int, age: float = 0.0) -> Path:
        p = snap.partial(file, owner)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"a" * n)
        if age:
            os.utime(p, (time.time() - age, time.time() - age))
        return p

    try:
        alive = write(f"{host}~{live.pid}~01", 300)               # a live writer on this host
        elsewhere = write("otherhost~123~02", 500)                # another host, heartbeat fresh
        silent = write("otherhost~124~03", 200, age=10)           # another host, heartbeat old
        crashed = write(f"{host}~{dead.pid}~04", 400)             # a dead pid on this host
        mine = partials.claim(snap, file, partials.new_owner())
        assert mine.read_bytes() == b"a" * 400, "the most bytes a gone writer left"
        assert not crashed.exists() and not silent.exists()
        assert alive.read_bytes() == b"a" * 300 and elsewhere.read_bytes() == b"a" * 500
    finally:
        live.kill()
        live.wait()
    for p in (mine, alive, elsewhere):
        p.unlink()

    # a writer gone by its heartbeat only may be frozen, not dead: the adopter's file is a
    # copy, which the old writer's open file can no longer reach
    stale = write("otherhost~125~06", 600, age=10)
    with open(stale, "ab") as still_open:
        mine = partials.claim(snap, file, partials.new_owner())
        still_open.write(b"z" * 50)
    assert mine.read_bytes() == b"a" * 600 and not stale.exists()
    mine.unlink()

    # several claimants of one dead writer's bytes: exactly one gets them
    write(f"{host}~{dead.pid}~05", 1000)
    start, claimed = threading.Barrier(8), []

    def claimant() -> None:
        start.wait()
        claimed.append(partials.claim(snap, file, partials.new_owner()))

    threads = [threading.Thread(target=claimant) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sizes = sorted(p.stat().st_size if p.exists() else 0 for p in claimed)
    assert sizes == [0] * 7 + [1000], sizes


def test_heartbeat_keeps_a_running_writer_alive(hub_env, monkeypatch):
    from hubloader.hub import partials

    monkeypatch.setenv("HUBLOADER_LOCK_LIFETIME", "0.3")
    partial = hub_env / "x.otherhost~1~ab.incomplete"  # judged by its heartbeat alone
    partial.write_bytes(b"a")
    old = time.time() - 10
    os.utime(partial, (old, old))
    assert partials.writer_gone(partial)
    with partials.Heartbeat(partial):
        time.sleep(0.4)
        assert not partials.writer_gone(partial), "the heartbeat did not refresh the file"
