"""The one interface every backend implements: list a snapshot's files, stream a byte range.

Policy (locking, resume, retries, verification, the cache) lives above, in
:mod:`hubloader.hub.transfer` and :mod:`hubloader.hub.snapshot`; a backend fills two hooks,
:meth:`Source.list_files` and :meth:`Source.iter_bytes`, and maps its own exceptions to
hubloader's typed errors:

* retryable trouble (connection refused or reset, timeouts, truncated bodies) ->
  :class:`~hubloader.errors.NetworkError`;
* the object changed since it was listed (HTTP 412) -> :class:`RemoteChangedError`;
* final answers -> ``RemoteNotFoundError``, ``AccessDeniedError``, ``RevisionNotFoundError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...errors import SourceError

__all__ = ["RemoteFile", "Listing", "Source", "RemoteChangedError", "CHUNK_SIZE", "range_header"]

CHUNK_SIZE = 1 << 20  # bytes handed over per iteration of iter_bytes


def range_header(start: int, end: int | None) -> str | None:
    """The HTTP ``Range`` value for bytes ``[start, end)`` (``end=None``: to the end);
    ``None`` for the whole object."""
    if not start and end is None:
        return None
    return f"bytes={start}-" + ("" if end is None else str(end - 1))


class RemoteChangedError(SourceError):
    """The remote object no longer matches the listed version (its ETag changed mid-fetch).

    The transfer layer discards the partial file and starts that file over.
    """


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote snapshot.

    Attributes:
        path: the path inside the snapshot, ``/``-separated (``1_Pooling/config.json``).
        size: its size in bytes, when the source says.
        etag: an opaque version tag: changes whenever the content does. It names partial
            files (so a resumed download never mixes two versions) and tells a warm cache
            whether its copy is current.
        sha256, md5, git_sha1: digests the source vouches for (hex), checked after transfer.
        checksum: an S3 checksum, ``<crc32|sha1|sha256>:<base64>``, ending in ``-<parts>``
            when composite (see :mod:`hubloader.hub.sources.part_digests`).
        parts: the sizes of the parts an object was uploaded in, in order (``()``: unknown
            or one part); with them a multipart ETag or a composite checksum is checked.
    """

    path: str
    size: int | None = None
    etag: str | None = None
    sha256: str | None = None
    md5: str | None = None
    git_sha1: str | None = None
    checksum: str | None = None
    parts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Listing:
    """What :meth:`Source.list_files` returns.

    Attributes:
        revision: the resolved revision: a commit sha for hub repositories, else the label
            asked for (``main`` by default).
        files: every file of the snapshot.
    """

    revision: str
    files: tuple[RemoteFile, ...]


class Source:
    """A place model snapshots come from. Subclasses set :attr:`uri` and fill the hooks."""

    #: the canonical URI (``s3://bucket/prefix/``, ``hf://org/repo``, ``file:///dir``)
    uri: str = ""
    #: whether :meth:`iter_bytes` honours ``end`` (enables parallel ranged GETs)
    supports_ranges: bool = True

    def is_pinned(self, revision: str | None) -> bool:
        """Whether ``revision`` names immutable content (a commit), so a complete cached
        snapshot of it never needs re-checking. Labels (S3, folders) are never pinned."""
        return False

    def list_files(self, revision: str | None) -> Listing:
        """List the snapshot at ``revision`` (``None``: the default branch or label).

        Raises:
            RemoteNotFoundError: no such bucket, prefix, repository or folder.
            RevisionNotFoundError: no such revision.
            AccessDeniedError: credentials missing or refused.
            NetworkError: the source could not be reached.
        """
        raise NotImplementedError

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` of ``file`` (``end=None``: to the end).

        Raises:
            RemoteChangedError: the object changed since it was listed.
            NetworkError: the transfer broke; the caller resumes from what it has.
        """
        raise NotImplementedError

    def stated_digests(self, file: RemoteFile) -> RemoteFile:
        """``file`` with the digests the source states beyond its listing filled in
        (``sha256``, ``checksum``, ``parts``), asked for only when the file is about to be
        fetched and no sha256 is known yet (a few small requests at most). Sources that list
        their digests need not override; this one states none.

        Raises:
            RemoteChangedError: the file changed since it was listed.
            RemoteNotFoundError, AccessDeniedError: final answers from the source.
        """
        return file

    #: how :meth:`local_copy`'s files are named in the manifest (``hubloader cache ls``)
    local_origin: str = "local"

    def local_copy(self, file: RemoteFile) -> tuple[Path, str] | None:
        """A copy of ``file`` already on this machine, outside hubloader's cache, whose bytes
        were checked against the digest the listing gives: ``(path, sha256)``, else ``None``.
        It is linked or copied into the cache instead of being fetched; it is never changed.
        """
        return None

    def cached_listing(self, revision: str | None) -> Listing | None:
        """The snapshot at ``revision`` as another cache on this machine holds it, every file
        with a :meth:`local_copy`, known without a request; ``None``: none."""
        return None

    def describe(self, path: str = "") -> str:
        """A human-readable location for messages."""
        return self.uri.rstrip("/") + ("/" + path if path else "")
