"""Inter-process locks around downloads (filelock, ``fcntl`` on POSIX).

A lock only prevents duplicate work: the atomic rename of a verified temp file is what
guarantees nobody ever sees a partial file under its final name. The OS drops the lock when
its holder dies (even on ``kill -9``), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

from .. import constants
from ..errors import LockTimeoutError

__all__ = ["file_lock"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created if needed).

    Args:
        path: the lock file.
        timeout: seconds to wait; ``None``: ``HUBLOADER_LOCK_TIMEOUT`` (default 600);
            a negative value waits forever.

    Raises:
        LockTimeoutError: another process held the lock longer than ``timeout``.
    """
    import filelock

    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    wait = constants.lock_timeout() if timeout is None else timeout
    lock = filelock.FileLock(str(lock_path), timeout=wait)
    try:
        lock.acquire()
    except filelock.Timeout as err:
        raise LockTimeoutError(
            f"waited {wait:.0f} s for {lock_path}, held by another process that is downloading "
            "the same file; wait for it, raise HUBLOADER_LOCK_TIMEOUT, or stop that process"
        ) from err
    logger.debug("locked %s", lock_path)
    try:
        yield
    finally:
        lock.release()
