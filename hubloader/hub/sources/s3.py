"""S3 and S3-compatible servers (SeaweedFS, MinIO, Ceph) through botocore, imported lazily.

``s3://bucket/prefix/`` lists every object under the prefix; each object's ETag names its
version. A plain (non-multipart) ETag is the object's MD5, which is then verified too. Before
fetching a file whose sha256 no card gives, one HEAD asks for the object's
``x-amz-checksum-sha256`` (a full-object SHA-256, as a single-part upload with a checksum
has) or the ``x-amz-meta-sha256`` that ``hubloader push`` writes: the download is verified
against it, and identical bytes already cached are linked instead of fetched.
Endpoint: ``HUBLOADER_S3_ENDPOINT_URL``, else boto3's own (``AWS_ENDPOINT_URL_S3`` ...).
With no credentials configured, requests go unsigned (public buckets).

Two transports carry the requests: :mod:`.s3_wire` (botocore's signer and HTTP session, no
service model: for a configured endpoint) and a boto3 client (AWS itself, or
``HUBLOADER_S3_CLIENT=boto3``). Both raise their own errors; :func:`_translate` maps them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Iterator

from ... import constants
from ...errors import AccessDeniedError, NetworkError, RemoteNotFoundError, UnsupportedSourceError
from .base import CHUNK_SIZE, Listing, RemoteChangedError, RemoteFile, Source
from .s3_wire import Head, S3WireError, range_header

__all__ = ["S3Source"]

logger = logging.getLogger(__name__)

_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HEAD_MIN_SIZE = 1 << 20  # smaller files with an MD5 ETag get no HEAD for a stated sha256
_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
           "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AccountProblem"}
_CHANGED = {"PreconditionFailed", "412"}
_NEEDS_BOTO3 = "s3:// sources need boto3 (and its botocore): pip install boto3"


def _pool_size() -> int:
    """Connections kept open: one per parallel range of a file, and two more."""
    return max(10, constants.max_workers() + 2)


def _client():
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError as err:  # pragma: no cover - boto3 is a dependency
        raise UnsupportedSourceError(_NEEDS_BOTO3) from err
    session = boto3.session.Session()
    endpoint = constants.s3_endpoint_url()
    timeout = constants.network_timeout()
    options = dict(connect_timeout=timeout, read_timeout=timeout,
                   retries={"max_attempts": 2, "mode": "standard"},
                   max_pool_connections=_pool_size(),
                   user_agent_extra=constants.user_agent())
    if endpoint:
        options["s3"] = {"addressing_style": "path"}
    if session.get_credentials() is None:
        logger.info("no AWS credentials found: sending unsigned S3 requests")
        options["signature_version"] = UNSIGNED
    return session.client("s3", endpoint_url=endpoint,
                          region_name=session.region_name or "us-east-1", config=Config(**options))


class _Boto3:
    """The boto3 client as a transport, with :class:`.s3_wire.S3Wire`'s three methods."""

    def __init__(self):
        self.s3 = _client()

    def list_objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int, str | None]]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj["Size"]), str(obj.get("ETag", "")).strip('"') or None

    def head(self, bucket: str, key: str, *, if_match: str | None = None) -> Head:
        kwargs = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if if_match:
            kwargs["IfMatch"] = if_match
        head = self.s3.head_object(**kwargs)
        return Head(head.get("ChecksumSHA256"), head.get("ChecksumType"),
                    (head.get("Metadata") or {}).get("sha256"))

    def get(self, bucket: str, key: str, *, start: int = 0, end: int | None = None,
            if_match: str | None = None):
        kwargs = {"Bucket": bucket, "Key": key}
        ranged = range_header(start, end)
        if ranged:
            kwargs["Range"] = ranged
        if if_match:
            kwargs["IfMatch"] = if_match
        return self.s3.get_object(**kwargs)["Body"]


def _transport():
    endpoint = constants.s3_endpoint_url()
    if endpoint and constants.s3_client() == "auto":
        try:
            import botocore  # noqa: F401
        except ImportError as err:  # pragma: no cover - boto3 (and botocore) is a dependency
            raise UnsupportedSourceError(_NEEDS_BOTO3) from err
        from .s3_wire import S3Wire

        return S3Wire(endpoint, timeout=constants.network_timeout(), max_pool=_pool_size())
    return _Boto3()


def _translate(err: Exception, where: str) -> Exception:
    """Map a transport's exception to a hubloader error (returned, for ``raise ... from err``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    code = status = None
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", ""))
        status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    elif isinstance(err, S3WireError):
        code, status = err.code, str(err.status)
    if code == "RangeIgnored":
        return UnsupportedSourceError(f"{where}: the server ignores HTTP Range requests, which "
                                      "parallel downloads and resuming need; set "
                                      "HUBLOADER_PARALLEL_THRESHOLD_MB=0, or fix the server")
    if code is not None:
        if code in _NOT_FOUND or status == "404":
            return RemoteNotFoundError(f"{where} does not exist ({code}); check the bucket and "
                                       "prefix, or the card's source / HUBLOADER_ENDPOINT")
        if code in _DENIED or status == "403":
            return AccessDeniedError(f"access to {where} was refused ({code}); set AWS "
                                     "credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                                     "AWS_PROFILE) that may read it")
        if code in _CHANGED or status == "412":
            return RemoteChangedError(f"{where} changed while it was being fetched")
        if status.startswith("5") or code in {"SlowDown", "RequestTimeout", "InternalError"}:
            return NetworkError(f"server error reading {where}: {code} (HTTP {status})")
        return NetworkError(f"S3 error reading {where}: {code} (HTTP {status}): {err}")
    if isinstance(err, (BotoCoreError, OSError)):
        return NetworkError(f"could not reach {where}: {err}; check the network and "
                            "HUBLOADER_S3_ENDPOINT_URL, or set HUBLOADER_OFFLINE=1 to use the cache")
    # urllib3 errors escaping botocore's body reader (ProtocolError, ReadTimeoutError ...)
    if type(err).__module__.startswith(("urllib3", "botocore")):
        return NetworkError(f"transfer of {where} broke: {err}")
    return err


class S3Source(Source):
    """Objects under ``s3://bucket/prefix/``. Revisions are labels (S3 has no commits).

    Args:
        location: ``bucket/prefix`` (the part after ``s3://``).
    """

    def __init__(self, location: str):
        bucket, _, prefix = location.partition("/")
        if any(part in (".", "..") for part in prefix.split("/")):
            from ...errors import InvalidModelNameError

            raise InvalidModelNameError(f"s3://{location}: '.' and '..' are not allowed in an "
                                        "S3 prefix; give the plain key prefix")
        self.bucket = bucket
        self.prefix = (prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"
        self._api = None

    @property
    def api(self):
        """The transport (made on first use: importing botocore is not free)."""
        if self._api is None:
            self._api = _transport()
        return self._api

    def list_files(self, revision: str | None) -> Listing:
        files = []
        try:
            for key, size, etag in self.api.list_objects(self.bucket, self.prefix):
                rel = key[len(self.prefix):]
                if not key.startswith(self.prefix) or not rel or rel.endswith("/") \
                        or ".." in rel.split("/"):
                    continue
                md5 = etag if etag and _MD5_RE.match(etag) else None
                files.append(RemoteFile(rel, size, etag, md5=md5))
        except Exception as err:
            raise _translate(err, self.uri) from err
        if not files:
            raise RemoteNotFoundError(f"no objects under {self.uri}; check the bucket and prefix "
                                      "(or the card's source / HUBLOADER_ENDPOINT)")
        return Listing(revision or "main", tuple(sorted(files, key=lambda f: f.path)))

    def stated_sha256(self, file: RemoteFile) -> str | None:
        """One HEAD (``x-amz-checksum-mode: ENABLED``): the full-object ``ChecksumSHA256``,
        else the ``sha256`` user metadata. Composite (multipart) checksums are digests of
        part digests, not of the file, and are not used. A broken connection here is only
        logged: the GET that follows has the retries and reports the cause. Files under
        1 MiB with an MD5 ETag skip the HEAD: it would cost as much as their GET, and the MD5
        already verifies them."""
        if file.md5 and file.size is not None and file.size < _HEAD_MIN_SIZE:
            return None
        try:
            head = self.api.head(self.bucket, self.prefix + file.path,
                                 if_match=f'"{file.etag}"' if file.etag else None)
        except Exception as err:
            mapped = _translate(err, self.describe(file.path))
            if isinstance(mapped, NetworkError):
                logger.debug("no stated sha256 for %s: %s", file.path, mapped)
                return None
            raise mapped from err
        checksum = head.checksum_sha256 or ""
        if checksum and "-" not in checksum and head.checksum_type != "COMPOSITE":
            try:
                digest = base64.b64decode(checksum, validate=True)
            except (binascii.Error, ValueError):
                digest = b""
            if len(digest) == 32:
                return digest.hex()
        meta = str(head.meta_sha256 or "").strip().lower()
        return meta if _SHA256_RE.match(meta) else None

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        where = self.describe(file.path)
        try:
            body = self.api.get(self.bucket, self.prefix + file.path, start=start, end=end,
                                if_match=f'"{file.etag}"' if file.etag else None)
        except Exception as err:
            raise _translate(err, where) from err
        try:
            while True:
                try:
                    chunk = body.read(CHUNK_SIZE)
                except Exception as err:
                    raise _translate(err, where) from err
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()
