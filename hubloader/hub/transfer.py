"""One file from a source to its final path: stream into a temp file (resuming what a crashed
or interrupted run left), hash while streaming, verify, ``os.replace`` into place.

Bounded retries with exponential backoff and jitter; an attempt that moved bytes resets the count. Big
files go as parallel ranged GETs into per-part temp files (each resumable on its own) and are
hashed while the parts are joined. The caller holds the file's lock.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import constants
from ..errors import DiskFullError, IntegrityError, NetworkError
from .progress import byte_bar
from .sources.base import RemoteChangedError, RemoteFile, Source

__all__ = ["fetch_file", "Digests", "hash_file"]

logger = logging.getLogger(__name__)

_MIN_PART = 8 << 20
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class Digests:
    """sha256 always, plus the digests the source vouches for (md5, git blob sha1)."""

    def __init__(self, file: RemoteFile):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if file.md5 else None
        self.git = None
        if file.git_sha1 and file.size is not None:
            self.git = hashlib.sha1(usedforsecurity=False)
            self.git.update(b"blob %d\0" % file.size)

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self.git is not None:
            self.git.update(data)

    def mismatch(self, expected_sha256: str | None) -> tuple[str, str, str] | None:
        """``(algorithm, expected, actual)`` for the first digest that disagrees, else ``None``."""
        checks = [("sha256", expected_sha256 or self.file.sha256, self.sha256)]
        checks += [("md5", self.file.md5, self.md5), ("git-sha1", self.file.git_sha1, self.git)]
        for name, want, h in checks:
            if want and h is not None and h.hexdigest() != want.lower():
                return name, want.lower(), h.hexdigest()
        return None


def hash_file(path: Path, digests: Digests, *, limit: int | None = None) -> None:
    """Feed ``path``'s first ``limit`` bytes (all by default) into ``digests``."""
    remaining = limit
    with open(path, "rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(8 << 20 if remaining is None else min(8 << 20, remaining))
            if not block:
                break
            digests.update(block)
            if remaining is not None:
                remaining -= len(block)


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


def _stream(source: Source, file: RemoteFile, revision: str, path: Path, start: int,
            end: int | None, bar, digests: Digests | None) -> None:
    """Append ``[start + already-there, end)`` of ``file`` to ``path``."""
    with open(path, "ab") as fh:
        for chunk in source.iter_bytes(file, revision=revision, start=start, end=end):
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
        os.fsync(fh.fileno())


def _fetch_serial(source: Source, file: RemoteFile, revision: str, partial: Path, bar) -> Digests:
    have = _size(partial)
    if file.size is not None and have > file.size:
        partial.unlink()
        have = 0
    digests = Digests(file)
    if have:
        hash_file(partial, digests)  # resume: the prefix must be part of the digest
    if file.size is None or have < file.size:
        _stream(source, file, revision, partial, have, None, bar, digests)
    return digests


def _fetch_parallel(source: Source, file: RemoteFile, revision: str, partial: Path, bar,
                    workers: int) -> Digests:
    size = int(file.size or 0)
    count = max(1, min(workers, -(-size // _MIN_PART)))
    step = -(-size // count)
    parts = [(i, i * step, min(size, (i + 1) * step)) for i in range(count)]

    def one(part):
        i, lo, hi = part
        path = partial.with_name(f"{partial.name}.part{i}")
        have = _size(path)
        if have > hi - lo:
            path.unlink()
            have = 0
        if lo + have < hi:
            _stream(source, file, revision, path, lo + have, hi, bar, None)
        return path

    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="hubloader-range") as pool:
        paths = list(pool.map(one, parts))
    digests = Digests(file)
    tmp = partial.with_name(partial.name + ".join")
    try:
        with open(tmp, "wb") as out:
            for path in paths:
                with open(path, "rb") as fh:
                    while block := fh.read(8 << 20):
                        digests.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, partial)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise _disk_full(err, partial, tmp, *paths) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)
    for path in paths:
        path.unlink(missing_ok=True)
    return digests


def _partial_bytes(partial: Path) -> int:
    return _size(partial) + sum(_size(p) for p in partial.parent.glob(partial.name + ".part*"))


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    for p in partial.parent.glob(partial.name + ".part*"):
        p.unlink(missing_ok=True)


def fetch_file(source: Source, file: RemoteFile, *, revision: str, final: Path, partial: Path,
               expected_sha256: str | None = None, progress: bool = True) -> str:
    """Fetch ``file`` to ``final`` through ``partial``; return its sha256 (hex).

    Args:
        source: where the bytes come from.
        file: the listed file (size, etag and source digests).
        revision: the resolved revision (hf commit) the bytes are read at.
        final: where the verified file ends up (replaced atomically).
        partial: the temp file, in the same filesystem; kept across failures for resuming.
        expected_sha256: a digest from a model card; wins over the source's.
        progress: show a byte bar on stderr.

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
    try:
        return _fetch_file(source, file, revision=revision, final=final, partial=partial,
                           expected_sha256=expected_sha256, progress=progress)
    except BaseException:
        if _partial_bytes(partial) == 0:  # nothing to resume from: leave no empty temp file
            _discard(partial)
        raise


def _fetch_file(source: Source, file: RemoteFile, *, revision: str, final: Path, partial: Path,
                expected_sha256: str | None, progress: bool) -> str:
    retries, backoff = constants.max_retries(), constants.retry_backoff()
    threshold, workers = constants.parallel_threshold(), constants.max_workers()
    parallel = (source.supports_ranges and file.size is not None and threshold > 0
                and workers > 1 and file.size >= threshold and not partial.exists())
    failures, integrity_failures = 0, 0
    while True:
        before = _partial_bytes(partial)
        try:
            with byte_bar(total=file.size, desc=file.path, enabled=progress, initial=before) as bar:
                if parallel:
                    digests = _fetch_parallel(source, file, revision, partial, bar, workers)
                else:
                    digests = _fetch_serial(source, file, revision, partial, bar)
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
        if problem is None:
            break
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
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, final)
    return digests.sha256.hexdigest()
