"""Bytes over plain HTTP(S), and one file at a plain http(s) URL (mmpretrain's and torch.hub's
weight links).

:func:`open_url` is the one client every byte GET of an http(s) source goes through: urllib3's
pooled connections (one per parallel range, kept alive across a file's parts), the
environment's proxies (``HTTP(S)_PROXY``, ``NO_PROXY``), redirects followed with the
``Authorization`` header dropped on another host (a hub's presigned storage URL must not see
the token). It reads the body in large blocks: a client that hands the body over in small
pieces costs a cold process more CPU than the transfer itself.

A web server cannot list a folder, so an :class:`HttpSource` snapshot is the one file the URL
names; its ``HEAD`` gives the size and ETag. Bytes stream through the same cache, lock,
partial-file and verification path as every other source (:mod:`hubloader.hub.transfer`).
"""

from __future__ import annotations

import contextlib
import threading
import urllib.request
from typing import Any, Iterator
from urllib.parse import urlsplit

from ... import settings
from ...errors import AccessDeniedError, InvalidModelNameError, NetworkError, RemoteNotFoundError
from .base import CHUNK_SIZE, Listing, RemoteChangedError, RemoteFile, Source, range_header

__all__ = ["HttpSource", "open_url", "read_body"]

_MAX_REDIRECTS = 10
_managers: dict[str | None, Any] = {}  # proxy URL (None: direct) -> urllib3 pool manager
_managers_lock = threading.Lock()


def _manager(url: str) -> Any:
    """The pool manager for ``url``: through the environment's proxy for its scheme, unless
    ``NO_PROXY`` names its host."""
    import urllib3

    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
        proxy = None
    with _managers_lock:
        manager = _managers.get(proxy)
        if manager is None:
            size = settings.max_workers() + 2  # one connection per parallel range, and two
            manager = (urllib3.ProxyManager(proxy, maxsize=size) if proxy
                       else urllib3.PoolManager(maxsize=size))
            _managers[proxy] = manager
    return manager


@contextlib.contextmanager
def open_url(url: str, headers: dict[str, str], *, method: str = "GET",
             where: str | None = None) -> Iterator[Any]:
    """The response to ``method url`` (a urllib3 response, body not yet read), redirects
    followed; whatever its status: the caller maps it. The connection goes back to the pool
    when the body was read to its end, and is closed when the block is left early.

    Raises:
        NetworkError: the server could not be reached, or the connection broke before an
            answer (``where`` names the file in the message; default: the URL).
    """
    import urllib3

    timeout = settings.network_timeout()
    try:
        response = _manager(url).request(
            method, url, headers=headers, preload_content=False, redirect=True,
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0,
                                  redirect=_MAX_REDIRECTS, raise_on_redirect=True),
            timeout=urllib3.Timeout(connect=timeout, read=timeout))
    except urllib3.exceptions.HTTPError as err:
        raise NetworkError(f"could not reach {where or url}: {type(err).__name__}: {err}; "
                           "check the network and the endpoint, or set HUBLOADER_OFFLINE=1 "
                           "to use the cache") from err
    finished = False
    try:
        yield response
        finished = True
    finally:
        if finished and response.length_remaining in (0, None) and method != "HEAD":
            response.release_conn()
        else:  # unread bytes would be taken for the next answer on this connection
            response.close()


def read_body(response: Any, where: str) -> Iterator[bytes]:
    """``response``'s body in blocks of up to ``CHUNK_SIZE`` bytes.

    Raises:
        NetworkError: the connection broke or timed out mid-body.
    """
    import urllib3

    while True:
        try:
            chunk = response.read(CHUNK_SIZE)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise NetworkError(f"transfer of {where} broke: {type(err).__name__}: {err}") from err
        if not chunk:
            return
        yield chunk


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

    @contextlib.contextmanager
    def _request(self, method: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
        with open_url(self.url, {"User-Agent": settings.user_agent(),
                                 "Accept-Encoding": "identity", **(headers or {})},
                      method=method) as resp:
            if resp.status == 404:
                raise RemoteNotFoundError(f"{self.url} does not exist (HTTP 404); check the URL")
            if resp.status in (401, 403):
                raise AccessDeniedError(f"{self.url} refused access (HTTP {resp.status})")
            if resp.status >= 400:
                raise NetworkError(f"{method} {self.url} failed: HTTP {resp.status}")
            yield resp

    def list_files(self, revision: str | None) -> Listing:
        with self._request("HEAD") as resp:
            size = resp.headers.get("Content-Length")
            etag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
        return Listing(revision or "main",
                       (RemoteFile(self.name, int(size) if size else None, etag),))

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        span = range_header(start, end)
        with self._request("GET", {"Range": span} if span else None) as resp:
            etag = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if file.etag and etag and etag != file.etag:
                raise RemoteChangedError(f"{self.url} changed since it was listed")
            if span and resp.status != 206:
                raise NetworkError(f"{self.url} ignored the range request")
            yield from read_body(resp, self.url)
