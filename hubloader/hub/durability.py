"""Write-behind durability for the blob store: a verified blob is usable at once, its bytes
reach the disk in a background thread, and a mark makes a power loss before that detectable.

The hazard: after a power loss a blob can survive under its final name with its bytes never
written, and a blob under its final name is trusted without hashing. Flushing before handing
the file over would cost a whole disk write while the verified bytes are already readable from
the page cache, so the flush happens behind the caller's back, under this protocol::

    pending/<sha256>.<boot id>.<pid>    beside blobs/: an empty file, its name the whole record

1. the mark is created before the verified bytes are linked to ``blobs/<sha256>``;
2. a background thread flushes the blob (``fdatasync``), then removes the mark; while a
   snapshot is being fetched (:func:`held`) its blobs wait for its last file;
3. at interpreter exit the process waits for its pending flushes (:func:`flush`).

Journaling filesystems (ext4, xfs) commit metadata in order, so a blob that outlives a power
loss without its bytes still has its mark. :func:`recover` runs once per process and cache
before anything in the cache is trusted:

* a mark of a live process of this boot: a flush in progress, left alone;
* a mark of a dead process of this boot (``kill -9`` before its flush): the page cache still
  holds the verified bytes, so the blob is flushed and the mark dropped;
* a mark of an earlier boot: the blob is hashed again. Matching bytes are flushed and kept;
  other bytes are emptied and removed with every snapshot entry linked to them, so the next
  ``download`` fetches the file again.

Where no boot id can be read (not Linux), nothing is deferred: blobs are flushed before
they are handed over.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Iterator

from . import cache

__all__ = ["boot_id", "deferred", "mark", "drop_mark", "sync_behind", "held", "flush",
           "recover", "pending_dir", "fdatasync"]

logger = logging.getLogger(__name__)

_BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
_MARK = re.compile(r"[0-9a-f]{64}\.[0-9a-f]+\.[0-9]+")
_boot: str | None = None
_recovered: set[str] = set()
_state_lock = threading.Lock()
_queue: queue.Queue | None = None
_owner_pid: int | None = None
_hold_depth = 0  # open held() blocks in this process
_held: list[tuple[Path, Path]] = []  # flushes asked for inside them


def boot_id() -> str | None:
    """This boot's id (32 hex digits), or ``None`` where the system has none to read."""
    global _boot
    if _boot is None:
        try:
            with open(_BOOT_ID_FILE, encoding="ascii") as fh:
                _boot = fh.read().strip().replace("-", "").lower() or ""
        except OSError:
            _boot = ""
    return _boot or None


def deferred() -> bool:
    """Whether fetched blobs are flushed behind the caller (a boot id to record exists)."""
    return boot_id() is not None


def pending_dir(blobs_dir: Path) -> Path:
    """Where the marks of ``blobs_dir``'s unflushed blobs live (beside it)."""
    return blobs_dir.parent / "pending"


def _marks(folder: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(folder) if _MARK.fullmatch(n))
    except (FileNotFoundError, NotADirectoryError):
        return []


def mark(blob: Path) -> Path:
    """Create the pending mark of ``blob`` (before it is linked) and return it."""
    folder = pending_dir(blob.parent)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{blob.name}.{boot_id()}.{os.getpid()}"
    path.touch()
    return path


def drop_mark(path: Path) -> None:
    path.unlink(missing_ok=True)


def fdatasync(path: Path) -> None:
    """Flush ``path``'s bytes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _flush_one(blob: Path, mark_path: Path) -> None:
    try:
        started = time.perf_counter()
        fdatasync(blob)
        logger.debug("flushed %s in %.2f s", blob.name[:12], time.perf_counter() - started)
    except FileNotFoundError:
        pass  # removed meanwhile (cache rm / prune): nothing left to flush
    except OSError as err:  # the mark stays: recovery flushes or re-checks it later
        logger.warning("could not flush %s to disk (%s); it will be re-checked", blob,
                       err.strerror)
        return
    drop_mark(mark_path)


def _worker(q: queue.Queue) -> None:
    while True:
        blob, mark_path = q.get()
        try:
            _flush_one(blob, mark_path)
        except Exception:  # never leave flush() waiting on a task that died
            logger.exception("flushing %s failed", blob)
        finally:
            q.task_done()


def sync_behind(blob: Path, mark_path: Path) -> None:
    """Flush ``blob`` in the background, then drop ``mark_path`` (inside :func:`held`: once
    the outermost block has ended)."""
    global _queue, _owner_pid
    with _state_lock:
        if _hold_depth > 0:
            _held.append((blob, mark_path))
            return
        if _queue is None or _owner_pid != os.getpid():
            _queue, _owner_pid = queue.Queue(), os.getpid()
            threading.Thread(target=_worker, args=(_queue,), name="hubloader-flush",
                             daemon=True).start()
        q = _queue
    q.put((blob, mark_path))


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold the background flushes asked for inside the block (by any thread) until the
    outermost one ends, success or not.

    On ext4 (``data=ordered``) a flush's journal commit first writes out the blob's data, and
    every rename and link meanwhile waits for that commit: the files fetched after a flushed
    one, their manifest entries and the snapshot's links queue behind the disk. Holding the
    flushes to the snapshot's end keeps the transfers off that queue. The marks are on disk
    either way, so a crash meanwhile is recovered the same way.
    """
    global _hold_depth
    with _state_lock:
        _hold_depth += 1
    try:
        yield
    finally:
        with _state_lock:
            _hold_depth = max(0, _hold_depth - 1)  # (a forked child starts from 0)
            release = list(_held) if _hold_depth == 0 else []
            if release:
                _held.clear()
        for blob, mark_path in release:
            sync_behind(blob, mark_path)


def flush() -> None:
    """Wait until every blob this process fetched is on disk (runs at interpreter exit).

    Example:
        >>> import hubloader.hub
        >>> path = hubloader.download("bert-base-en")
        >>> hubloader.hub.flush()   # before cutting the power, say
    """
    q = _queue
    if q is None or _owner_pid != os.getpid():  # a forked child owns no flushes
        return
    started = time.perf_counter()
    q.join()
    waited = time.perf_counter() - started
    if waited > 0.05:
        logger.debug("waited %.2f s for fetched files to reach the disk", waited)


def _forget_in_child() -> None:
    global _queue, _owner_pid, _state_lock, _hold_depth, _held
    _queue, _owner_pid = None, None
    _hold_depth, _held = 0, []  # the parent's blocks and blobs: the parent flushes them
    _state_lock = threading.Lock()  # another thread may have held it at the fork


atexit.register(flush)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_everywhere(blob: Path, models_root: Path | None) -> None:
    """Empty ``blob`` (every hard link to it then fails its size check) and remove it and
    the snapshot entries under ``models_root`` that are links to it."""
    st = blob.stat()
    with open(blob, "r+b") as fh:
        fh.truncate(0)
        os.fsync(fh.fileno())
    if models_root is not None and models_root.is_dir():
        for top, _dirs, names in os.walk(models_root):
            for name in names:
                path = Path(top, name)
                try:
                    other = path.stat()
                except OSError:
                    continue
                if (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev):
                    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def recover(blobs_dir: Path | None = None, models_root: Path | None = None) -> None:
    """Settle the marks left by processes that did not finish their flushes (see the module
    text). Once per process and blob store; afterwards a set lookup. Default: the managed
    cache (``cache.blobs_root()``, ``cache.cache_root()``)."""
    if blobs_dir is None:
        blobs_dir, models_root = cache.blobs_root(), cache.cache_root()
    key = str(blobs_dir)
    if key in _recovered:
        return
    folder = pending_dir(blobs_dir)
    if _marks(folder):
        from .locking import file_lock

        try:
            with file_lock(folder / ".lock", what="the blob store's pending flushes"):
                for name in _marks(folder):
                    try:
                        _settle(folder / name, blobs_dir, models_root)
                    except FileNotFoundError:  # settled or removed meanwhile
                        drop_mark(folder / name)
        except OSError as err:
            if not (isinstance(err, PermissionError) or err.errno == errno.EROFS):
                raise
            # a cache this user may only read: nothing can be settled, and refusing it
            # would break every offline user of a shared cache
            logger.warning("cannot settle the unflushed blobs listed in %s (%s); using the "
                           "cache as it is", folder, err.strerror or err)
    _recovered.add(key)


def _settle(mark_path: Path, blobs_dir: Path, models_root: Path | None) -> None:
    sha, _, rest = mark_path.name.partition(".")
    boot, _, pid = rest.partition(".")
    this_boot = boot_id()
    if boot == this_boot and pid.isdigit() and _alive(int(pid)):
        return  # a flush in progress
    blob = blobs_dir / sha
    if not blob.exists():
        drop_mark(mark_path)
        return
    if boot != this_boot:
        logger.info("re-checking blob %s: it was not known to be on disk before a restart",
                    sha[:12])
        from ..files import sha256_file

        actual = sha256_file(blob)
        if actual != sha:
            logger.warning("blob %s lost its bytes before they reached the disk (a power loss "
                           "or crash of the system); removing it and its snapshot entries, "
                           "the next download fetches it again", blob)
            _remove_everywhere(blob, models_root)
            drop_mark(mark_path)
            return
        logger.info("blob %s: its sha256 matches; kept", sha[:12])
    fdatasync(blob)
    drop_mark(mark_path)
