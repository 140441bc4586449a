"""Fetches that run beside this process and are joined by name.

A cold process spends most of its start importing torch, and the user's first line imports a
model class. :func:`prefetch` starts :func:`hubloader.hub.download` in a child interpreter and
returns at once, so the transfer runs while torch imports; :func:`hubloader.hub.download` (and
so ``from_pretrain`` and ``AutoLoader``) joins a fetch of the same name, revision and target
that is in flight instead of starting another.

    >>> import hubloader
    >>> handle = hubloader.prefetch("s3://bucket/llama/")          # returns at once
    >>> from hubloader.models import LlamaForCausalLM              # torch imports meanwhile
    >>> model = LlamaForCausalLM.from_pretrain("s3://bucket/llama/")  # joins the fetch

While the fetch runs, the child reports each file as it lands in the snapshot;
:meth:`Prefetch.landed` hands these on, so a load can read the weights that are in while the
rest still travel (see :mod:`hubloader.load.landing`).

The fetch runs in a child process rather than a thread because importing torch holds the GIL
for most of its length, and so does much of a download's Python work (botocore, urllib3): in
one interpreter the two would take turns instead of running side by side. The child takes the
same locks and writes the same cache as an in-process download, so exactly-once, offline mode
and verification are those of :func:`hubloader.hub.download`; it answers with one line on its
standard output as soon as the files are in place (its background flush then finishes on its
own), and its errors are raised again, typed, at the join.

The child runs :mod:`hubloader.hub._prefetch_child` with ``python -P -m``, so neither the
working directory nor a script's folder is on its path: a ``json.py`` lying there is never
imported. A thread of the parent reads the child's lines as they come (the pipe never fills
and stalls the child under its locks), reaps the child when it ends and closes the pipe, so
no process or descriptor outlives a fetch. A handle is forgotten once joined: a later
``download`` of the name asks the source again rather than replaying an old answer.

A prefetch nobody joins by the time the interpreter exits is stopped (SIGINT, as Ctrl-C would);
Ctrl-C while a join waits stops it the same way. The bytes on disk stay for a resume.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import PrefetchError, PrefetchTimeoutError
from ..names import validate_download_path, validate_fetch_arguments

__all__ = ["Prefetch", "Landed", "prefetch", "claim", "join"]

logger = logging.getLogger(__name__)

# How long a stopped fetch is given to let go of its files before it is killed.
_STOP_GRACE_S = 5.0
# How often a join looks at the child while it waits (stopped? gone?).
_POLL_S = 0.5
_CHILD_FLAG = "HUBLOADER_PREFETCH_CHILD"


@dataclass(frozen=True)
class _Key:
    name: str
    revision: str | None
    download_path: str | None
    offline: bool | None


def _key(model_name: str | os.PathLike, revision: str | None,
         download_path: str | os.PathLike | None, offline: bool | None) -> _Key:
    where = None if download_path is None else os.path.abspath(os.fspath(download_path))
    return _Key(os.fspath(model_name), revision, where, offline)


def _patterns(allow_patterns: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if allow_patterns is None:
        return None
    return (allow_patterns,) if isinstance(allow_patterns, str) else tuple(allow_patterns)


def _rebuild_error(answer: dict[str, Any]) -> BaseException:
    """The child's error as the same hubloader class, with its message and fields."""
    from .. import errors

    cls = getattr(errors, str(answer.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.HubLoaderError)):
        cls = errors.NetworkError
    err = cls.__new__(cls)
    Exception.__init__(err, str(answer.get("message", "")))
    for field, value in (answer.get("fields") or {}).items():
        setattr(err, field, value)
    return err


@dataclass(frozen=True)
class Landed:
    """A file of the snapshot, verified and in place at ``snapshot_dir / path``."""

    snapshot_dir: Path
    path: str


class Prefetch:
    """A fetch running in a child process; :meth:`result` joins it, :meth:`landed` follows it
    file by file.

    Errors of the fetch are raised, typed, by :meth:`result` (and by the ``download`` or
    ``from_pretrain`` call that joins it).
    """

    def __init__(self, key: _Key, allow_patterns: tuple[str, ...] | None, progress: bool):
        self._key = key
        self.allow_patterns = allow_patterns
        self._cond = threading.Condition()
        self._answer: dict[str, Any] | None = None
        self._snapshot_dir: Path | None = None
        self._listing: tuple[str, ...] | None = None
        self._landed: list[Landed] = []
        request = {"model_name": key.name, "revision": key.revision,
                   "download_path": key.download_path, "offline": key.offline,
                   "allow_patterns": list(allow_patterns) if allow_patterns is not None else None,
                   "progress": progress}
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, _CHILD_FLAG: "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                           os.environ.get("PYTHONPATH")]))}
        try:
            # -P: no working directory (nor script folder) first on the child's path
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "hubloader.hub._prefetch_child", json.dumps(request)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, text=True,
                close_fds=True)
        except OSError as err:
            raise PrefetchError(f"cannot start a background fetch of {key.name} "
                                f"({err.strerror or err}); close files or processes this one "
                                "holds, or call download() instead") from err
        self._reader = threading.Thread(target=self._read_all, daemon=True,
                                        name=f"hubloader-prefetch-{self._proc.pid}")
        self._reader.start()

    @property
    def name(self) -> str:
        return self._key.name

    def done(self) -> bool:
        """Whether the fetch has answered (successfully or not)."""
        return self._answer is not None or self._proc.poll() is not None

    def cancel(self) -> None:
        """Stop the fetch as Ctrl-C would; the bytes on disk stay for a resume."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            self._proc.send_signal(signal.SIGCONT)  # a stopped child takes SIGINT only then
            try:
                self._proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._reader.join(_STOP_GRACE_S)
        _forget(self)

    @property
    def listing(self) -> tuple[str, ...] | None:
        """The files the fetch puts into the snapshot, once it has listed them (``None``
        before, and for a fetch that needed no listing: a warm cache, offline)."""
        return self._listing

    def _read_all(self) -> None:
        """The reader thread: every line of the child as it comes, then its exit status."""
        assert self._proc.stdout is not None  # opened as a pipe above
        with self._proc.stdout as lines:
            for line in lines:
                self._take(line)
        code = self._proc.wait()  # reaped: no zombie
        with self._cond:
            if self._answer is None:
                self._answer = {"error": "NetworkError",
                                "message": f"the background fetch of {self.name} ended "
                                           f"(exit status {code}) without an answer; "
                                           "run again to resume"}
            self._cond.notify_all()
        with _LOCK:
            _STARTED.discard(self)

    def _take(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        with self._cond:
            if "listed" in message:
                self._snapshot_dir = Path(message["dir"])
                self._listing = tuple(message["listed"])  # again after a change at the source
            elif "landed" in message and self._snapshot_dir:
                self._landed.append(Landed(self._snapshot_dir, message["landed"]))
            elif "path" in message or "error" in message:
                self._answer = message
            self._cond.notify_all()

    def _stopped(self) -> bool:
        """Whether the child is stopped (SIGSTOP, a debugger): it makes no progress."""
        try:
            with open(f"/proc/{self._proc.pid}/stat", encoding="ascii") as fh:
                return fh.read().rpartition(")")[2].split()[0] in ("T", "t")
        except (OSError, IndexError):
            return False

    def _wait_for(self, ready, timeout: float | None) -> None:
        """Wait (holding ``self._cond``) until ``ready()``; notice a stopped child, and give
        up after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise PrefetchTimeoutError(
                    f"the background fetch of {self.name} (pid {self._proc.pid}) did not finish "
                    f"within {timeout:g} s; it goes on: join again, or cancel() it")
            self._cond.wait(_POLL_S if left is None else min(_POLL_S, left))
            if ready() or (deadline is not None and time.monotonic() >= deadline):
                continue
            if self._stopped():
                self._cond.release()
                try:
                    self.cancel()
                finally:
                    self._cond.acquire()
                raise PrefetchError(
                    f"the background fetch of {self.name} (pid {self._proc.pid}) was stopped "
                    "(SIGSTOP) and is ended now; run the download again to resume")

    def landed(self) -> Iterator[Landed]:
        """Each file of the snapshot as it lands (verified, in place), until the fetch
        answers; files already cached come first. Then :meth:`result` returns at once.

        Raises:
            PrefetchError: the child was stopped (it is ended).
            KeyboardInterrupt: Ctrl-C while waiting; the fetch is stopped first.
        """
        seen = 0
        while True:
            with self._cond:
                try:
                    self._wait_for(lambda: seen < len(self._landed) or self._answer is not None,
                                   None)
                except KeyboardInterrupt:
                    self._cond.release()
                    try:
                        self.cancel()
                    finally:
                        self._cond.acquire()
                    raise
                if seen >= len(self._landed):
                    return
                arrived = self._landed[seen]
            seen += 1
            yield arrived

    def result(self, timeout: float | None = None) -> Path:
        """Wait for the fetch and return its directory, as :func:`download` would. The handle
        is then forgotten: a later ``download`` of the name asks the source again.

        Args:
            timeout: seconds to wait at most (``None``: until the fetch answers).

        Raises:
            Whatever :func:`hubloader.hub.download` raises, typed (``SourceError`` and its
            subclasses, ``LocalEntryNotFoundError`` offline, ...).
            PrefetchTimeoutError: ``timeout`` passed; the fetch goes on.
            PrefetchError: the child was stopped (it is ended).
            KeyboardInterrupt: Ctrl-C while waiting; the fetch is stopped first.
        """
        try:
            with self._cond:
                self._wait_for(lambda: self._answer is not None, timeout)
                answer = self._answer
        except KeyboardInterrupt:
            self.cancel()
            raise
        assert answer is not None  # waited for above
        _forget(self)  # (the reader reaps the child once it has flushed its blobs and ended)
        if "path" in answer:
            return Path(answer["path"])
        raise _rebuild_error(answer)

    def __repr__(self) -> str:
        return f"<Prefetch {self.name!r} {'done' if self.done() else 'running'}>"


_LOCK = threading.Lock()
_INFLIGHT: dict[_Key, list[Prefetch]] = {}
_STARTED: set[Prefetch] = set()  # children not reaped yet, stopped at exit


def _forget(handle: Prefetch) -> None:
    """Take a joined (or cancelled) handle out of the registry."""
    with _LOCK:
        candidates = _INFLIGHT.get(handle._key, [])
        if handle in candidates:
            candidates.remove(handle)
        if not candidates:
            _INFLIGHT.pop(handle._key, None)


def prefetch(model_name: str | os.PathLike, *, revision: str | None = None,
             download_path: str | os.PathLike | None = None,
             allow_patterns: str | Sequence[str] | None = None, offline: bool | None = None,
             progress: bool = True) -> Prefetch:
    """Start fetching ``model_name`` in a child process and return a handle at once.

    Takes :func:`hubloader.hub.download`'s arguments. A later ``download``,
    ``from_pretrain`` or ``AutoLoader`` of the same name, revision and ``download_path`` in
    this process joins this fetch instead of starting another. A fetch of the same request
    already in flight is returned rather than started twice.

    Returns:
        A :class:`Prefetch`: ``result()`` waits and returns the directory.

    Raises:
        InputError, InvalidModelNameError: an argument of the wrong type or form (checked
            before any child starts, as :func:`download` checks them).
        PrefetchError: no child process can be started (out of processes or descriptors).

    Example:
        >>> handle = prefetch("hf://org/model")
        >>> import torch                      # overlaps the transfer
        >>> path = handle.result()
    """
    validate_fetch_arguments(model_name, revision=revision, allow_patterns=allow_patterns,
                             offline=offline, progress=progress)
    validate_download_path(download_path)
    key = _key(model_name, revision, download_path, offline)
    patterns = _patterns(allow_patterns)
    with _LOCK:
        for running in _INFLIGHT.get(key, []):
            if running.allow_patterns == patterns and "error" not in (running._answer or {}):
                return running
        handle = Prefetch(key, patterns, progress)
        _INFLIGHT.setdefault(key, []).append(handle)
        _STARTED.add(handle)  # (its reader takes it out, under this lock, once it is reaped)
    logger.debug("prefetch of %s started (pid %d)", key.name, handle._proc.pid)
    return handle


def claim(model_name: str | os.PathLike, *, revision: str | None,
          download_path: str | os.PathLike | None, allow_patterns: str | Sequence[str] | None,
          offline: bool | None) -> Prefetch | None:
    """This process's prefetch covering the request, handed to the caller (who joins it);
    ``None`` when no prefetch covers it.

    A prefetch covers a request for the same name, revision and ``download_path`` when it
    fetches every file (no ``allow_patterns``) or the same patterns. Each prefetch is handed to
    one caller; later requests find the files in the cache.
    """
    if not _INFLIGHT or os.environ.get(_CHILD_FLAG):  # the common case: nothing prefetched
        return None
    key = _key(model_name, revision, download_path, offline)
    patterns = _patterns(allow_patterns)
    with _LOCK:
        candidates = _INFLIGHT.get(key, [])
        found = next((h for h in candidates if h.allow_patterns in (None, patterns)), None)
        if found is None:
            return None
        candidates.remove(found)
        if not candidates:
            del _INFLIGHT[key]
    logger.debug("joining the prefetch of %s", key.name)
    return found


def join(model_name: str | os.PathLike, *, revision: str | None,
         download_path: str | os.PathLike | None, allow_patterns: str | Sequence[str] | None,
         offline: bool | None) -> Path | None:
    """The directory of this process's prefetch covering the request (see :func:`claim`),
    waiting for it; ``None`` when no prefetch covers it (the caller then downloads itself)."""
    found = claim(model_name, revision=revision, download_path=download_path,
                  allow_patterns=allow_patterns, offline=offline)
    return None if found is None else found.result()


def _stop_unjoined_at_exit() -> None:
    with _LOCK:
        pending = [h for h in _STARTED if h._answer is None and h._proc.poll() is None]
        finished = [h for h in _STARTED if h not in pending]
    for handle in finished:  # answered: the reader reaps it in a moment
        handle._reader.join(_STOP_GRACE_S)
    for handle in pending:
        logger.info("stopping the unjoined prefetch of %s at exit", handle.name)
        handle.cancel()


atexit.register(_stop_unjoined_at_exit)
