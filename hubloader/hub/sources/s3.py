"""S3 and S3-compatible servers (SeaweedFS, MinIO, Ceph) through a botocore client (boto3's),
imported lazily: the one S3 client of hubloader, for fetching here and for ``hubloader push``.

``s3://bucket/prefix/`` lists every object under the prefix; each object's ETag names its
version. A plain (non-multipart) ETag is the object's MD5, which is then verified too. Before
fetching a file whose sha256 no card gives, one HEAD asks for the object's
``x-amz-checksum-sha256`` (a full-object SHA-256, as a single-part upload with a checksum
has) or the ``x-amz-meta-sha256`` that ``hubloader push`` writes: the download is verified
against it, and identical bytes already cached are linked instead of fetched. An object
uploaded in parts without either is verified against its CRC32/SHA checksum or its multipart
ETag, recomputed over its parts (their sizes from ``HEAD ?partNumber=1``, or GetObjectAttributes).
Endpoint: ``HUBLOADER_S3_ENDPOINT_URL``, else boto3's own (``AWS_ENDPOINT_URL_S3`` ...),
addressed path-style. With no credentials configured, downloads go unsigned (public buckets).
Proxies (``HTTP(S)_PROXY``), the CA bundle (``AWS_CA_BUNDLE``) and credentials are boto3's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import replace
from typing import Any, Iterator

from ... import settings
from ..._gc import gc_paused
from ...errors import (AccessDeniedError, InvalidModelNameError, NetworkError,
                       RemoteNotFoundError, UnsupportedSourceError)
from .base import CHUNK_SIZE, Listing, RemoteChangedError, RemoteFile, Source, range_header
from .part_digests import MULTIPART_ETAG

__all__ = ["S3Source", "make_client", "translate_error"]

logger = logging.getLogger(__name__)

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HEAD_MIN_SIZE = 1 << 20  # smaller files with an MD5 ETag get no HEAD for a stated sha256
_LIST_PAGE = 1000  # keys per ListObjectsV2 page (S3's own maximum)
_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
           "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AccountProblem"}
_CHANGED = {"PreconditionFailed", "412"}
_BUSY = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}


def make_client(*, endpoint_url: str | None = None, attempts: int = 2,
                unsigned_if_anonymous: bool = True) -> Any:
    """The S3 client every S3 request of hubloader goes through: botocore's, as
    ``boto3.client("s3")`` makes it, without boto3's layer (its import brings s3transfer and
    its session adds resources, neither used here).

    Args:
        endpoint_url: the server (default: ``HUBLOADER_S3_ENDPOINT_URL``, else boto3's own
            lookup); a configured endpoint is addressed path-style.
        attempts: attempts per request, the first included (botocore's standard retries).
        unsigned_if_anonymous: with no credentials found, send unsigned requests (public
            buckets) instead of failing with ``NoCredentialsError``.

    Raises:
        UnsupportedSourceError: boto3 is not installed.
    """
    # building the client (the S3 service model: a large nest of dicts) creates long-lived
    # objects only: a collection meanwhile walks them for nothing
    with gc_paused():
        return _make_client(endpoint_url, attempts, unsigned_if_anonymous)


def _make_client(endpoint_url: str | None, attempts: int, unsigned_if_anonymous: bool) -> Any:
    try:
        from botocore import UNSIGNED
        from botocore.config import Config
        from botocore.session import get_session
    except ImportError as err:  # pragma: no cover - boto3 is a dependency
        raise UnsupportedSourceError("s3:// needs boto3 (and its botocore): "
                                     "pip install boto3") from err
    session = get_session()
    endpoint = endpoint_url or settings.s3_endpoint_url()
    timeout = settings.network_timeout()
    options: dict[str, Any] = dict(
        connect_timeout=timeout, read_timeout=timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        # one connection per parallel range of a file, and two more
        max_pool_connections=max(10, settings.max_workers() + 2),
        user_agent_extra=settings.user_agent())
    if endpoint:
        options["s3"] = {"addressing_style": "path"}
    if unsigned_if_anonymous and session.get_credentials() is None:
        logger.info("no AWS credentials found: sending unsigned S3 requests")
        options["signature_version"] = UNSIGNED
    return session.create_client("s3", endpoint_url=endpoint,
                                 region_name=session.get_config_variable("region") or "us-east-1",
                                 config=Config(**options))


def translate_error(err: Exception, where: str, *, writing: bool = False) -> Exception:
    """The hubloader error for a boto3/botocore exception (returned, for ``raise ... from``).

    Args:
        err: what the client raised.
        where: the ``s3://`` location, named in the message.
        writing: the request wrote (``hubloader push``): the advice differs.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    verb = "write" if writing else "read"
    if isinstance(err, NoCredentialsError):
        return AccessDeniedError(f"no AWS credentials to {verb} {where}; set AWS_ACCESS_KEY_ID/"
                                 "AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _NOT_FOUND or status == "404":
            if writing:
                bucket = where.removeprefix("s3://").split("/")[0]
                return RemoteNotFoundError(f"bucket {bucket!r} does not exist; create it first "
                                           f"(aws s3 mb s3://{bucket})")
            return RemoteNotFoundError(f"{where} does not exist ({code}); check the bucket and "
                                       "prefix, or the card's source / HUBLOADER_ENDPOINT")
        if code in _DENIED or status == "403":
            return AccessDeniedError(f"access to {where} was refused ({code}); set AWS "
                                     "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                                     f"AWS_PROFILE) that may {verb} it")
        if code in _CHANGED or status == "412":
            return RemoteChangedError(f"{where} changed while it was being fetched")
        if status.startswith("5") or code in _BUSY:
            return NetworkError(f"server error on {where}: {code} (HTTP {status})")
        return NetworkError(f"S3 error on {where}: {code} (HTTP {status}): {err}")
    if isinstance(err, (BotoCoreError, OSError)):
        return NetworkError(f"could not reach {where}: {err}; check the network and "
                            "HUBLOADER_S3_ENDPOINT_URL"
                            + ("" if writing else ", or set HUBLOADER_OFFLINE=1 to use the cache"))
    # urllib3 errors escaping botocore's body reader (ProtocolError, ReadTimeoutError ...)
    if type(err).__module__.startswith(("urllib3", "botocore")):
        return NetworkError(f"transfer of {where} broke: {err}")
    return err


def _full_sha256(checksum: str | None, kind: str | None) -> str | None:
    """A full-object ``ChecksumSHA256`` (base64) as hex; composite ones are not of the file."""
    checksum = checksum or ""
    if not checksum or "-" in checksum or kind == "COMPOSITE":
        return None
    try:
        digest = base64.b64decode(checksum, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


def _meta_sha256(metadata: dict | None) -> str | None:
    """The ``x-amz-meta-sha256`` that ``hubloader push`` writes, when it is a sha256."""
    meta = str((metadata or {}).get("sha256") or "").strip().lower()
    return meta if _SHA256_RE.match(meta) else None


def _checksum(head: dict, count: int) -> str | None:
    """A multipart object's checksum from its HEAD, as :attr:`RemoteFile.checksum`
    (``crc32:<base64>-<parts>`` when composite). It is composite unless the server says
    ``FULL_OBJECT``: some servers state a composite one with neither a type nor the
    ``-<parts>`` suffix. CRC32C and CRC64NVME need a native library and are left out."""
    for name in ("CRC32", "SHA1", "SHA256"):
        value = str(head.get(f"Checksum{name}") or "")
        if value:
            base, _, suffix = value.partition("-")
            if head.get("ChecksumType") == "FULL_OBJECT" and not suffix:
                return f"{name.lower()}:{base}"
            return f"{name.lower()}:{base}-{suffix or count}"
    return None


class S3Source(Source):
    """Objects under ``s3://bucket/prefix/``. Revisions are labels (S3 has no commits).

    Args:
        location: ``bucket/prefix`` (the part after ``s3://``).
    """

    def __init__(self, location: str):
        bucket, _, prefix = location.partition("/")
        if any(part in (".", "..") for part in prefix.split("/")):
            raise InvalidModelNameError(f"s3://{location}: '.' and '..' are not allowed in an "
                                        "S3 prefix; give the plain key prefix")
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The boto3 client (made on first use: importing boto3 is not free)."""
        if self._client is None:
            self._client = make_client()
        return self._client

    def _objects(self) -> Iterator[tuple[str, int, str | None]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": _LIST_PAGE})
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj["Size"]), str(obj.get("ETag", "")).strip('"') or None

    def list_files(self, revision: str | None) -> Listing:
        files = []
        try:
            for key, size, etag in self._objects():
                rel = key[len(self.prefix):]
                if not key.startswith(self.prefix) or not rel or rel.endswith("/") \
                        or ".." in rel.split("/"):
                    continue
                md5 = etag if etag and _MD5_RE.match(etag) else None
                files.append(RemoteFile(rel, size, etag, md5=md5))
        except Exception as err:
            raise translate_error(err, self.uri) from err
        if not files:
            raise RemoteNotFoundError(f"no objects under {self.uri}; check the bucket and prefix "
                                      "(or the card's source / HUBLOADER_ENDPOINT)")
        return Listing(revision or "main", tuple(sorted(files, key=lambda f: f.path)))

    def stated_digests(self, file: RemoteFile) -> RemoteFile:
        """One HEAD (``x-amz-checksum-mode: ENABLED``): the full-object ``ChecksumSHA256``,
        else the ``sha256`` user metadata. An object uploaded in parts (a multipart ETag)
        without either also gets its other checksum (CRC32, SHA-1, SHA-256; composite or
        full-object) and its part sizes, which verify the bytes (see
        :mod:`.part_digests`). A broken connection here is only logged: the GET
        that follows has the retries and reports the cause, and the file is then stored
        unverified. Files under 1 MiB with an MD5 ETag skip the HEAD: it would cost as much
        as their GET, and the MD5 already verifies them."""
        if file.md5 and file.size is not None and file.size < _HEAD_MIN_SIZE:
            return file
        if_match = f'"{file.etag}"' if file.etag else None
        try:
            if MULTIPART_ETAG.match((file.etag or "").lower()):
                return self._multipart_digests(file, if_match)
            head = self._head_object(self.prefix + file.path, if_match=if_match)
        except RemoteChangedError:
            raise
        except Exception as err:
            mapped = translate_error(err, self.describe(file.path))
            if isinstance(mapped, NetworkError):
                logger.debug("no stated digests for %s: %s", file.path, mapped)
                return file
            raise mapped from err
        sha256 = (_full_sha256(head.get("ChecksumSHA256"), head.get("ChecksumType"))
                  or _meta_sha256(head.get("Metadata")))
        return replace(file, sha256=sha256) if sha256 else file

    def _head_object(self, key: str, *, if_match: str | None = None) -> dict:
        """The whole HEAD answer (``x-amz-checksum-mode: ENABLED``): every checksum, its
        type, the user metadata."""
        kwargs = {"Bucket": self.bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if if_match:
            kwargs["IfMatch"] = if_match
        return self.client.head_object(**kwargs)

    def _multipart_digests(self, file: RemoteFile, if_match: str | None) -> RemoteFile:
        head = self._head_object(self.prefix + file.path, if_match=if_match)
        sha256 = (_full_sha256(head.get("ChecksumSHA256"), head.get("ChecksumType"))
                  or _meta_sha256(head.get("Metadata")))
        if sha256:
            return replace(file, sha256=sha256)
        count = int((file.etag or "").rsplit("-", 1)[1])
        checksum = _checksum(head, count)
        if checksum and "-" not in checksum.partition(":")[2]:  # full-object: needs no parts
            return replace(file, checksum=checksum)
        return replace(file, checksum=checksum, parts=self._part_sizes(file, count))

    def _part_sizes(self, file: RemoteFile, count: int) -> tuple[int, ...]:
        """The part sizes. ``HEAD ?partNumber=1`` gives the size every part but the last has,
        as S3 uploaders cut them (boto3, the AWS CLI, rclone, mc), and the count; the last
        part's HEAD must agree. Where it does not, GetObjectAttributes lists every part's size
        if the server does (SeaweedFS; AWS for objects with checksums). ``()`` when nothing
        adds up to the object: the file is then stored unverified."""
        key, size = self.prefix + file.path, int(file.size or 0)
        first, listed = self._part_head(key, 1)
        if listed == count and first > 0 and (count - 1) * first < size <= count * first:
            uniform = (first,) * (count - 1) + (size - (count - 1) * first,)
            if count == 1 or self._part_head(key, count)[0] == uniform[-1]:
                return uniform
        sizes = self._listed_parts(file)
        if len(sizes) == count and sum(sizes) == size:
            return tuple(sizes)
        logger.debug("%s: no part sizes that add up to %d bytes in %d parts", key, size, count)
        return ()

    def _listed_parts(self, file: RemoteFile) -> list[int]:
        """Every part's size from GetObjectAttributes (``[]`` where the server does not
        list them, or a policy does not allow the request)."""
        s3, key = self.client, self.prefix + file.path
        sizes: list[int] = []
        marker = 0
        try:
            while True:
                attrs = s3.get_object_attributes(Bucket=self.bucket, Key=key, MaxParts=1000,
                                                 PartNumberMarker=marker,
                                                 ObjectAttributes=["ETag", "ObjectParts"])
                if file.etag and str(attrs.get("ETag", file.etag)).strip('"') != file.etag:
                    raise RemoteChangedError(f"{self.describe(file.path)} changed while it "
                                             "was being fetched")
                parts = attrs.get("ObjectParts") or {}
                sizes += [int(p["Size"]) for p in parts.get("Parts") or [] if "Size" in p]
                if not parts.get("IsTruncated") or not parts.get("Parts"):
                    return sizes
                marker = int(parts.get("NextPartNumberMarker") or 0)
        except RemoteChangedError:
            raise
        except Exception as err:
            logger.debug("GetObjectAttributes of %s: %s", key, err)
            return []

    def _part_head(self, key: str, number: int) -> tuple[int, int]:
        """``HEAD ?partNumber=N``: the part's length and the object's part count (0, 0
        where the server refuses it or does not say). Sent without If-Match: some servers
        compare it with the part's own ETag; the GET's If-Match still pins the version."""
        try:
            part = self.client.head_object(Bucket=self.bucket, Key=key, PartNumber=number)
        except Exception as err:
            logger.debug("HEAD of part %d of %s: %s", number, key, err)
            return 0, 0
        return int(part.get("ContentLength") or 0), int(part.get("PartsCount") or 0)

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        where = self.describe(file.path)
        kwargs = {"Bucket": self.bucket, "Key": self.prefix + file.path}
        ranged = range_header(start, end)
        if ranged:
            kwargs["Range"] = ranged
        if file.etag:
            kwargs["IfMatch"] = f'"{file.etag}"'
        try:
            response = self.client.get_object(**kwargs)
        except Exception as err:
            raise translate_error(err, where) from err
        body = response["Body"]
        if ranged and response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 206:
            body.close()
            raise UnsupportedSourceError(f"{where}: the server ignores HTTP Range requests, "
                                         "which parallel downloads and resuming need; set "
                                         "HUBLOADER_PARALLEL_THRESHOLD_MB=0, or fix the server")
        try:
            while True:
                try:
                    chunk = body.read(CHUNK_SIZE)
                except Exception as err:
                    raise translate_error(err, where) from err
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()
