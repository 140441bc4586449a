"""Hugging Face hub repositories (``hf://org/repo@rev``) through huggingface_hub, imported lazily.

One request resolves the revision to a commit and lists the files with their LFS sha256
(``/api/models/<repo>/revision/<rev>?blobs=true``, what ``HfApi.model_info(files_metadata=True)``
asks); the bytes come from ``/resolve/<commit>/<file>``, with a ``Range`` header so a broken
transfer resumes. The listing goes through huggingface_hub's own HTTP session, headers (auth,
user agent) and error mapping, but not through ``HfApi`` or ``file_download``: importing those
modules costs a cold process more than the listing itself. The bytes go with the same headers
through :func:`hubloader.hub.sources.http.open_url` (urllib3), which reads them in large
blocks: huggingface_hub's httpx session hands a body over in small pieces, at several times
the CPU per byte. Files land in hubloader's cache, not in
huggingface_hub's, so locking, verification and offline lookup work the same for every source.
A file huggingface_hub's cache already holds is taken from there instead (verified, then
hard-linked; see :mod:`hubloader.hub.hf_cache`), and a pinned commit, or any revision offline,
that it holds in full needs no request at all.

Endpoint: ``HUBLOADER_HF_ENDPOINT``, else ``HF_ENDPOINT``, else huggingface.co.
Token: huggingface_hub's usual (``HF_TOKEN`` or ``hf auth login``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import quote
from typing import Iterator

from ... import settings
from ...errors import (AccessDeniedError, NetworkError, RemoteNotFoundError, RevisionNotFoundError,
                       UnsupportedSourceError)
from .base import Listing, RemoteChangedError, RemoteFile, Source, range_header

__all__ = ["HfSource", "translate_error"]

logger = logging.getLogger(__name__)
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _hf():
    try:
        import huggingface_hub
    except ImportError as err:  # pragma: no cover - a dependency
        raise UnsupportedSourceError("hf:// sources need huggingface_hub: "
                                     "pip install huggingface_hub") from err
    return huggingface_hub


def translate_error(err: Exception, where: str, *, writing: bool = False) -> Exception:
    """The hubloader error for a huggingface_hub (or HTTP) exception, returned for
    ``raise ... from err``; the one hub error map, for fetching and ``hubloader push``.

    Args:
        err: what huggingface_hub or its HTTP stack raised.
        where: the ``hf://`` location, named in the message.
        writing: the call wrote (a push): the advice differs.
    """
    from huggingface_hub import errors as hf_errors

    if isinstance(err, hf_errors.HfHubHTTPError):
        code = ("RevisionNotFound" if isinstance(err, hf_errors.RevisionNotFoundError)
                else "GatedRepo" if isinstance(err, hf_errors.GatedRepoError)
                else "RepoNotFound" if isinstance(err, (hf_errors.RepositoryNotFoundError,
                                                        hf_errors.RemoteEntryNotFoundError))
                else None)
        status = getattr(getattr(err, "response", None), "status_code", None)
        return _answer_error(status, code, where, str(err), writing=writing)
    if isinstance(err, hf_errors.OfflineModeIsEnabled):
        return NetworkError(f"huggingface_hub is in offline mode (HF_HUB_OFFLINE=1): {where}")
    # the HTTP stacks huggingface_hub runs on, whatever their major version (httpx2, urllib3)
    if isinstance(err, OSError) or type(err).__module__.split(".")[0].rstrip("0123456789") in (
            "httpx", "httpcore", "requests", "urllib"):
        return NetworkError(f"could not reach {where}: {type(err).__name__}: {err}; check the "
                            "network and the endpoint (HUBLOADER_HF_ENDPOINT / HF_ENDPOINT)"
                            + ("" if writing else ", or set HUBLOADER_OFFLINE=1 to use the cache"))
    return err


class HfSource(Source):
    """A model repository on a Hugging Face hub (or a server speaking its protocol).

    Args:
        repo_id: ``org/name`` or ``name``.
    """

    def __init__(self, repo_id: str):
        self.repo_id = repo_id
        self.uri = f"hf://{repo_id}"

    def _endpoint(self) -> str | None:
        return settings.hf_endpoint()

    def is_pinned(self, revision: str | None) -> bool:
        """A full 40-hex commit sha is immutable; branches and tags move."""
        return revision is not None and bool(_COMMIT_RE.match(revision))

    local_origin = "hf-cache"

    def local_copy(self, file: RemoteFile) -> tuple[Path, str] | None:
        """The file's blob in huggingface_hub's cache, when its bytes match the listing's
        digest (see :mod:`hubloader.hub.hf_cache`)."""
        from ..hf_cache import local_blob, verify_local

        blob = local_blob(self.repo_id, file)
        sha256 = verify_local(blob, file) if blob is not None else None
        return (blob, sha256) if blob is not None and sha256 else None

    def cached_listing(self, revision: str | None) -> Listing | None:
        """The snapshot huggingface_hub's cache holds for ``revision`` (a commit, or a branch
        its ``refs/`` recorded), without a request; ``None`` when it has none."""
        from ..hf_cache import cached_listing

        found = cached_listing(self.repo_id, revision)
        return found[0] if found else None

    def _url(self, template: str, **parts: str) -> str:
        from huggingface_hub import constants

        return (self._endpoint() or constants.ENDPOINT).rstrip("/") + template.format(**parts)

    @staticmethod
    def _headers() -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(library_name="hubloader",
                                library_version=settings.user_agent().partition("/")[2])

    def list_files(self, revision: str | None) -> Listing:
        _hf()
        from huggingface_hub.utils import get_session, hf_raise_for_status

        where = f"{self.uri}@{revision or 'main'}"
        url = self._url("/api/models/{repo}/revision/{rev}", repo=self.repo_id,
                        rev=quote(revision or "main", safe=""))
        try:
            response = get_session().get(url, headers=self._headers(), params={"blobs": "true"},
                                         timeout=settings.network_timeout())
            hf_raise_for_status(response)
            info = response.json()
        except Exception as err:
            raise translate_error(err, where) from err
        if not isinstance(info, dict):
            raise NetworkError(f"{where}: the hub answered {type(info).__name__}, not a model")
        sha, siblings = info.get("sha"), info.get("siblings") or []
        if not isinstance(sha, str) or not sha:
            raise RemoteNotFoundError(f"{where}: the hub named no commit for this revision")
        files = []
        for sib in siblings:
            name = sib.get("rfilename") if isinstance(sib, dict) else None
            if not isinstance(name, str):
                logger.warning("%s lists a file without a name; skipping it", where)
                continue
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or ".." in parts or "" in parts:
                logger.warning("%s lists an unsafe file name %r; skipping it", where, name)
                continue
            lfs = sib.get("lfs") if isinstance(sib.get("lfs"), dict) else {}
            sha256 = lfs.get("sha256") if isinstance(lfs.get("sha256"), str) else None
            size = sib.get("size") if sib.get("size") is not None else lfs.get("size")
            size = size if isinstance(size, int) and size >= 0 else None
            blob_id = sib.get("blobId") if isinstance(sib.get("blobId"), str) else None
            files.append(RemoteFile(name, size, sha256 or blob_id, sha256=sha256,
                                    git_sha1=None if sha256 else blob_id))
        if not files:
            raise RemoteNotFoundError(f"{where} holds no files")
        return Listing(sha, tuple(sorted(files, key=lambda f: f.path)))

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        from .http import open_url, read_body

        where = f"{self.uri}@{revision}/{file.path}"
        url = self._url("/{repo}/resolve/{rev}/{path}", repo=self.repo_id,
                        rev=quote(revision, safe=""), path=quote(file.path))
        headers = self._headers()
        headers["Accept-Encoding"] = "identity"
        ranged = range_header(start, end)
        if ranged:
            headers["Range"] = ranged
        with open_url(url, headers, where=where) as response:
            status = response.status
            if status == 412:
                raise RemoteChangedError(f"{where} changed while it was being fetched")
            if status >= 400:
                raise _answer_error(status, response.headers.get("X-Error-Code"), where,
                                   f"HTTP {status} from {response.url or url}")
            if ranged and status != 206:
                raise NetworkError(f"{where}: the server ignored the Range header "
                                   f"(HTTP {status}); cannot resume")
            yield from read_body(response, where)


def _answer_error(status: int | None, code: str | None, where: str, detail: str, *,
                 writing: bool = False) -> Exception:
    """The hubloader error for a hub's error answer: its HTTP ``status`` and ``X-Error-Code``
    (``RevisionNotFound``, ``GatedRepo``, ``RepoNotFound``, ``EntryNotFound``); ``detail``
    (what was asked, the URL: its signature is redacted) goes into the fallback message."""
    if code == "RevisionNotFound":
        return RevisionNotFoundError(f"{where}: no such revision; check the branch, tag or "
                                     "commit (hf://org/repo@REV or revision=)")
    if code == "GatedRepo":
        return AccessDeniedError(f"{where} is gated: accept its terms on the hub and set HF_TOKEN")
    if code in ("RepoNotFound", "EntryNotFound"):
        if writing:
            return RemoteNotFoundError(f"{where} does not exist and could not be created; check "
                                       "the name and that your token may create repositories")
        return RemoteNotFoundError(f"{where} does not exist (or is private: set HF_TOKEN); "
                                   "check the repository id")
    if status in (401, 403):
        if writing:
            return AccessDeniedError(f"the hub refused writing {where} (HTTP {status}); log "
                                     "in (hf auth login) or pass token= with write access")
        return AccessDeniedError(f"access to {where} was refused (HTTP {status}); set HF_TOKEN")
    if status == 404 and not writing:
        return RemoteNotFoundError(f"{where} does not exist (HTTP 404)")
    return NetworkError(f"hub error for {where}: {detail}")
