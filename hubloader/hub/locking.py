"""Inter-process locks around downloads (filelock, ``fcntl`` on POSIX).

A lock only prevents duplicate work: the atomic rename of a verified temp file is what
guarantees nobody ever sees a partial file under its final name. The OS drops the lock when
its holder dies (even on ``kill -9``), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from .. import constants
from ..errors import LockTimeoutError

__all__ = ["file_lock", "job_lock"]

logger = logging.getLogger(__name__)


def _owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as its holder wrote it (``pid 123 on host``), or ``unknown``."""
    try:
        return _owner_file(lock_path).read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float | None = None,
              what: str | None = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created if needed).

    A process that has to wait logs it (INFO, naming ``what`` and the holder's pid and host
    when the holder recorded them in ``<lock>.owner``).

    Args:
        path: the lock file.
        timeout: seconds to wait; ``None``: ``HUBLOADER_LOCK_TIMEOUT`` (default 600);
            a negative value waits forever.
        what: what the lock guards, for messages (default: the lock file).

    Raises:
        LockTimeoutError: another process held the lock longer than ``timeout``.
    """
    import filelock

    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    wait = constants.lock_timeout() if timeout is None else timeout
    lock = filelock.FileLock(str(lock_path), timeout=wait)
    label = what or str(lock_path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = _holder(lock_path)
        logger.info("waiting for %s: another process (%s) is fetching it; giving up after "
                    "%.0f s (HUBLOADER_LOCK_TIMEOUT)", label, holder, wait)
        started = time.monotonic()
        try:
            lock.acquire(timeout=wait)
        except filelock.Timeout as err:
            raise LockTimeoutError(
                f"waited {wait:.0f} s for {label} ({lock_path}), held by another process "
                f"({_holder(lock_path)}) that is downloading the same file; wait for it, raise "
                "HUBLOADER_LOCK_TIMEOUT, or stop that process"
            ) from err
        logger.info("%s is free after %.1f s of waiting", label, time.monotonic() - started)
    owner = _owner_file(lock_path)
    try:
        owner.write_text(f"pid {os.getpid()} on {socket.gethostname()}", encoding="utf-8")
    except OSError:  # the record is a courtesy; the lock itself is what counts
        pass
    logger.debug("locked %s", lock_path)
    try:
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


@contextlib.contextmanager
def job_lock(path: str | os.PathLike, *, what: str) -> Iterator[bool]:
    """Take turns at a whole job (fetching a snapshot) that finer locks already make safe.

    Processes that arrive while another does the job wait for it, then find its result
    instead of repeating the preliminaries (importing a client, listing the source). Waiting
    longer than ``HUBLOADER_LOCK_TIMEOUT`` is not an error here: the caller goes on without
    the turn (yields ``False``) and the per-file locks still keep each file fetched once.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, what=what))
            held = True
        except LockTimeoutError:
            logger.warning("%s is still being fetched by another process after %.0f s "
                           "(HUBLOADER_LOCK_TIMEOUT); going on alongside it: each file is "
                           "still fetched once", what, constants.lock_timeout())
            held = False
        yield held
