"""Fetches that run in the background of this process and are joined by name.

A cold process spends most of its start importing torch, and the user's first line imports a
model class. :func:`prefetch` starts :func:`hubloader.hub.download` in a thread and returns at
once, so the transfer runs while torch imports; :func:`hubloader.hub.download` (and so
``from_pretrain`` and ``AutoLoader``) joins a fetch of the same name, revision and target that
is in flight instead of starting another.

    >>> import hubloader
    >>> handle = hubloader.prefetch("s3://bucket/llama/")          # returns at once
    >>> from hubloader.models import LlamaForCausalLM              # torch imports meanwhile
    >>> model = LlamaForCausalLM.from_pretrain("s3://bucket/llama/")  # joins the fetch

A prefetch nobody joins by the time the interpreter exits is cancelled at its next chunk; the
bytes on disk stay for a resume. Ctrl-C while a join waits cancels the fetch the same way.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (its exit hook must be registered before ours)
import contextvars
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["Prefetch", "prefetch", "join", "ambient_cancel"]

logger = logging.getLogger(__name__)

# The cancel event of the background fetch this thread runs for, if any: the snapshot fetch
# stops at its next chunk once it is set.
_AMBIENT_CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "hubloader_prefetch_cancel", default=None)

# How long the interpreter's exit waits for a cancelled fetch to let go of its files.
_EXIT_GRACE_S = 5.0


def ambient_cancel() -> threading.Event | None:
    """The cancel event of the prefetch running in this thread (``None`` elsewhere)."""
    return _AMBIENT_CANCEL.get()


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


class Prefetch:
    """A fetch running in a background thread; :meth:`result` joins it.

    Errors of the fetch are raised, typed, by :meth:`result` (and by the ``download`` or
    ``from_pretrain`` call that joins it), never in the background thread.
    """

    def __init__(self, key: _Key, allow_patterns: tuple[str, ...] | None, progress: bool):
        self._key = key
        self.allow_patterns = allow_patterns
        self._progress = progress
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._path: Path | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hubloader-prefetch",
                                        daemon=True)

    @property
    def name(self) -> str:
        return self._key.name

    def _run(self) -> None:
        from . import download

        _AMBIENT_CANCEL.set(self._cancel)
        try:
            self._path = download(self._key.name, revision=self._key.revision,
                                  download_path=self._key.download_path,
                                  allow_patterns=list(self.allow_patterns)
                                  if self.allow_patterns is not None else None,
                                  offline=self._key.offline, progress=self._progress)
        except BaseException as err:  # handed to whoever joins, typed as raised
            self._error = err
        finally:
            self._finished.set()

    def done(self) -> bool:
        """Whether the fetch has ended (successfully or not)."""
        return self._finished.is_set()

    def cancel(self) -> None:
        """Ask the fetch to stop at its next chunk; the bytes on disk stay for a resume."""
        self._cancel.set()

    def result(self, timeout: float | None = None) -> Path:
        """Wait for the fetch and return its directory, as :func:`download` would.

        Args:
            timeout: seconds to wait at most; ``None`` waits for the end.

        Raises:
            Whatever :func:`hubloader.hub.download` raises, typed (``SourceError`` and its
            subclasses, ``LocalEntryNotFoundError`` offline, ...).
            LockTimeoutError: ``timeout`` passed first.
            KeyboardInterrupt: Ctrl-C while waiting; the fetch is cancelled first.
        """
        try:
            if not self._finished.wait(timeout):
                from ..errors import LockTimeoutError

                raise LockTimeoutError(f"the prefetch of {self.name} did not finish within "
                                       f"{timeout} s; wait longer or call result() again")
        except KeyboardInterrupt:
            self.cancel()
            self._finished.wait(_EXIT_GRACE_S)
            raise
        if self._error is not None:
            raise self._error
        assert self._path is not None  # a finished fetch without an error has a path
        return self._path

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"<Prefetch {self.name!r} {state}>"


_LOCK = threading.Lock()
_INFLIGHT: dict[_Key, list[Prefetch]] = {}


def prefetch(model_name: str | os.PathLike, *, revision: str | None = None,
             download_path: str | os.PathLike | None = None,
             allow_patterns: str | Sequence[str] | None = None, offline: bool | None = None,
             progress: bool = True) -> Prefetch:
    """Start fetching ``model_name`` in a background thread and return a handle at once.

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
    handle._thread.start()
    logger.debug("prefetch of %s started", key.name)
    return handle


def join(model_name: str | os.PathLike, *, revision: str | None,
         download_path: str | os.PathLike | None, allow_patterns: str | Sequence[str] | None,
         offline: bool | None) -> Path | None:
    """The directory of this process's prefetch covering the request, waiting for it; ``None``
    when no prefetch covers it (the caller then downloads itself).

    A prefetch covers a request for the same name, revision and ``download_path`` when it
    fetches every file (no ``allow_patterns``) or the same patterns. Each prefetch is handed to
    one join; later requests find the files in the cache.
    """
    if not _INFLIGHT:  # the common case: nothing prefetched
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
    return found.result()


def _cancel_all_at_exit() -> None:
    with _LOCK:
        pending = [h for handles in _INFLIGHT.values() for h in handles if not h.done()]
    for handle in pending:
        logger.info("cancelling the unjoined prefetch of %s at exit", handle.name)
        handle.cancel()
    for handle in pending:
        handle._finished.wait(_EXIT_GRACE_S)


# At exit the interpreter joins thread pools' workers (the transfers) before atexit handlers
# run, so the cancel goes through the same earlier hook; registered after concurrent.futures',
# it runs before that join.
threading._register_atexit(_cancel_all_at_exit)  # type: ignore[attr-defined]
