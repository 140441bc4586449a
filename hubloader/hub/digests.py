"""Checking bytes against what a source vouches for, in one place: the sha256 hubloader
records, and the weaker digests a source states (md5 from an S3 ETag, the git blob sha1 the
Hugging Face hub lists, S3's multipart ETag or checksums over the parts). Transfers feed
:class:`Digests` as bytes arrive; the Hugging Face cache check and publishing hash whole files
through the same pieces.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..files import open_regular
from .sources.base import RemoteFile
from .sources.part_digests import PartDigest, expected_digest

__all__ = ["Digests", "verified_by", "hash_file", "git_blob_header", "git_blob_sha1"]

_BLOCK = 8 << 20


def git_blob_header(size: int) -> bytes:
    """What git hashes before a blob's bytes: ``b"blob <size>\\0"``."""
    return b"blob %d\0" % size


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob id of a file, as the Hugging Face hub reports it (``blobId``)."""
    p = Path(path)
    h = hashlib.sha1(git_blob_header(p.stat().st_size), usedforsecurity=False)
    with os.fdopen(open_regular(p, os.O_RDONLY), "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def verified_by(file: RemoteFile, expected_sha256: str | None = None) -> str | None:
    """What a transfer of ``file`` checks its bytes against (``sha256``, ``md5``,
    ``git-sha1``, ``multipart ETag``, ``composite crc32 checksum`` ...), or ``None`` when the
    source states nothing to check them against. :class:`Digests` checks exactly this."""
    if expected_sha256 or file.sha256:
        return "sha256"
    if file.md5:
        return "md5"
    if file.git_sha1 and file.size is not None:
        return "git-sha1"
    want = expected_digest(file)
    return want.kind if want else None


class Digests:
    """sha256 always; the weaker digests a source vouches for (md5 from an S3 ETag, git blob
    sha1, a multipart ETag or S3 checksum over the parts) only when no sha256 is expected — a
    known sha256 already settles the file, and md5 alone would cost about as much CPU again.
    Which one is checked is :func:`verified_by`'s answer."""

    def __init__(self, file: RemoteFile, expected_sha256: str | None = None):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.count = 0  # bytes fed
        by = verified_by(file, expected_sha256)
        self.md5 = hashlib.md5(usedforsecurity=False) if by == "md5" else None
        self.git = None
        if by == "git-sha1" and file.size is not None:
            self.git = hashlib.sha1(usedforsecurity=False)
            self.git.update(git_blob_header(file.size))
        want = expected_digest(file) if by not in (None, "sha256", "md5", "git-sha1") else None
        self.parts = PartDigest(want) if want else None

    def update(self, data: bytes | memoryview) -> None:
        self.count += len(data)
        self.sha256.update(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self.git is not None:
            self.git.update(data)
        if self.parts is not None:
            self.parts.update(data)

    def mismatch(self, expected_sha256: str | None) -> tuple[str, str, str] | None:
        """``(algorithm, expected, actual)`` for the first digest that disagrees, else ``None``."""
        checks: list[tuple[str, str | None, Any]] = [
            ("sha256", expected_sha256 or self.file.sha256, self.sha256),
            ("md5", self.file.md5, self.md5), ("git-sha1", self.file.git_sha1, self.git)]
        for name, want, h in checks:
            if want and h is not None and h.hexdigest() != want.lower():
                return name, want.lower(), h.hexdigest()
        return self.parts.mismatch() if self.parts is not None else None


def hash_file(path: Path, digests: Digests, *, limit: int | None = None) -> None:
    """Feed ``path``'s first ``limit`` bytes (all by default) into ``digests``."""
    remaining = limit
    with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as fh:
        while remaining is None or remaining > 0:
            block = fh.read(_BLOCK if remaining is None else min(_BLOCK, remaining))
            if not block:
                break
            digests.update(block)
            if remaining is not None:
                remaining -= len(block)
