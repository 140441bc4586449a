"""Write-behind durability of the blob store (hubloader.hub.durability), against a real
SeaweedFS behind a byte-counting proxy, with real subprocesses for "the next process".

A fetched blob is handed over before its bytes are flushed; a mark under ``pending/`` says
so until a background thread has flushed it. What a crash or a power loss leaves behind is a
mark of a dead process (same boot) or of an earlier boot: these tests create exactly those
marks (real files, a real dead pid, a boot id that is not this one) and check what the next
process does with them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import hubloader
from hubloader.hub import cache, durability
from hub_helpers import WORKTREE, run_py, sha256_of, upload_random_model

SIZE = 4 << 20
URI = "s3://durable/model"
WEIGHTS = "/durable/model/model.safetensors"
OTHER_BOOT = "0" * 32


@pytest.fixture(scope="module")
def model(weed, tmp_path_factory):
    return upload_random_model(weed, "durable", "model", tmp_path_factory.mktemp("durable"),
                               size=SIZE, seed=11)


def _marks() -> list[str]:
    folder = durability.pending_dir(cache.blobs_root())
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.is_dir() else []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _leave_mark(sha: str, boot: str, pid: int) -> None:
    folder = durability.pending_dir(cache.blobs_root())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sha}.{boot}.{pid}").touch()


NEXT_PROCESS = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
import hubloader
from hubloader.hub import cached_file
print("lookup:", cached_file(sys.argv[1], "model.safetensors"))
print("download:", hubloader.download(sys.argv[1]))
"""


def _next_process() -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", NEXT_PROCESS, URI], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(WORKTREE)})
    assert proc.returncode == 0, proc.stderr
    return proc


def _weights_gets(proxy) -> int:
    return sum(WEIGHTS in g for g in proxy.get_lines())


def test_blob_is_handed_over_then_flushed_and_its_mark_dropped(proxy, model, caplog):
    assert durability.deferred(), "this Linux machine has a boot id"
    caplog.set_level(logging.DEBUG, logger="hubloader.hub.durability")
    path = hubloader.download(URI)
    want = sha256_of(model / "model.safetensors")
    assert sha256_of(path / "model.safetensors") == want
    hubloader.hub.flush()
    assert _marks() == []
    flushed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("flushed")]
    assert any(want[:12] in m for m in flushed), flushed  # the weights' blob went through it
    assert (cache.blobs_root() / want).stat().st_ino == (path / "model.safetensors").stat().st_ino


def test_a_snapshots_blobs_are_flushed_after_its_last_file(proxy, model, caplog):
    """While the weights are still arriving, config.json (fetched first) is stored but not yet
    flushed: its mark stays until the snapshot is recorded, so no flush's journal commit
    holds up the rest of the download. Then both go to disk."""
    import threading
    import time

    caplog.set_level(logging.DEBUG, logger="hubloader.hub.durability")
    config = sha256_of(model / "config.json")
    weights = sha256_of(model / "model.safetensors")
    proxy.throttle_bps = 2 << 20  # the 4 MiB of weights take about 2 s
    done = threading.Thread(target=hubloader.download, args=(URI,))
    done.start()
    seen = []
    while done.is_alive():
        seen.append(_marks())
        time.sleep(0.02)
    done.join()
    during = [marks for marks in seen if any(m.startswith(config) for m in marks)]
    assert len(during) > 10, "config.json's mark stayed while the weights arrived"
    hubloader.hub.flush()
    assert _marks() == []
    flushed = " ".join(r.getMessage() for r in caplog.records if r.getMessage().startswith("flushed"))
    assert config[:12] in flushed and weights[:12] in flushed


def test_a_process_that_exits_leaves_no_mark(proxy, model):
    proc = run_py(f"import hubloader; hubloader.download({URI!r})")
    assert proc.returncode == 0, proc.stderr
    assert _marks() == [], "the exit flushed the blobs and dropped their marks"
    assert _weights_gets(proxy) == 1


def test_mark_of_a_killed_process_is_flushed_without_a_request(proxy, model):
    hubloader.download(URI)
    hubloader.hub.flush()
    want = sha256_of(model / "model.safetensors")
    _leave_mark(want, durability.boot_id(), _dead_pid())  # kill -9 before its flush
    proxy.reset()
    out = _next_process().stdout
    assert _marks() == []
    assert _weights_gets(proxy) == 0, "the page cache still held the verified bytes"
    assert "lookup: None" not in out


def test_after_a_restart_lost_bytes_are_removed_and_fetched_again(proxy, model):
    path = hubloader.download(URI)
    hubloader.hub.flush()
    want = sha256_of(model / "model.safetensors")
    blob = cache.blobs_root() / want
    with open(blob, "r+b") as fh:  # what a power loss before the flush can leave: zeros
        fh.write(bytes(SIZE))
    _leave_mark(want, OTHER_BOOT, 4242)
    proxy.reset()
    proc = _next_process()
    assert "lookup: None" in proc.stdout, proc.stdout  # the damaged copy was not offered
    assert "lost its bytes before they reached the disk" in proc.stderr
    assert _weights_gets(proxy) == 1
    assert sha256_of(path / "model.safetensors") == want
    assert sha256_of(blob) == want
    assert _marks() == []


def test_after_a_restart_intact_bytes_are_kept(proxy, model):
    hubloader.download(URI)
    hubloader.hub.flush()
    want = sha256_of(model / "model.safetensors")
    _leave_mark(want, OTHER_BOOT, 4242)
    proxy.reset()
    proc = _next_process()
    assert "its sha256 matches; kept" in proc.stderr
    assert "lookup: None" not in proc.stdout
    assert _weights_gets(proxy) == 0
    assert _marks() == []


def test_a_forked_child_flushes_its_own_blobs_and_never_waits_for_the_parents(
        proxy, model, weed, tmp_path):
    other = upload_random_model(weed, "durable", "forked", tmp_path, size=SIZE, seed=12)
    code = f"""
import os, sys
import hubloader
hubloader.download({URI!r})
pid = os.fork()
if pid == 0:
    hubloader.download("s3://durable/forked")
    sys.exit(0)  # a normal exit: atexit runs in the child
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    proc = run_py(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "child 0" in proc.stdout
    assert _marks() == []
    assert (cache.blobs_root() / sha256_of(other / "model.safetensors")).is_file()


def test_without_a_boot_id_bytes_are_flushed_before_the_rename(proxy, model):
    code = f"""
from hubloader.hub import durability
durability._BOOT_ID_FILE = "/nonexistent/boot_id"  # a system without one (not Linux)
assert not durability.deferred()
import hubloader
hubloader.download({URI!r})
"""
    proc = run_py(code)
    assert proc.returncode == 0, proc.stderr
    assert not durability.pending_dir(cache.blobs_root()).exists(), "nothing was deferred"
    assert _weights_gets(proxy) == 1
