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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["Prefetch", "Landed", "prefetch", "claim", "join"]

logger = logging.getLogger(__name__)

# How long a stopped fetch is given to let go of its files before it is killed.
_STOP_GRACE_S = 5.0
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
        self._lock = threading.Lock()
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
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from hubloader.hub.inflight import _child_main; _child_main()",
             json.dumps(request)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, text=True)

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
            try:
                self._proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    @property
    def listing(self) -> tuple[str, ...] | None:
        """The files the fetch puts into the snapshot, once it has listed them (``None``
        before, and for a fetch that needed no listing: a warm cache, offline)."""
        return self._listing

    def _read_one(self) -> None:
        """Read the child's next line: a listing, a file landed, or its answer."""
        assert self._proc.stdout is not None  # opened as a pipe above
        line = self._proc.stdout.readline()
        try:
            message = json.loads(line) if line else {}
        except ValueError:
            message = {}
        if not isinstance(message, dict):
            message = {}
        if "listed" in message:
            self._snapshot_dir = Path(message["dir"])
            self._listing = tuple(message["listed"])  # again after a change at the source
        elif "landed" in message and self._snapshot_dir:
            self._landed.append(Landed(self._snapshot_dir, message["landed"]))
        elif "path" in message or "error" in message:
            self._answer = message
        else:  # the child died without answering
            code = self._proc.wait()
            self._answer = {"error": "NetworkError",
                            "message": f"the background fetch of {self.name} ended "
                                       f"(exit status {code}) without an answer; "
                                       "run again to resume"}

    def _wait(self) -> dict[str, Any]:
        with self._lock:
            while self._answer is None:
                self._read_one()
            return self._answer

    def landed(self) -> Iterator[Landed]:
        """Each file of the snapshot as it lands (verified, in place), until the fetch
        answers; files already cached come first. Then :meth:`result` returns at once.

        Raises:
            KeyboardInterrupt: Ctrl-C while waiting; the fetch is stopped first.
        """
        seen = 0
        while True:
            with self._lock:
                try:
                    while seen >= len(self._landed) and self._answer is None:
                        self._read_one()
                except KeyboardInterrupt:
                    self.cancel()
                    raise
                if seen >= len(self._landed):
                    return
                arrived = self._landed[seen]
            seen += 1
            yield arrived

    def result(self) -> Path:
        """Wait for the fetch and return its directory, as :func:`download` would.

        Raises:
            Whatever :func:`hubloader.hub.download` raises, typed (``SourceError`` and its
            subclasses, ``LocalEntryNotFoundError`` offline, ...).
            KeyboardInterrupt: Ctrl-C while waiting; the fetch is stopped first.
        """
        try:
            answer = self._wait()
        except KeyboardInterrupt:
            self.cancel()
            raise
        if "path" in answer:
            return Path(answer["path"])
        raise _rebuild_error(answer)

    def __repr__(self) -> str:
        return f"<Prefetch {self.name!r} {'done' if self.done() else 'running'}>"


_LOCK = threading.Lock()
_INFLIGHT: dict[_Key, list[Prefetch]] = {}
_STARTED: list[Prefetch] = []


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

    Example:
        >>> handle = prefetch("hf://org/model")
        >>> import torch                      # overlaps the transfer
        >>> path = handle.result()
    """
    key = _key(model_name, revision, download_path, offline)
    patterns = _patterns(allow_patterns)
    with _LOCK:
        for running in _INFLIGHT.get(key, []):
            if running.allow_patterns == patterns:
                return running
        handle = Prefetch(key, patterns, progress)
        _INFLIGHT.setdefault(key, []).append(handle)
        _STARTED.append(handle)
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
    for handle in pending:
        logger.info("stopping the unjoined prefetch of %s at exit", handle.name)
        handle.cancel()


atexit.register(_stop_unjoined_at_exit)


class _Reporter:
    """Tells the parent, one JSON line each, what the fetch lists and each file that lands."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two transfer threads report

    def _say(self, message: dict[str, Any]) -> None:
        with self._lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def listed(self, snapshot_dir: Path, files: Sequence[str]) -> None:
        self._say({"listed": list(files), "dir": str(snapshot_dir)})

    def landed(self, path: str) -> None:
        self._say({"landed": path})


def _child_main() -> None:
    """The child: one :func:`download`, reported as it goes and answered with one JSON line
    on standard output."""
    from ..errors import HubLoaderError
    from . import download
    from .snapshot import arrivals

    request = json.loads(sys.argv[1])
    arrivals.set(_Reporter())
    try:
        path = download(request.pop("model_name"), **request)
        answer: dict[str, Any] = {"path": str(path)}
    except HubLoaderError as err:
        fields = {k: v for k, v in vars(err).items()
                  if isinstance(v, (str, int, float, bool, type(None)))}
        answer = {"error": type(err).__name__, "message": str(err), "fields": fields}
    except KeyboardInterrupt:
        sys.exit(130)
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()  # the parent goes on now; this process still flushes the blobs at exit
