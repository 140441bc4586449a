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

__all__ = ["file_lock", "job_lock", "wait_while_held"]

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
              what: str | None = None, poll_interval: float = 0.05,
              wait: bool = True) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created if needed).

    A process that has to wait logs it (INFO, naming ``what`` and the holder's pid and host
    when the holder recorded them in ``<lock>.owner``).

    Args:
        path: the lock file.
        timeout: seconds to wait; ``None``: ``HUBLOADER_LOCK_TIMEOUT`` (default 600);
            a negative value waits forever.
        what: what the lock guards, for messages (default: the lock file).
        poll_interval: seconds between attempts while waiting.
        wait: ``False``: one attempt; a held lock raises at once, without the waiting log.

    Raises:
        LockTimeoutError: another process held the lock longer than ``timeout``.
    """
    import filelock

    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    limit = constants.lock_timeout() if timeout is None else timeout
    lock = filelock.FileLock(str(lock_path), timeout=limit)
    label = what or str(lock_path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as err:
        if not wait:
            raise LockTimeoutError(f"{label} ({lock_path}) is held by another process "
                                   f"({_holder(lock_path)})") from err
        holder = _holder(lock_path)
        logger.info("waiting for %s: another process (%s) is fetching it; giving up after "
                    "%.0f s (HUBLOADER_LOCK_TIMEOUT)", label, holder, limit)
        started = time.monotonic()
        try:
            lock.acquire(timeout=limit, poll_interval=poll_interval)
        except filelock.Timeout as err:
            raise LockTimeoutError(
                f"waited {limit:.0f} s for {label} ({lock_path}), held by another process "
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
def job_lock(path: str | os.PathLike, *, what: str, wait: bool = True) -> Iterator[bool]:
    """Take turns at a whole job (fetching a snapshot) that finer locks already make safe.

    Yields whether the turn is held. Not getting it is not an error: after
    ``HUBLOADER_LOCK_TIMEOUT`` (a warning), or at once with ``wait=False``, the caller goes on
    alongside the holder, and the per-file locks still keep each file fetched once. See
    :func:`wait_while_held` for processes that may only need the job's result.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(path, what=what, wait=wait))
            held = True
        except LockTimeoutError:
            if wait:
                logger.warning(_GOING_ON, what, constants.lock_timeout())
            else:
                logger.debug("%s: another process holds %s; going on alongside it", what, path)
            held = False
        yield held


_GOING_ON = ("%s is still being fetched by another process after %.0f s "
             "(HUBLOADER_LOCK_TIMEOUT); going on alongside it: each file is still fetched once")


def wait_while_held(path: str | os.PathLike, *, what: str) -> bool:
    """Wait while another process holds the job lock ``path``; ``True`` if one did.

    The lock is polled every 10 ms and let go the moment it is taken, so processes that
    want only the job's result (the finished snapshot) look at it all together instead of
    queueing through the lock one by one. Past ``HUBLOADER_LOCK_TIMEOUT`` it logs a warning
    and returns ``True`` all the same: the caller goes on without the turn.
    """
    with job_lock(path, what=what, wait=False) as free:
        if free:
            return False
    try:
        with file_lock(path, what=what, poll_interval=0.01):
            pass
    except LockTimeoutError:
        logger.warning(_GOING_ON, what, constants.lock_timeout())
    return True
