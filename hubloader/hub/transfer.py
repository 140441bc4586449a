"""One file from a source to its final path: stream into a temp file (resuming what a crashed
or interrupted run left), hash while streaming, verify, ``os.replace`` into place.

Bounded retries with exponential backoff and jitter; an attempt that moved bytes resets the count. Big
files go as parallel ranged GETs, one long part per worker, written in place into one temp
file (each part resumable on its own, its progress kept in a sidecar) and hashed by a thread
that follows the landed prefix.
The temp file is the transfer's own (see :mod:`.partials`): correctness never rests on the
caller's lock, which only saves duplicate work.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from .. import settings
from .._futures import results_or_cancel
from ..errors import DiskFullError, IntegrityError, NetworkError
from ..files import open_regular, read_regular, regular_size
from .partials import Heartbeat, fresh_name, range_files, saved_bytes
from .digests import Digests, hash_file
from .progress import byte_bar
from .sources.base import RemoteChangedError, RemoteFile, Source

__all__ = ["fetch_file", "saved_bytes"]

logger = logging.getLogger(__name__)

_MIN_PART = 8 << 20  # bytes per ranged GET of a parallel download, at least
_READ_BACK = 8 << 20  # bytes per read of the hash
_SYNC_EVERY = 64 << 20  # a parallel download flushes to disk in steps of this many bytes
_PERSIST_EVERY = 0.25  # seconds between writes of a parallel download's progress sidecar
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class Cancelled(Exception):
    """The caller asked the transfer to stop (its ``cancel`` event); the bytes on disk stay
    for a resume."""


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("transfer cancelled")


def _disk_full(err: OSError, target: Path, *cleanup: Path) -> DiskFullError:
    for p in cleanup:
        p.unlink(missing_ok=True)
    return DiskFullError(f"no space left on the device holding {target} ({err.strerror}); free "
                         "space, or point HUBLOADER_HOME (or download_path) at a larger disk")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _unlink_if_not_regular(path: Path) -> None:
    """Remove a link (or other non-file) planted at a temp file's name: it is replaced by a
    file of this transfer's own, never written through."""
    if regular_size(path) is None and os.path.lexists(path):
        logger.warning("%s is not a regular file; replacing it", path)
        path.unlink()


def _stream(source: Source, file: RemoteFile, revision: str, path: Path, start: int,
            end: int | None, bar, digests: Digests | None, sync: bool,
            cancel: threading.Event | None) -> None:
    """Append ``[start + already-there, end)`` of ``file`` to ``path``."""
    # never through a link planted in place of the temp file: it would write outside the cache
    with os.fdopen(open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as fh:
        for chunk in source.iter_bytes(file, revision=revision, start=start, end=end):
            _check(cancel)
            try:
                fh.write(chunk)
            except OSError as err:
                if err.errno in _DISK_FULL:
                    raise _disk_full(err, path, path) from err
                raise
            if digests is not None:
                digests.update(chunk)
            bar.update(len(chunk))
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def _fetch_serial(source: Source, file: RemoteFile, revision: str, partial: Path, bar,
                  expected_sha256: str | None, sync: bool,
                  cancel: threading.Event | None) -> Digests:
    _unlink_if_not_regular(partial)
    have = _size(partial)
    if file.size is not None and have > file.size:
        partial.unlink()
        have = 0
    digests = Digests(file, expected_sha256)
    if have:
        hash_file(partial, digests)  # resume: the prefix must be part of the digest
    if file.size is None or have < file.size:
        _stream(source, file, revision, partial, have, None, bar, digests, sync, cancel)
    return digests


class _Parts:
    """Progress of a parallel download: the file cut into one part per worker (of at least
    ``_MIN_PART`` bytes), each part's bytes written so far kept in a small sidecar file, so a
    killed download resumes each part where it stopped.

    The data goes with ``pwrite`` into one file (``<partial>.parallel``) at each part's
    offset, so no byte is written twice. A part's count is recorded only after its bytes are
    written, so a crash can lose progress but never claim bytes that are not on disk.

    Each part has a worker of its own, streaming one long range over one connection: cutting
    the file finer (the next part to the first free worker, front to back) lets the hash
    follow the network, but on a loaded machine the extra GETs and the writes interleaved
    near the hash's reads cost far more CPU than the hash's catch-up after the last byte
    (see benchmarks/RESULTS.md, scenario 9b). The hash reads each landed stretch back from
    the page cache into one buffer of its own, so no read allocates.
    """

    def __init__(self, partial: Path, size: int, workers: int):
        self.data, self.sidecar, self._tmp = self.files(partial)
        self.step = max(_MIN_PART, -(-size // workers))
        self.bounds = [(lo, min(size, lo + self.step)) for lo in range(0, size, self.step)]
        self.done = [0] * len(self.bounds)
        self.size = size
        self.cond = threading.Condition()
        self.failed = False
        self._persisted = 0.0
        self._load()

    files = staticmethod(range_files)
    saved_bytes = staticmethod(saved_bytes)

    def _load(self) -> None:
        try:
            saved = json.loads(read_regular(self.sidecar))
        except (OSError, ValueError):
            return
        if not isinstance(saved, dict):
            return
        done = saved.get("done")
        if (saved.get("size") == self.size and saved.get("part") == self.step
                and self.data.exists() and isinstance(done, list)
                and len(done) == len(self.bounds)):
            try:
                self.done = [max(0, min(int(d), hi - lo))
                             for d, (lo, hi) in zip(done, self.bounds)]
            except (TypeError, ValueError):
                self.done = [0] * len(self.bounds)

    def record(self, i: int, n: int) -> None:
        """Count ``n`` more bytes of part ``i`` as written; persist at most every
        ``_PERSIST_EVERY`` seconds (a crash then re-fetches at most that much per part)."""
        with self.cond:
            self.done[i] += n
            now = time.monotonic()
            if now - self._persisted >= _PERSIST_EVERY or self.bytes_done() == self.size:
                self._persist()
                self._persisted = now
            self.cond.notify_all()

    def _persist(self) -> None:
        self._tmp.unlink(missing_ok=True)  # a name planted meanwhile is not written through
        fd = open_regular(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"size": self.size, "part": self.step, "done": self.done}))
        os.replace(self._tmp, self.sidecar)

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self._persist()  # keep every byte written so far for the resume
            self.cond.notify_all()

    def bytes_done(self) -> int:
        return sum(self.done)

    def discard(self) -> None:
        for p in (self.data, self.sidecar, self._tmp):
            p.unlink(missing_ok=True)

    @contextlib.contextmanager
    def persisted_at_exit(self) -> Iterator[None]:
        """Write the progress sidecar once more when the parts have stopped, success or not."""
        try:
            yield
        finally:
            with self.cond:
                if self.sidecar.parent.exists():
                    self._persist()

    def hash_in_order(self, fd: int, digests: Digests, sync: bool) -> None:
        """Feed every byte into ``digests`` in file order as the parts land, read back from
        ``fd`` into one reused buffer. With ``sync``, flush what is hashed to disk in steps
        while the network is still busy, so the closing fsync has little left to do."""
        unsynced = 0  # bytes hashed since the last fdatasync
        buffer = memoryview(bytearray(_READ_BACK))
        for i, (lo, hi) in enumerate(self.bounds):
            pos = lo
            while pos < hi:
                with self.cond:
                    while lo + self.done[i] <= pos and not self.failed:
                        self.cond.wait()
                    if self.failed:
                        return
                    ready = lo + self.done[i]
                while pos < ready:
                    n = os.preadv(fd, [buffer[:min(_READ_BACK, ready - pos)]], pos)
                    if n <= 0:
                        raise OSError(errno.EIO, f"{self.data}: short read at {pos}")
                    digests.update(buffer[:n])
                    pos += n
                    unsynced += n
                    if sync and unsynced >= _SYNC_EVERY:
                        os.fdatasync(fd)
                        unsynced = 0


def _fetch_parallel(source: Source, file: RemoteFile, revision: str, partial: Path, bar,
                    workers: int, expected_sha256: str | None, sync: bool,
                    received: Callable[[], None], cancel: threading.Event | None) -> Digests:
    """Ranged GETs in parallel, part by part in file order, written in place into one
    file; the sha256 follows the landed prefix in a thread of its own (see :class:`_Parts`),
    so the digest is ready soon after the last byte lands."""
    size = int(file.size or 0)
    for p in _Parts.files(partial):
        _unlink_if_not_regular(p)
    parts = _Parts(partial, size, workers)
    fd = open_regular(parts.data, os.O_RDWR | os.O_CREAT)
    digests = Digests(file, expected_sha256)
    try:
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)

        # One writer at a time: concurrent pwrites to one file contend for its inode lock in
        # the kernel, which spins and burns the CPUs the hashing needs; waiting here sleeps.
        write_lock = threading.Lock()

        def one(i: int) -> None:
            lo, hi = parts.bounds[i]
            pos = lo + parts.done[i]
            for chunk in source.iter_bytes(file, revision=revision, start=pos, end=hi):
                if parts.failed:  # another part broke, or the caller was interrupted
                    return
                _check(cancel)
                try:
                    with write_lock:
                        os.pwrite(fd, chunk, pos)
                except OSError as err:
                    if err.errno in _DISK_FULL:
                        raise _disk_full(err, partial) from err
                    raise
                pos += len(chunk)
                parts.record(i, len(chunk))
                bar.update(len(chunk))
            if pos < hi and not parts.failed:  # a body that ended early without an error
                raise NetworkError(f"{source.describe(file.path)}: bytes {pos}-{hi - 1} of a "
                                   "range did not arrive")

        missing = [i for i, ((lo, hi), d) in enumerate(zip(parts.bounds, parts.done))
                   if lo + d < hi]
        pool = ThreadPoolExecutor(max_workers=len(missing) + 1,
                                  thread_name_prefix="hubloader-range")
        with parts.persisted_at_exit(), pool:  # the pool drains first, then the sidecar
            hasher = pool.submit(parts.hash_in_order, fd, digests, sync)
            try:
                results_or_cancel([pool.submit(one, i) for i in missing])
            except BaseException:
                parts.fail()  # keeps the progress, and stops the hasher's wait
                raise
            received()  # every byte is here; the hash may still be catching up
            hasher.result()
        if sync:
            os.fsync(fd)
    except OSError as err:
        if err.errno in _DISK_FULL:
            parts.discard()
            raise _disk_full(err, partial) from err
        raise
    finally:
        os.close(fd)
    os.replace(parts.data, partial)  # complete: now an ordinary whole temp file
    parts.discard()
    return digests


def _partial_bytes(partial: Path) -> int:
    return _size(partial) + _Parts.saved_bytes(partial)


def _discard(partial: Path) -> None:
    for p in (partial, *_Parts.files(partial)):
        p.unlink(missing_ok=True)


def fetch_file(source: Source, file: RemoteFile, *, revision: str, final: Path, partial: Path,
               expected_sha256: str | None = None, progress: bool = True,
               sync: bool = True, received: Callable[[], None] | None = None,
               cancel: threading.Event | None = None) -> str:
    """Fetch ``file`` to ``final`` through ``partial``; return its sha256 (hex).

    Args:
        source: where the bytes come from.
        file: the listed file (size, etag and source digests).
        revision: the resolved revision (hf commit) the bytes are read at.
        final: where the verified file ends up (replaced atomically).
        partial: the temp file, in the same filesystem; kept across failures for resuming.
        expected_sha256: a digest from a model card; wins over the source's.
        progress: show a byte bar on stderr.
        sync: fsync the bytes before the rename. ``False`` leaves the flush to the caller
            (the blob store flushes behind the caller's back, see :mod:`.durability`).
        received: called once every byte has arrived, before the hash of a parallel
            download has caught up and before the verification (the caller may start the
            next transfer). A retry after that point fetches without calling it again.
        cancel: once set, the transfer stops at its next chunk with :class:`Cancelled`
            (for a caller whose transfer runs in another thread than the one interrupted).

    Returns:
        The file's sha256.

    Raises:
        IntegrityError: the digest or size was wrong twice in a row (no file is left).
        NetworkError: ``HUBLOADER_MAX_RETRIES`` attempts in a row moved no bytes; the partial
            file stays, so the next call resumes.
        DiskFullError: the disk filled up; temp files are removed.
        RemoteChangedError: the object changed since it was listed (partial removed).
        RemoteNotFoundError, AccessDeniedError: final answers from the source.
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    heartbeat = Heartbeat(partial)
    try:
        with heartbeat:
            return _fetch_file(source, file, revision=revision, final=final, partial=partial,
                               expected_sha256=expected_sha256, progress=progress, sync=sync,
                               received=received or (lambda: None), cancel=cancel,
                               heartbeat=heartbeat)
    except BaseException:
        if _partial_bytes(heartbeat.partial) == 0:  # nothing to resume from: no empty temp file
            _discard(heartbeat.partial)
        raise


_CONCURRENT_TRIES = 3


def _fetch_file(source: Source, file: RemoteFile, *, revision: str, final: Path, partial: Path,
                expected_sha256: str | None, progress: bool, sync: bool,
                received: Callable[[], None], cancel: threading.Event | None,
                heartbeat: Heartbeat) -> str:
    retries, backoff = settings.max_retries(), settings.retry_backoff()
    threshold, workers = settings.parallel_threshold(), settings.max_workers()
    eligible = (source.supports_ranges and file.size is not None and threshold > 0
                and file.size >= threshold)
    parallel = eligible and not partial.exists()
    failures, integrity_failures, intrusions = 0, 0, 0
    while True:
        before = _partial_bytes(partial)
        try:
            with byte_bar(total=file.size, desc=file.path, enabled=progress, initial=before) as bar:
                if parallel:
                    digests = _fetch_parallel(source, file, revision, partial, bar, workers,
                                              expected_sha256, sync, received, cancel)
                else:
                    digests = _fetch_serial(source, file, revision, partial, bar, expected_sha256,
                                            sync, cancel)
                    received()
        except RemoteChangedError:
            _discard(partial)  # the listing is stale: the caller lists again
            raise
        except NetworkError as err:
            failures = 0 if _partial_bytes(partial) > before else failures + 1
            if failures >= retries:
                raise NetworkError(f"giving up on {source.describe(file.path)} after {failures} "
                                   f"attempts without progress: {err}. Run again to resume from "
                                   f"{_partial_bytes(partial)} bytes") from err
            # exponential backoff with jitter, so many clients throttled at once spread out
            delay = min(backoff * 2 ** (failures - 1), 10.0) * random.uniform(0.5, 1.0) \
                if failures else 0.0
            logger.warning("transfer of %s broke (%s); retrying in %.1f s", file.path, err, delay)
            time.sleep(delay)
            continue
        size = _size(partial)
        problem = None
        if file.size is not None and size != file.size:
            problem = ("size", str(file.size), str(size))
        else:
            problem = digests.mismatch(expected_sha256)
        # bytes on disk that this transfer did not write: another process wrote to its file
        # (one that took it for a dead writer's), or took the file over
        intruded = size != digests.count
        if problem is None and not intruded:
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(partial, final)
                return digests.sha256.hexdigest()
            except FileNotFoundError:
                intruded = True  # renamed away by a process that believed this one gone
        if intruded:
            _discard(partial)
            intrusions += 1
            if intrusions >= _CONCURRENT_TRIES:
                raise IntegrityError(
                    f"{source.describe(file.path)}: other processes kept writing to or taking "
                    f"over this process's temp files ({intrusions} times); the source is not at "
                    "fault. Every process sharing the cache must use the same "
                    "HUBLOADER_LOCK_LIFETIME, and the hosts' clocks must agree",
                    path=file.path)
            partial = fresh_name(partial)
            heartbeat.partial = partial
            logger.warning("%s: another process wrote to or took over this process's temp file "
                           "(a shared cache whose locks do not hold?); fetching it again into "
                           "%s", file.path, partial.name)
            parallel = eligible
            continue
        assert problem is not None  # (verified bytes either returned or counted as intruded)
        _discard(partial)
        integrity_failures += 1
        kind, want, got = problem
        if integrity_failures >= 2:
            raise IntegrityError(
                f"{source.describe(file.path)}: {kind} is {got}, expected {want}, twice in a row; "
                "the source holds a different file than promised (fix the source or the card's "
                "sha256). Nothing was written.", path=file.path, expected=want, actual=got)
        logger.warning("%s: %s mismatch (expected %s, got %s); fetching it again",
                       file.path, kind, want, got)
