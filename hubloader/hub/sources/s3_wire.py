"""The three S3 requests a download makes, signed and sent without a boto3 client.

A boto3 client parses S3's service model and endpoint rules before its first request: about
100 ms of JSON in every process that downloads, more than a listing and the first bytes of a
model together on a local server. A download needs only ListObjectsV2, HEAD and ranged GETs, so
for a server at a configured endpoint (SeaweedFS, MinIO, Ceph, R2 ...), addressed path-style,
hubloader builds those requests itself and hands them to botocore's own pieces: its SigV4
signer, the credentials boto3 would find (environment, profiles, SSO, instance roles), and its
HTTP session (proxies from the environment, ``AWS_CA_BUNDLE``/``REQUESTS_CA_BUNDLE``, timeouts,
a connection pool). Set up in about 15 ms.

AWS itself (no endpoint configured) keeps boto3's full client, which knows virtual-hosted
buckets, region redirects and access points; so does an endpoint with
``HUBLOADER_S3_CLIENT=boto3``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import quote, unquote_plus, urlencode
from xml.etree import ElementTree

from ... import constants

__all__ = ["S3Wire", "S3WireError", "Head", "range_header"]

logger = logging.getLogger(__name__)

_ATTEMPTS = 2  # a listing or HEAD is sent at most twice (boto3's client was set up the same)
_RETRY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"}
_PAGE = 1000  # keys per ListObjectsV2 page (S3's own maximum)


class S3WireError(Exception):
    """An error answer from the server: its S3 error code (``NoSuchKey``, ``AccessDenied`` ...;
    the HTTP status when the answer has no body, as a HEAD's has) and HTTP status."""

    def __init__(self, code: str, status: int, message: str = ""):
        super().__init__(f"{code} (HTTP {status}){': ' + message if message else ''}")
        self.code, self.status, self.message = code, status, message


@dataclass(frozen=True)
class Head:
    """What a HEAD says about an object's content digests."""

    checksum_sha256: str | None  # base64, as ``x-amz-checksum-sha256`` carries it
    checksum_type: str | None  # FULL_OBJECT or COMPOSITE
    meta_sha256: str | None  # the ``x-amz-meta-sha256`` user metadata


class Body:
    """A GET's streamed body: ``read(n)`` until ``b""``, then ``close()``. A body that ends
    before its ``Content-Length`` raises ``S3WireError("IncompleteBody", ...)`` instead of
    passing for a short file (botocore's HTTP session does not enforce the length)."""

    def __init__(self, raw, length: int | None):
        self._raw, self._left = raw, length

    def read(self, n: int) -> bytes:
        data = self._raw.read(n)
        if self._left is not None:
            self._left -= len(data)
            if not data and self._left > 0:
                raise S3WireError("IncompleteBody", 0, f"the body ended {self._left} bytes short")
        return data

    def close(self) -> None:
        if self._left == 0:
            self._raw.release_conn()  # read to its end: the connection goes back to the pool
        else:
            self._raw.close()


class S3Wire:
    """Signed S3 requests to ``endpoint`` (path-style: ``{endpoint}/{bucket}/{key}``).

    Args:
        endpoint: the server's URL (``http://127.0.0.1:8333``).
        timeout: connect and read timeout, seconds.
        max_pool: connections kept open (the parallel ranges of one file use one each).
    """

    def __init__(self, endpoint: str, *, timeout: float, max_pool: int):
        import botocore.session
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        session = botocore.session.Session()
        self.endpoint = endpoint.rstrip("/")
        self.region = session.get_config_variable("region") or "us-east-1"
        self.credentials = session.get_credentials()
        if self.credentials is None:
            logger.info("no AWS credentials found: sending unsigned S3 requests")
        # the CA bundle as a boto3 client picks it: AWS_CA_BUNDLE (or the profile's
        # ca_bundle), else REQUESTS_CA_BUNDLE, else the default trust store
        verify = session.get_config_variable("ca_bundle")
        if verify is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE", True)
        self._http = URLLib3Session(
            verify=verify,
            proxies=get_environ_proxies(self.endpoint), timeout=(timeout, timeout),
            max_pool_connections=max_pool)

    def _send(self, method: str, bucket: str, key: str = "", *, query: dict | None = None,
              headers: dict | None = None, stream: bool = False):
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = f"{self.endpoint}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"
        if query:
            url += "?" + urlencode(sorted(query.items()), quote_via=quote)
        request = AWSRequest(method=method, url=url,
                             headers={"User-Agent": constants.user_agent(), **(headers or {})},
                             stream_output=stream)
        if self.credentials is not None:
            S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3",
                        self.region).add_auth(request)
        response = self._http.send(request.prepare())
        if response.status_code >= 300:
            body = b"" if method == "HEAD" else response.content
            raise _error(response.status_code, body)
        return response

    def _retried(self, *args, **kwargs):
        """``_send`` for an idempotent request, once more after a broken connection or a
        server-side error (the caller's retries handle the GETs' bodies)."""
        from botocore.exceptions import BotoCoreError

        for attempt in range(_ATTEMPTS - 1):
            try:
                return self._send(*args, **kwargs)
            except S3WireError as err:
                if not (err.status >= 500 or err.code in _RETRY_CODES):
                    raise
            except BotoCoreError:
                pass
            time.sleep(0.2 * (attempt + 1))
        return self._send(*args, **kwargs)

    def list_objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int, str | None]]:
        """``(key, size, etag)`` of every object under ``prefix`` (ListObjectsV2, paged)."""
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url",
                 "max-keys": str(_PAGE)}
        while True:
            root = _parse(self._retried("GET", bucket, query=query).content)
            url_encoded = (_text(root, "EncodingType") or "").lower() == "url"
            for item in root.iterfind("{*}Contents"):
                key = _text(item, "Key") or ""
                # as botocore decodes it: AWS writes a space as "+" and a "+" as "%2B"
                yield (unquote_plus(key) if url_encoded else key, int(_text(item, "Size") or 0),
                       (_text(item, "ETag") or "").strip('"') or None)
            if (_text(root, "IsTruncated") or "").lower() != "true":
                return
            token = _text(root, "NextContinuationToken")
            if not token:
                raise S3WireError("MalformedListing", 200, "a truncated listing without a "
                                  "NextContinuationToken")
            query = {**query, "continuation-token": token}

    def head(self, bucket: str, key: str, *, if_match: str | None = None) -> Head:
        headers = {"x-amz-checksum-mode": "ENABLED"}
        if if_match:
            headers["If-Match"] = if_match
        h = self._retried("HEAD", bucket, key, headers=headers).headers
        return Head(h.get("x-amz-checksum-sha256"), h.get("x-amz-checksum-type"),
                    h.get("x-amz-meta-sha256"))

    def get(self, bucket: str, key: str, *, start: int = 0, end: int | None = None,
            if_match: str | None = None) -> Body:
        """Stream bytes ``[start, end)`` of an object (``end=None``: to its end)."""
        headers = {}
        ranged = range_header(start, end)
        if ranged:
            headers["Range"] = ranged
        if if_match:
            headers["If-Match"] = if_match
        response = self._send("GET", bucket, key, headers=headers, stream=True)
        raw = response.raw
        if ranged and response.status_code != 206:
            raw.close()
            raise S3WireError("RangeIgnored", response.status_code,
                              "the server answered a ranged GET with the whole object")
        length = response.headers.get("Content-Length")
        return Body(raw, int(length) if length and length.isdigit() else None)


def range_header(start: int, end: int | None) -> str | None:
    """The ``Range`` value for bytes ``[start, end)`` (``end=None``: to the end); ``None``
    for the whole object."""
    if not start and end is None:
        return None
    return f"bytes={start}-" + ("" if end is None else str(end - 1))


def _parse(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as err:
        raise S3WireError("MalformedXML", 200, f"the server's reply is not XML: {err}") from err


def _text(node: ElementTree.Element, tag: str) -> str | None:
    found = node.find("{*}" + tag)
    return None if found is None else (found.text or "")


def _error(status: int, body: bytes) -> S3WireError:
    code, message = str(status), ""
    if body:
        try:
            root = ElementTree.fromstring(body)
            code = _text(root, "Code") or code
            message = _text(root, "Message") or ""
        except ElementTree.ParseError:
            message = body[:200].decode("utf-8", "replace")
    return S3WireError(code, status, message)
