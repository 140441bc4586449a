"""One file at a plain http(s) URL (mmpretrain's and torch.hub's weight links).

A web server cannot list a folder, so the snapshot is the one file the URL names; its
``HEAD`` gives the size and ETag. Bytes stream through the same cache, lock, partial-file and
verification path as every other source (:mod:`hubloader.hub.transfer`).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Iterator
from urllib.parse import urlsplit

from ... import settings
from ...errors import AccessDeniedError, InvalidModelNameError, NetworkError, RemoteNotFoundError
from .base import CHUNK_SIZE, Listing, RemoteChangedError, RemoteFile, Source, range_header

__all__ = ["HttpSource"]


class HttpSource(Source):
    """The file at ``url``; the snapshot's URI is the folder of the URL.

    Raises:
        InvalidModelNameError: not an http(s) URL naming a file.
    """

    def __init__(self, url: str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or \
                not parts.path.rsplit("/", 1)[-1]:
            raise InvalidModelNameError(f"{url!r} is not an http(s) URL of a file")
        self.url = url
        folder, self.name = url.split("?", 1)[0].rsplit("/", 1)
        self.uri = folder + "/"

    def _request(self, method: str, headers: dict[str, str] | None = None):
        req = urllib.request.Request(self.url, method=method, headers={
            "User-Agent": settings.user_agent(), **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=settings.network_timeout())
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise RemoteNotFoundError(f"{self.url} does not exist (HTTP 404); check the "
                                          "URL") from err
            if err.code in (401, 403):
                raise AccessDeniedError(f"{self.url} refused access (HTTP {err.code})") from err
            raise NetworkError(f"{method} {self.url} failed: HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            raise NetworkError(f"cannot reach {self.url}: {err}") from err

    def list_files(self, revision: str | None) -> Listing:
        with self._request("HEAD") as resp:
            size = resp.headers.get("Content-Length")
            etag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        return Listing(revision or "main",
                       (RemoteFile(self.name, int(size) if size else None, etag),))

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        span = range_header(start, end)
        resp = self._request("GET", {"Range": span} if span else None)
        with resp:
            etag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if file.etag and etag and etag != file.etag:
                raise RemoteChangedError(f"{self.url} changed since it was listed")
            if span and resp.status != 206:
                raise NetworkError(f"{self.url} ignored the range request")
            while True:
                try:
                    chunk = resp.read(CHUNK_SIZE)
                except OSError as err:
                    raise NetworkError(f"reading {self.url} failed: {err}") from err
                if not chunk:
                    return
                yield chunk
