"""Fetching: sources (folder hubs, S3, the Hugging Face hub) into a verified local cache.

    >>> from hubloader import download
    >>> path = download("all-MiniLM-L6-v2")            # via the card's source
    >>> path = download("s3://models/bert-base-en/")   # an explicit URI

Modules, one job each: :mod:`.locate` (name -> source URI), :mod:`.sources` (backends),
:mod:`.lookup` (per-file warm lookup, no network), :mod:`.snapshot` (which files, manifest,
offline), :mod:`.transfer` (temp -> verify -> rename, retries, ranges), :mod:`.partials`
(each transfer's own temp files; claiming a dead writer's), :mod:`.locking`, :mod:`.cache`
(layout), :mod:`.cache_admin` (ls/verify/prune/rm), :mod:`.distributed` (one fetcher per
node), :mod:`.fanout` (one fetch per cluster, passed node to node), :mod:`.inflight` (background fetches joined by name), :mod:`.progress`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .. import settings
from ..errors import ModelNotFoundError
from ..names import (ModelRef, parse_model_name, safe_join, validate_download_path,
                     validate_fetch_arguments)

from .lookup import cached_file
from .inflight import Prefetch, prefetch

if TYPE_CHECKING:
    from .request import SnapshotRequest
    from .sources import Source

__all__ = ["download", "cached_file", "fetch_url", "flush", "prefetch", "Prefetch"]


def download(model_name: str | os.PathLike | ModelRef, *, revision: str | None = None,
             download_path: str | os.PathLike | None = None,
             allow_patterns: str | Sequence[str] | None = None, offline: bool | None = None,
             progress: bool = True) -> Path:
    """Fetch ``model_name``'s snapshot (config, weights, tokenizer files) and return its
    local directory.

    Where from: an explicit URI (``s3://``, ``hf://org/repo@rev``, ``file://``) wins; else
    ``HUBLOADER_ENDPOINT`` (files at ``<endpoint>/<name>/<file>``); else the card's
    ``source`` and ``revision``. Local directories (and ``file://`` URIs) are returned in place.

    Args:
        model_name: a card name, a URI, or a local directory (or its :class:`ModelRef`, parsed
            once by the caller).
        revision: a branch, tag or commit (``hf://``); a label for other sources.
        download_path: put the files in ``<download_path>/<name>/`` instead of the managed
            cache (``HUBLOADER_HOME``), FlagAI's layout. A folder there with a
            ``config.json`` that hubloader did not fetch is used in place, without network.
        allow_patterns: shell patterns (``"*.json"``) restricting the files fetched.
        offline: ``True``: cache only; ``None``: ``HUBLOADER_OFFLINE`` / ``HF_HUB_OFFLINE``.
        progress: byte bars on stderr (also off with ``HUBLOADER_DISABLE_PROGRESS_BARS=1``).

    A fetch of the same name, revision and ``download_path`` that :func:`prefetch` started
    in this process is joined rather than started again.

    Returns:
        The directory holding the files.

    Raises:
        ModelNotFoundError: unknown card, card without a source, or a missing directory.
        LocalEntryNotFoundError: offline and not cached.
        RemoteNotFoundError, RevisionNotFoundError, AccessDeniedError: the source said no.
        NetworkError: unreachable after bounded retries and nothing usable cached.
        IntegrityError: a file's digest was wrong twice; nothing was written.
        LockTimeoutError: other processes held the locks longer than
            ``HUBLOADER_LOCK_TIMEOUT``, which bounds the whole wait (not each lock's).
        ReadOnlyCacheError: files must be fetched but the cache is not writable here.
        DiskFullError, InvalidModelNameError, UnsupportedSourceError.
        InputError: an argument of the wrong type.

    Example:
        >>> download("hf://google-bert/bert-base-uncased", allow_patterns=["*.json"])
        PosixPath('/root/.cache/hubloader/models/hf--google-bert--bert-base-uncased/snapshots/...')
    """
    from . import distributed
    from .locate import flagai_folder, locate
    from .inflight import join

    validate_fetch_arguments(model_name.name if isinstance(model_name, ModelRef) else model_name,
                             revision=revision, allow_patterns=allow_patterns, offline=offline,
                             progress=progress)
    validate_download_path(download_path)
    ref = model_name if isinstance(model_name, ModelRef) else \
        parse_model_name(model_name, revision=revision)
    if download_path is not None:
        if ref.kind == "local":  # with download_path a name is joined to it, never a path
            safe_join(download_path, ref.name)
        # FlagAI's rule: a folder put there by hand is used in place, without network
        found = flagai_folder(ref, download_path, fetched=False)
        if found is not None:
            return found
    joined = join(ref.name, revision=revision, download_path=download_path,
                  allow_patterns=allow_patterns, offline=offline)
    if joined is not None:
        return joined
    target = locate(ref, revision=revision)
    if isinstance(target, ModelRef):
        if not target.path.is_dir():
            raise ModelNotFoundError(f"{target.path} is not a directory; give a model directory "
                                     "holding config.json and weights, a card name or a URI")
        return target.path
    from .request import SnapshotRequest
    from .sources import open_source

    request = SnapshotRequest(
        open_source(target.uri), revision=target.revision, card_files=target.card_files,
        allow_patterns=[allow_patterns] if isinstance(allow_patterns, str) else allow_patterns,
        progress=progress, download_path=download_path, name=target.name)
    if settings.is_offline(offline) or not distributed.active():
        return _download(request, offline=offline)
    from .fanout import across_nodes

    # local rank 0 fetches for its node; across nodes, one node fetches for all (fanout)
    return distributed.once_per_node(lambda: across_nodes(request, lambda r: _download(
                                         r, offline=offline)),
                                     lambda: _download(request, offline=True),
                                     what=target.uri,
                                     request=f"{target.revision} {download_path} "
                                             f"{request.allow_patterns}")


def fetch_url(url: str, *, offline: bool | None = None, progress: bool = True,
              immutable: bool = False) -> Path:
    """Fetch the one file at ``url`` (``http(s)://``, ``s3://``, ``file://``) into the
    verified cache and return its local path.

    Args:
        url: the file's URL; its folder is the snapshot, the file the only pattern fetched.
        offline: ``True``: cache only; ``None``: ``HUBLOADER_OFFLINE`` / ``HF_HUB_OFFLINE``.
        progress: byte bars on stderr.
        immutable: the URL names fixed content (a digest in the file name, as mmpretrain's
            and torch.hub's weights): a cached copy is used without asking the source.

    Raises:
        LocalEntryNotFoundError: offline and not cached.
        RemoteNotFoundError, AccessDeniedError, NetworkError, IntegrityError: see
            :func:`download`.
        InvalidModelNameError, UnsupportedSourceError: not a URL of a file.

    Example:
        >>> fetch_url("https://download.openmmlab.com/.../resnet18_8xb32_in1k_20210831-fbbb1da6.pth")
    """
    from ..errors import InvalidModelNameError, LocalEntryNotFoundError
    from .request import SnapshotRequest
    from .sources import open_source
    from .sources.http import HttpSource

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("http", "https"):
        source: Source = HttpSource(url)
        name = source.name  # type: ignore[attr-defined]
    elif scheme in ("s3", "file"):
        folder, name = url.rstrip("/").rsplit("/", 1)
        source = open_source(folder + "/")
    else:
        raise InvalidModelNameError(f"{url!r} is not a URL of a file; use http(s)://, s3:// or "
                                    "file://")
    request = SnapshotRequest(source, allow_patterns=[name], progress=progress, name=name)
    if immutable and not settings.is_offline(offline):
        try:
            return _download(request, offline=True) / name
        except LocalEntryNotFoundError:
            pass
    return _download(request, offline=offline) / name


def flush() -> None:
    """Wait until every file this process fetched is on disk.

    :func:`download` hands a verified file over before its bytes are flushed and flushes
    them in the background (see :mod:`hubloader.hub.durability`); the interpreter waits for
    that at exit. Call this to wait earlier, e.g. before a checkpoint of the machine.
    """
    from .durability import flush as wait_for_flushes

    wait_for_flushes()


def _download(request: SnapshotRequest, *, offline: bool | None) -> Path:
    from . import durability
    from .locking import can_write, job_lock, shared_wait, wait_while_held
    from .snapshot import (adopt_snapshot, cached_snapshot, fetch_snapshot, offline_snapshot,
                           warm_snapshot)

    if request.download_path is None:  # blobs a dead process left unflushed are settled first
        durability.recover()
    if settings.is_offline(offline):
        found = cached_snapshot(request.offline_paths(), allow_patterns=request.allow_patterns,
                                card_files=request.card_files)
        # huggingface_hub's cache may hold it: no request
        return found or adopt_snapshot(request) or offline_snapshot(request)
    # pinned or fully hashed: the cache is the answer, no request
    found = warm_snapshot(request) or (
        adopt_snapshot(request) if request.source.is_pinned(request.revision) else None)
    if found is not None:
        return found
    # One process at a time fetches a snapshot. The others wait for it to finish and, when the
    # card or a pinned revision settles it, take the finished snapshot without a client or a
    # request, all at once rather than one after another through the lock.
    fetch_lock = request.offline_paths().fetch_lock
    if not can_write(fetch_lock):
        # a read-only shared cache: a complete, current snapshot is read without a lock;
        # anything to fetch raises ReadOnlyCacheError
        return fetch_snapshot(request)
    with shared_wait():  # one HUBLOADER_LOCK_TIMEOUT for every lock this download waits on
        waited = wait_while_held(fetch_lock, what=request.uri)
        with job_lock(fetch_lock, what=request.uri, wait=not waited):  # after a wait: no queueing
            found = warm_snapshot(request)
            if found is not None:
                return found
            return fetch_snapshot(request)
