"""Inter-process locks around downloads: ``flock`` where it works, lock files with a heartbeat
where it does not.

A lock only prevents duplicate work. What guarantees correct bytes is elsewhere: every
transfer writes temp files of its own (:mod:`.partials`), verifies them, and renames them into
place atomically. So a lock that lies costs duplicate downloads, never a wrong file.

Which lock: on Lustre, GPFS and some NFS mounts ``flock`` succeeds for every caller. Before a
filesystem's first lock, a probe takes ``flock`` on two open files of one lock file; when both
succeed the lock excludes nothing, and this process uses soft locks there instead
(``HUBLOADER_SOFT_LOCKS=1`` forces them, for locks that hold on one node only). Where ``flock``
is missing (``ENOSYS``) the same soft locks are used. A soft lock is filelock's
``SoftFileLease``: a lock file created exclusively, whose holder refreshes it (a heartbeat)
every third of ``HUBLOADER_LOCK_LIFETIME``. A holder whose pid is dead on this host, or whose
lock file has not changed for the lifetime, is taken over, with a warning naming it.

No wait is unbounded: inside :func:`shared_wait` every lock wait draws on one
``HUBLOADER_LOCK_TIMEOUT``, however many locks a download takes.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from .. import settings
from ..errors import LockTimeoutError, ReadOnlyCacheError

__all__ = ["file_lock", "job_lock", "wait_while_held", "shared_wait", "require_writable",
           "can_write"]

logger = logging.getLogger(__name__)

_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_BUSY = {errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK}
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}
#: whether flock excludes, per filesystem (st_dev), as the probe found it in this process
_flock_excludes: dict[int, bool] = {}
class _Budget:
    """Seconds the current download may still spend waiting for other processes' locks;
    shared by the threads of one download (their contexts hold this same object)."""

    def __init__(self, seconds: float):
        self._left = seconds
        self._lock = threading.Lock()

    def left(self) -> float:
        with self._lock:
            return max(0.0, self._left)

    def spend(self, seconds: float) -> None:
        with self._lock:
            self._left -= seconds


#: the current download's lock-wait budget, see :func:`shared_wait`
_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "hubloader_lock_budget", default=None)


@contextlib.contextmanager
def shared_wait() -> Iterator[None]:
    """Make every lock wait inside the block (and in contexts copied from it, such as a
    thread pool's tasks) share one ``HUBLOADER_LOCK_TIMEOUT`` instead of each having its own.
    Only time spent waiting for another process's lock counts: this download's own
    transfers, however long, use none of it. A negative timeout waits forever."""
    limit = settings.lock_timeout()
    token = _budget.set(None if limit < 0 else _Budget(limit))
    try:
        yield
    finally:
        _budget.reset(token)


def _limit(timeout: float | None) -> float:
    """Seconds this wait may last: ``timeout`` (default ``HUBLOADER_LOCK_TIMEOUT``), cut to
    what is left of the :func:`shared_wait` budget."""
    limit = settings.lock_timeout() if timeout is None else timeout
    budget = _budget.get()
    if budget is None:
        return limit
    return budget.left() if limit < 0 else min(limit, budget.left())


def _spent_waiting(seconds: float) -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend(seconds)


def can_write(path: str | os.PathLike) -> bool:
    """Whether this process may create files at ``path`` (its nearest existing folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def require_writable(path: str | os.PathLike, *, what: str) -> None:
    """Raise :class:`ReadOnlyCacheError` unless the cache may be written at ``path``."""
    if not can_write(path):
        raise _read_only(Path(path), what, None)


def _read_only(path: Path, what: str, err: OSError | None) -> ReadOnlyCacheError:
    reason = f" ({err.strerror})" if err is not None and err.strerror else ""
    return ReadOnlyCacheError(
        f"{what} must be fetched into the cache, but {path} is not writable{reason} and the "
        "cache holds no complete, current copy; point HUBLOADER_HOME (or download_path) at a "
        "writable directory, or fetch it once where the shared cache is writable")


def _owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as its holder wrote it (``pid 123 on host``), or ``unknown``."""
    try:
        return _owner_file(lock_path).read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def _probe_flock(lock_path: Path) -> bool:
    """Whether ``flock`` excludes on ``lock_path``'s filesystem: it must refuse a second open
    file of a lock file whose first open file holds it."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform
        return False

    first = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        second = os.open(lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in _BUSY:  # another process holds it: flock excludes
                    return True
                if err.errno in _NO_FLOCK:
                    return False
                raise
            try:
                fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in _BUSY:
                    return True
                raise
            return False  # both open files got it: the lock excludes nothing
        finally:
            os.close(second)
    finally:
        os.close(first)  # also releases the probe's flock


def _uses_flock(lock_path: Path) -> bool:
    if settings.soft_locks():
        return False
    device = os.stat(lock_path.parent).st_dev
    if device not in _flock_excludes:
        works = _flock_excludes[device] = _probe_flock(lock_path)
        if not works:
            logger.warning("flock does not exclude other processes on the filesystem of %s "
                           "(it is missing, or succeeds for every caller); using lock files "
                           "with a heartbeat there (HUBLOADER_LOCK_LIFETIME "
                           "%.0f s)", lock_path.parent, settings.lock_lifetime())
    return _flock_excludes[device]


def _new_lock(lock_path: Path):
    import filelock

    if _uses_flock(lock_path):
        return filelock.UnixFileLock(str(lock_path)), False
    # a name of its own: a flock lock file is left in place on release, a lease's is not
    return filelock.SoftFileLease(str(lock_path) + ".lease",
                                  lease_duration=settings.lock_lifetime()), True


def _acquire(lock, lock_path: Path, label: str, *, timeout: float | None,
             poll_interval: float, wait: bool) -> None:
    import filelock

    try:
        lock.acquire(timeout=0)
        return
    except filelock.Timeout as err:
        if not wait:
            raise LockTimeoutError(f"{label} ({lock_path}) is held by another process "
                                   f"({_holder(lock_path)})") from err
    limit = _limit(timeout)
    logger.info("waiting for %s: another process (%s) is fetching it; giving up after "
                "%.0f s (HUBLOADER_LOCK_TIMEOUT)", label, _holder(lock_path), limit)
    started = time.monotonic()
    try:
        try:
            lock.acquire(timeout=limit, poll_interval=poll_interval)
        finally:
            _spent_waiting(time.monotonic() - started)
    except filelock.Timeout as err:
        raise LockTimeoutError(
            f"waited {time.monotonic() - started:.0f} s for {label} ({lock_path}), held by "
            f"another process ({_holder(lock_path)}) that is downloading the same file; "
            "wait for it, raise HUBLOADER_LOCK_TIMEOUT, or stop that process"
        ) from err
    logger.info("%s is free after %.1f s of waiting", label, time.monotonic() - started)


#: one lock per lock file for this process's threads: they take turns here, so the
#: inter-process wait (and its budget) is only ever for another process
_in_process: dict[str, threading.RLock] = {}
_in_process_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float | None = None,
              what: str | None = None, poll_interval: float = 0.05,
              wait: bool = True) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` (created if needed).

    A process that has to wait logs it (INFO, naming ``what`` and the holder's pid and host
    when the holder recorded them in ``<lock>.owner``). Taking over a soft lock from a holder
    that is gone logs a warning naming it.

    Args:
        path: the lock file.
        timeout: seconds to wait; ``None``: ``HUBLOADER_LOCK_TIMEOUT`` (default 600);
            a negative value waits forever. Inside :func:`shared_wait`, at most what is left
            of its budget.
        what: what the lock guards, for messages (default: the lock file).
        poll_interval: seconds between attempts while waiting.
        wait: ``False``: one attempt; a held lock raises at once, without the waiting log.

    Raises:
        LockTimeoutError: another process held the lock longer than ``timeout``.
        ReadOnlyCacheError: the lock file cannot be created here (read-only cache).
    """
    lock_path = Path(path)
    with _in_process_guard:
        turn = _in_process.setdefault(os.path.abspath(lock_path), threading.RLock())
    if not turn.acquire(blocking=wait):
        raise LockTimeoutError(f"{what or lock_path} ({lock_path}) is held by another thread "
                               "of this process")
    try:
        with _file_lock(lock_path, timeout=timeout, what=what, poll_interval=poll_interval,
                        wait=wait):
            yield
    finally:
        turn.release()


@contextlib.contextmanager
def _file_lock(lock_path: Path, *, timeout: float | None, what: str | None,
               poll_interval: float, wait: bool) -> Iterator[None]:
    import filelock

    label = what or str(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock, soft = _new_lock(lock_path)
        _acquire(lock, lock_path, label, timeout=timeout, poll_interval=poll_interval, wait=wait)
    except filelock.LeaseSettingsMismatch as err:
        raise LockTimeoutError(f"cannot take {lock_path}: {err}; set the same "
                               "HUBLOADER_LOCK_LIFETIME for every process sharing this cache"
                               ) from err
    except OSError as err:
        if err.errno in _NOT_WRITABLE:
            raise _read_only(lock_path.parent, label, err) from err
        raise
    owner = _owner_file(lock_path)
    left = _holder(lock_path)
    if left != "unknown":  # its holder never let go: it died, or stopped its heartbeat
        if soft:
            logger.warning("took over the lock on %s from %s, which is gone (its pid is dead "
                           "on this host, or its heartbeat is older than %.0f s, "
                           "HUBLOADER_LOCK_LIFETIME)", label, left, settings.lock_lifetime())
        else:
            logger.info("%s: the previous holder (%s) died holding the lock", label, left)
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
                logger.warning(_GOING_ON, what, settings.lock_timeout())
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
        logger.warning(_GOING_ON, what, settings.lock_timeout())
    return True
