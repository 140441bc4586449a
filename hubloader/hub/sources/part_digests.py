"""Digests a source states that are not a plain digest of the bytes: S3's multipart ETag and
its additional checksums (CRC32, SHA-1, SHA-256, of the whole object or composite), recomputed
from the bytes while they stream.

An object uploaded in parts (boto3's ``upload_file`` above 8 MiB, so most weights) has an
ETag that is the MD5 of its parts' MD5s followed by ``-<parts>``, and a composite checksum is
the checksum of its parts' checksums, also followed by ``-<parts>``. Both depend on where each
part ends, which the source reports in :attr:`RemoteFile.parts`; :class:`PartDigest` cuts the
stream at those sizes and recomputes the value.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from dataclasses import dataclass
from typing import Protocol

from .base import RemoteFile

__all__ = ["Expected", "PartDigest", "expected_digest", "MULTIPART_ETAG"]

#: an S3 multipart ETag: ``<md5 of the parts' md5s>-<parts>``
MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d{1,5})$")
_CHECKSUM = re.compile(r"^(crc32|sha1|sha256):([A-Za-z0-9+/=]+)(?:-(\d{1,5}))?$")


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    """CRC32 with hashlib's two methods; S3 states it as 4 big-endian bytes, in base64."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


def _new(algorithm: str) -> _Hash:
    if algorithm == "crc32":
        return _Crc32()
    return hashlib.new(algorithm, usedforsecurity=False)


@dataclass(frozen=True)
class Expected:
    """A digest to check the bytes against.

    Attributes:
        kind: what it is, for the manifest and messages (``multipart ETag``,
            ``composite crc32 checksum``, ``crc32 checksum``).
        algorithm: ``md5`` (the ETag), ``crc32``, ``sha1`` or ``sha256``.
        value: as the source states it (hex ETag, or base64 checksum; ``-<parts>`` when
            computed over parts).
        parts: the parts' sizes; ``()`` for a digest of the whole object.
    """

    kind: str
    algorithm: str
    value: str
    parts: tuple[int, ...] = ()


def _fits(file: RemoteFile, count: int) -> bool:
    return len(file.parts) == count and (file.size is None or sum(file.parts) == file.size)


def expected_digest(file: RemoteFile) -> Expected | None:
    """The part-wise or checksum digest ``file`` can be verified against, else ``None``
    (no checksum, and no part sizes that add up to the size and match the ETag's count).
    A checksum wins over the ETag: CRC32 costs a third of MD5's CPU."""
    match = _CHECKSUM.match(file.checksum or "")
    if match:
        algorithm, value, count = match.groups()
        if count is None:
            return Expected(f"{algorithm} checksum", algorithm, value)
        if _fits(file, int(count)):
            return Expected(f"composite {algorithm} checksum", algorithm, f"{value}-{count}",
                            file.parts)
    etag = MULTIPART_ETAG.match((file.etag or "").lower())
    if etag and _fits(file, int(etag.group(2))):
        return Expected("multipart ETag", "md5", etag.group(0), file.parts)
    return None


class PartDigest:
    """Recomputes an :class:`Expected` digest from the bytes fed in order."""

    def __init__(self, want: Expected):
        self.want = want
        self._sizes = want.parts
        self._index = 0
        self._left: int | None = self._sizes[0] if self._sizes else None
        self._hash = _new(want.algorithm)
        self._fed = False  # whether the current part has bytes
        self._digests: list[bytes] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            if self._left is None:  # a whole-object digest, or bytes past the last part
                self._hash.update(view)
                self._fed = True
                return
            take = min(self._left, len(view))
            self._hash.update(view[:take])
            self._fed = True
            self._left -= take
            view = view[take:]
            if self._left == 0:
                self._next_part()

    def _next_part(self) -> None:
        self._digests.append(self._hash.digest())
        self._hash, self._fed = _new(self.want.algorithm), False
        self._index += 1
        self._left = self._sizes[self._index] if self._index < len(self._sizes) else None

    def value(self) -> str:
        """The digest of the bytes fed so far, written as the source writes it."""
        if not self._sizes:
            return base64.b64encode(self._hash.digest()).decode()
        digests = self._digests + ([self._hash.digest()] if self._fed else [])
        joined = b"".join(digests)
        if self.want.algorithm == "md5":
            return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(digests)}"
        return f"{base64.b64encode(_digest(self.want.algorithm, joined)).decode()}-{len(digests)}"

    def mismatch(self) -> tuple[str, str, str] | None:
        """``(kind, expected, actual)`` when the bytes disagree, else ``None``."""
        actual = self.value()
        return None if actual == self.want.value else (self.want.kind, self.want.value, actual)


def _digest(algorithm: str, data: bytes) -> bytes:
    h = _new(algorithm)
    h.update(data)
    return h.digest()
