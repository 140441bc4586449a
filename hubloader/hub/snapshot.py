"""A whole snapshot into the cache: list once, pick the files, fetch what is missing or stale
(each under its own lock; the next file's transfer starts once the previous file's bytes
are in, while that one is verified and stored), record it in the manifest, return the
directory. Offline, or when the source cannot be reached, a complete cached snapshot is
returned instead.

In the managed cache every file goes through the content-addressed store (``blobs/<sha256>``,
see :mod:`.cache`): a file whose sha256 is known before the transfer (card, hub LFS metadata)
and whose blob is already there is hard-linked, not fetched; a fetched file is verified, moved
into its blob, then linked into the snapshot.
"""

from __future__ import annotations

import contextvars
import dataclasses
import errno
import fnmatch
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from .. import settings
from .._futures import results_or_cancel
from ..errors import (DiskFullError, InvalidModelNameError, LocalEntryNotFoundError, NetworkError,
                      RemoteNotFoundError)
from ..files import copy_verified, regular_size
from . import cache, durability, partials
from .cache import SnapshotPaths
from .locking import file_lock, require_writable
from .request import SnapshotRequest
from .sources import Listing, RemoteChangedError, RemoteFile, Source
from .digests import verified_by
from .transfer import fetch_file

__all__ = ["fetch_snapshot", "cached_snapshot", "warm_snapshot", "offline_snapshot", "select_files",
           "adopt_snapshot", "SnapshotRequest", "DEFAULT_PATTERNS", "Arrivals", "arrivals",
           "fetch_order"]

logger = logging.getLogger(__name__)

#: files fetched when neither the card nor ``allow_patterns`` says which: configs, tokenizer
#: files and safetensors weights; pickle weights only when no safetensors exist.
DEFAULT_PATTERNS = ("*.json", "*.txt", "*.model", "*.md", "*.safetensors")
_PICKLE_PATTERNS = ("pytorch_model*.bin",)
#: errors of os.link that mean "no hard link here" (another filesystem, a filesystem without
#: hard links, too many links): the file is copied or moved instead
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP,
            errno.EACCES, errno.ENOSYS}


#: weight files are fetched after the others: the configs and the shard index a load needs
#: first are then in place while the weights still travel
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def fetch_order(path: str) -> tuple[bool, str]:
    """Where file ``path`` comes in a snapshot's fetch (a sort key)."""
    return path.endswith(_WEIGHT_SUFFIXES), path


class Arrivals(Protocol):
    """Told what a fetch will put into its snapshot (the listed files, at ``revision``),
    then of each file as it lands there, with its manifest entry (``size``, ``etag``,
    ``sha256``, ``verified``). Called from the fetch's threads; may be told again of a file,
    or of a new listing when the fetch starts over."""

    def listed(self, snapshot_dir: Path, files: Sequence[RemoteFile], revision: str) -> None: ...

    def landed(self, path: str, entry: Mapping[str, Any]) -> None: ...


#: who is told of the files of a snapshot fetch as they land (the prefetch child tells its
#: parent, which reads the weights meanwhile; see :mod:`hubloader.load.landing`)
arrivals: contextvars.ContextVar[Arrivals | None] = contextvars.ContextVar(
    "hubloader_arrivals", default=None)


def _match(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def select_files(files: Sequence[RemoteFile], *, card_files: Mapping[str, str | None],
                 allow_patterns: Sequence[str] | None, where: str) -> list[RemoteFile]:
    """Choose which listed files to fetch.

    The card's file list, when it has one, is the set (every entry must exist at the source);
    otherwise :data:`DEFAULT_PATTERNS` (weights at the top level only). ``allow_patterns``
    then narrows the set (or, without a card list, replaces the defaults).

    Raises:
        RemoteNotFoundError: a file the card promises is missing, or nothing matched.
    """
    by_path = {f.path: f for f in files}
    if card_files:
        missing = sorted(p for p in card_files if p not in by_path)
        if missing:
            raise RemoteNotFoundError(f"{where} lacks file(s) the model card lists: "
                                      f"{', '.join(missing)}; fix the source or the card")
        chosen = [by_path[p] for p in card_files]
        if allow_patterns:
            chosen = [f for f in chosen if _match(f.path, allow_patterns)]
    elif allow_patterns:
        chosen = [f for f in files if _match(f.path, allow_patterns)]
    else:
        chosen = [f for f in files if _match(f.path, DEFAULT_PATTERNS)
                  and not (f.path.endswith(".safetensors") and "/" in f.path)]
        if not any(f.path.endswith(".safetensors") for f in chosen):
            chosen += [f for f in files if "/" not in f.path and _match(f.path, _PICKLE_PATTERNS)]
    if not chosen:
        raise RemoteNotFoundError(f"no file at {where} matches {list(allow_patterns or DEFAULT_PATTERNS)}")
    _check_paths([f.path for f in chosen], where)
    return chosen


def _check_paths(paths: list[str], where: str) -> None:
    """Refuse file names a snapshot folder cannot hold as given: absolute, with ``\\``, ``.``,
    ``..`` or empty parts, parts longer than a file name may be, or one name that is both a
    file and a folder (``a.json`` and ``a.json/b.json``)."""
    hint = "rename the object at the source, or leave it out with allow_patterns / --include"
    for path in paths:
        parts = path.split("/")
        if "\\" in path or "\x00" in path or any(p in ("", ".", "..") for p in parts):
            raise InvalidModelNameError(f"{where} lists {path!r}, which is not a plain relative "
                                        f"file name (a leading '/', '\\', '.' or '..'); {hint}")
        if any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts):
            raise InvalidModelNameError(f"{where} lists {path[:60]!r}..., a name longer than "
                                        f"the 255 bytes a file name may have; {hint}")
    files = set(paths)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                raise InvalidModelNameError(f"{where} lists {folder!r} both as a file and as a "
                                            f"folder (of {path!r}); {hint}")


def _fresh(file: RemoteFile, manifest: dict, paths: SnapshotPaths,
           card_sha256: str | None = None) -> bool:
    entry = manifest["files"].get(file.path)
    if not entry or entry.get("etag") != file.etag:
        return False
    if card_sha256 and entry.get("sha256") != card_sha256:
        return False  # the card now promises other bytes: fetch (and verify) again
    if file.size is not None and entry.get("size") != file.size:
        return False
    # a link planted as the entry is not the verified file (and is never read through)
    return regular_size(paths.file(file.path)) == entry.get("size")


def cached_snapshot(paths: SnapshotPaths, *, allow_patterns: Sequence[str] | None = None,
                    card_files: Mapping[str, str | None] | None = None,
                    match_card_sha256: bool = False) -> Path | None:
    """The snapshot directory if a complete copy is cached (every file it recorded, or the
    card promises, is in place), else ``None``. Touches no network.

    With ``match_card_sha256``, every wanted file must also have been verified against the
    sha256 the card gives for it (a card whose digests changed does not match).
    """
    manifest = cache.read_manifest(paths)
    if not manifest.get("complete"):
        return None
    recorded = manifest["files"]
    wanted = list(card_files) if card_files else list(recorded)
    if allow_patterns:
        wanted = [p for p in wanted if _match(p, allow_patterns)]
        if not wanted:
            return None
    for path in wanted:
        entry = recorded.get(path)
        if entry is None:
            return None
        if match_card_sha256 and entry.get("sha256") != (card_files or {}).get(path):
            return None
        if regular_size(paths.file(path)) != entry.get("size"):
            return None
    return paths.snapshot_dir


def warm_snapshot(request: SnapshotRequest) -> Path | None:
    """A complete cached snapshot that needs no re-check at the source, else ``None``.
    Touches no network.

    Two cases are settled by the cache alone: a pinned revision (a commit: its content can
    never change) and a card whose wanted files all carry a sha256 that the cached copies
    were verified against. A moving reference (``main``, a branch, an S3 or folder label)
    without such digests returns ``None``: the caller lists the source once.
    """
    revision, card_files = request.revision, request.card_files
    allow_patterns = request.allow_patterns
    if revision is not None and request.source.is_pinned(revision):
        found = cached_snapshot(request.paths_for(cache.revision_key(revision)),
                                allow_patterns=allow_patterns, card_files=card_files)
        if found:
            logger.debug("%s@%s is pinned and cached: no request", request.uri, revision)
            return found
    wanted = [p for p in card_files if not allow_patterns or _match(p, allow_patterns)]
    if wanted and all(card_files[p] for p in wanted):
        found = cached_snapshot(request.offline_paths(), allow_patterns=allow_patterns,
                                card_files=card_files, match_card_sha256=True)
        if found:
            logger.debug("%s: every file matches the card's sha256: no request", request.uri)
            return found
    return None


def _drop_abandoned_partials(paths: SnapshotPaths) -> None:
    """Remove this repository's temp files untouched for ``HUBLOADER_PARTIAL_MAX_AGE_HOURS``
    (a running download's heartbeat touches its files, see :class:`.partials.Heartbeat`),
    and the snapshot entries a dead process was linking into place."""
    folder = paths.meta_dir / "partial"
    limit = time.time() - settings.partial_max_age()
    for part in folder.glob("*.incomplete*") if folder.is_dir() else []:
        try:
            if part.lstat().st_mtime < limit:
                logger.info("removing %s, a partial download abandoned for more than %.0f h",
                            part, settings.partial_max_age() / 3600)
                part.unlink()
        except FileNotFoundError:
            pass
    for link in folder.glob(".*.link") if folder.is_dir() else []:
        if partials.writer_gone(link):  # (a hard link: its mtime is the blob's, not a heartbeat)
            link.unlink(missing_ok=True)


def _known_sha256(file: RemoteFile, card_sha256: str | None) -> str | None:
    """The sha256 the file must have, known before any byte moves (the card's wins)."""
    return (card_sha256 or file.sha256 or "").lower() or None


def _reusable_blob(paths: SnapshotPaths, file: RemoteFile, sha256: str | None) -> Path | None:
    """The existing blob holding ``file``'s bytes (its size checked), else ``None``."""
    blob = paths.blob(sha256)
    if blob is None or file.size is None:
        return None
    size = regular_size(blob)
    if size is None:
        return None
    if size != file.size:  # an unknown size is no proof either: fetch
        logger.warning("blob %s has %d bytes where %s has %d; fetching the file instead",
                       blob, size, file.path, file.size)
        return None
    return blob


def _link_into_snapshot(paths: SnapshotPaths, blob: Path, path: str) -> bool:
    """Hard-link ``blob`` to snapshot entry ``path`` (a copy where hard links fail), through
    a temp name and an atomic rename. ``False`` when the blob vanished meanwhile (collected
    by ``cache rm``/``prune``)."""
    final = paths.file(path)
    tmp = paths.link_temp(path, partials.new_owner())
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            os.link(blob, tmp, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as err:
            if err.errno not in _NO_LINK:
                raise
            logger.debug("cannot hard-link %s (%s); copying it", blob, err.strerror)
            try:
                shutil.copyfile(blob, tmp)
            except FileNotFoundError:
                return False
            durability.fdatasync(tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _store(paths: SnapshotPaths, verified: Path, sha256: str, path: str, *,
           behind: bool = False) -> None:
    """Move verified bytes into ``blobs/<sha256>`` (an existing blob is kept) and link them
    into the snapshot. Where the blob store cannot take a hard link (another filesystem),
    the file goes straight to the snapshot instead.

    ``behind``: the bytes were not flushed yet. The blob is marked pending before it is
    linked and flushed in the background afterwards (see :mod:`.durability`); a file that
    ends up outside the blob store is flushed here, before its rename.
    """
    blob = paths.blob(sha256)
    if blob is None:  # not a sha256: the caller's bug, never the user's input
        raise ValueError(f"no blob path for {sha256!r}")
    blob.parent.mkdir(parents=True, exist_ok=True)
    pending = durability.mark(blob) if behind else None
    try:
        _store_marked(paths, verified, blob, path, behind)
    finally:
        if pending is not None:  # also after an error: a blob linked by now gets flushed
            durability.sync_behind(blob, pending)


def _plain_file(verified: Path, final: Path, behind: bool) -> None:
    if behind:
        durability.fdatasync(verified)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(verified, final)


def _store_marked(paths: SnapshotPaths, verified: Path, blob: Path, path: str,
                  behind: bool) -> None:
    try:
        os.link(verified, blob)  # fails rather than replace: an existing blob is kept
    except FileExistsError:
        if regular_size(blob) != verified.stat().st_size:  # a damaged blob, or a link: replace it
            logger.warning("blob %s has the wrong size or is not a file; replacing it with "
                           "verified bytes", blob)
            tmp = blob.with_name(f".{blob.name}.{partials.new_owner()}.tmp")
            tmp.unlink(missing_ok=True)
            os.link(verified, tmp)
            os.replace(tmp, blob)
    except OSError as err:
        if err.errno not in _NO_LINK:
            raise
        logger.debug("no hard link into %s (%s); %s stays a plain file", blob.parent,
                     err.strerror, path)
        _plain_file(verified, paths.file(path), behind)
        return
    if not _link_into_snapshot(paths, blob, path):  # collected meanwhile: use our own bytes
        _plain_file(verified, paths.file(path), behind)
        return
    verified.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Stored:
    """What :func:`_fetch_one` put into the snapshot: the bytes' sha256, where they came
    from (the source's URI, ``blob``, or the source's local cache) and what they were
    verified against (``None``: nothing, see :func:`.digests.verified_by`)."""

    sha256: str
    origin: str
    verified: str | None


def _fetch_one(source: Source, file: RemoteFile, paths: SnapshotPaths, *, revision: str,
               card_sha256: str | None, progress: bool,
               received: Callable[[], None] | None = None,
               cancel: threading.Event | None = None) -> _Stored:
    """Put ``file`` into the snapshot (from its blob, or the source's local copy, when
    possible). The caller holds the file's lock, which only saves duplicate work: the
    transfer writes temp files of its own (adopting a dead writer's bytes, see
    :mod:`.partials`), and a blob or snapshot entry another process put in place first is
    kept."""
    known = _known_sha256(file, card_sha256)
    # a copy outside the cache (huggingface_hub's) is used, verified, unless a blob has it
    local = None if _reusable_blob(paths, file, known) else source.local_copy(file)
    if local is not None and (known is None or known == local[1]) and \
            _adopt(paths, local[0], local[1], file.path):
        logger.info("%s: taken from %s (%s), not fetched", file.path, source.local_origin,
                    local[0])
        return _Stored(local[1], source.local_origin, verified_by(file, known))
    if not known:
        file = source.stated_digests(file)
        known = _known_sha256(file, None)
    by = verified_by(file, known)
    blob = _reusable_blob(paths, file, known)
    if known and blob is not None and _link_into_snapshot(paths, blob, file.path):
        logger.info("%s: identical bytes already cached (blob %s); linked, not fetched",
                    file.path, blob.name[:12])
        return _Stored(known, "blob", by)
    partial = partials.claim(paths, file, partials.new_owner())
    if paths.blobs_dir is None:  # download_path layout: plain files
        sha256 = fetch_file(source, file, revision=revision, final=paths.file(file.path),
                            partial=partial, expected_sha256=known,
                            progress=progress, received=received, cancel=cancel)
        return _Stored(sha256, source.uri, by)
    verified = partial.with_name(partial.name + partials.VERIFIED)
    behind = durability.deferred()  # flushed in the background once it is in the blob store
    sha256 = fetch_file(source, file, revision=revision, final=verified, partial=partial,
                        expected_sha256=known, progress=progress, sync=not behind,
                        received=received, cancel=cancel)
    _store(paths, verified, sha256, file.path, behind=behind)
    return _Stored(sha256, source.uri, by)


_warned_unverified: set[str] = set()


def _warn_unverified(source: Source, file: RemoteFile) -> None:
    """Say once per source and process that files were stored without a digest to check."""
    if source.uri in _warned_unverified:
        logger.debug("%s: stored unverified", file.path)
        return
    _warned_unverified.add(source.uri)
    logger.warning("%s states no digest to verify %s against (no card sha256, sha256 "
                   "metadata, checksum or usable ETag): it is stored unverified, as are any "
                   "others like it from this source ('hubloader cache verify' lists them); "
                   "give its sha256 in the model card, or upload it with 'hubloader push'",
                   source.uri, file.path)


def _adopt(paths: SnapshotPaths, local: Path, sha256: str, path: str) -> bool:
    """Put verified bytes that another cache owns into the snapshot as a file of hubloader's
    own: cloned or copied into the blob store, never linked, moved or changed, so a later
    write to the other cache's file cannot change them. The copy is hashed again; ``False``
    (nothing kept) when it no longer has ``sha256``."""
    blob = paths.blob(sha256)
    target = blob if blob is not None else paths.file(path)
    if blob is None or regular_size(blob) is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{partials.new_owner()}.adopt")
        try:
            if copy_verified(local, tmp) != sha256:
                logger.warning("%s changed while it was copied; fetching %s instead", local, path)
                return False
            durability.fdatasync(tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    if blob is not None and not _link_into_snapshot(paths, blob, path):
        return _adopt(paths, local, sha256, path)  # the blob was collected meanwhile: again
    return True


def _check_space(todo: list[RemoteFile], paths: SnapshotPaths) -> None:
    need = sum(max(0, (f.size or 0) - partials.resumable_bytes(paths, f)) for f in todo)
    probe = paths.meta_dir
    probe.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DiskFullError(f"fetching needs {need:,} bytes but only {free:,} are free under "
                            f"{probe}; free space, or point HUBLOADER_HOME (or download_path) "
                            "at a larger disk")


class _Turn:
    """Holds ``semaphore`` from ``with`` until :meth:`release` (once) or the block's end."""

    def __init__(self, semaphore: threading.Semaphore):
        self._semaphore = semaphore
        self._held = False
        self._lock = threading.Lock()

    def __enter__(self) -> "_Turn":
        self._semaphore.acquire()
        self._held = True
        return self

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._semaphore.release()

    def __exit__(self, *exc) -> None:
        self.release()


def fetch_snapshot(request: SnapshotRequest) -> Path:
    """Bring ``request.source`` at ``request.revision`` into the cache and return the
    snapshot directory.

    Raises:
        NetworkError: the source is unreachable and nothing usable is cached.
        IntegrityError, RemoteNotFoundError, AccessDeniedError, RevisionNotFoundError,
        LockTimeoutError, DiskFullError: see :func:`hubloader.hub.transfer.fetch_file`.
        RemoteChangedError: the source changed under two listings in a row.
    """
    source = request.source
    try:
        listing = source.list_files(request.revision)
    except NetworkError as err:
        found = cached_snapshot(request.offline_paths(), allow_patterns=request.allow_patterns,
                                card_files=request.card_files)
        if found:
            logger.warning("%s is unreachable (%s); using the cached copy at %s",
                           source.uri, err, found)
            return found
        raise
    try:
        return _fetch_listed(request, listing)
    except RemoteChangedError:
        logger.warning("%s changed while it was being fetched; listing it again", source.uri)
    return _fetch_listed(request, source.list_files(request.revision))


def _fetch_listed(request: SnapshotRequest, listing: Listing) -> Path:
    source, revision, card_files = request.source, request.revision, request.card_files
    progress = request.progress
    paths = request.paths_for(cache.revision_key(listing.revision))
    chosen = select_files(listing.files, card_files=card_files,
                          allow_patterns=request.allow_patterns, where=source.uri)
    manifest = cache.read_manifest(paths)
    todo = [f for f in chosen if not _fresh(f, manifest, paths, card_files.get(f.path))]
    # the configs and the index first, then the weights in name order (shard by shard)
    todo.sort(key=lambda f: fetch_order(f.path))
    fetching = {f.path for f in todo}
    watcher = arrivals.get()
    if watcher is not None:
        watcher.listed(paths.snapshot_dir, chosen, listing.revision)
        for f in chosen:
            if f.path not in fetching:
                watcher.landed(f.path, manifest["files"][f.path])
    needs_ref = revision is not None or listing.revision != "main"
    if not todo and manifest.get("complete") and (
            not needs_ref or cache.read_ref(paths.meta_dir, revision or "main") == paths.rev):
        # current and recorded: nothing to write, so no lock (a read-only shared cache works)
        logger.info("%s@%s: %d file(s), all cached", source.uri, listing.revision, len(chosen))
        return paths.snapshot_dir
    # every file's entry goes into the closing write: an entry lost to a concurrent writer of
    # the manifest (a lock that does not hold) is written again
    entries = {f.path: manifest["files"][f.path] for f in chosen if f.path not in fetching}
    if todo:
        require_writable(paths.meta_dir, what=source.uri)
        _drop_abandoned_partials(paths)
        _check_space([f for f in todo if _reusable_blob(
            paths, f, _known_sha256(f, card_files.get(f.path))) is None], paths)
    logger.info("%s@%s: %d file(s), %d to fetch", source.uri, listing.revision, len(chosen),
                len(todo))
    network = threading.Semaphore(1)  # one file's transfer at a time
    stop = threading.Event()  # set when the caller's thread is interrupted or a file failed

    def fetch(file: RemoteFile) -> None:
        turn = _Turn(network)
        with turn, file_lock(paths.lock(file.path), what=source.describe(file.path)):
            if stop.is_set():
                return
            recorded = cache.read_manifest(paths)
            if _fresh(file, recorded, paths, card_files.get(file.path)):
                # another process did it
                logger.debug("%s was fetched by another process", file.path)
                entries[file.path] = recorded["files"][file.path]
                if watcher is not None:
                    watcher.landed(file.path, entries[file.path])
                return
            for orphan in paths.stale_partials(file):  # an older version's bytes: useless now
                if partials.writer_gone(orphan):
                    logger.info("removing %s, a partial download of an older version of %s",
                                orphan.name, file.path)
                    orphan.unlink(missing_ok=True)
            stored = _fetch_one(source, file, paths, revision=listing.revision,
                                card_sha256=card_files.get(file.path), progress=progress,
                                received=turn.release, cancel=stop)
            turn.release()  # (also when the blob store already held the bytes)
            if stored.verified is None:
                _warn_unverified(source, file)
            entry = entries[file.path] = {"size": paths.file(file.path).stat().st_size,
                                          "etag": file.etag, "sha256": stored.sha256,
                                          "origin": stored.origin, "verified": stored.verified}
            with file_lock(paths.manifest_lock):
                cache.update_manifest(paths, uri=source.uri, revision=listing.revision,
                                      files={file.path: entry})
            if watcher is not None:
                watcher.landed(file.path, entry)

    with durability.held():  # the blobs go to disk once the snapshot is recorded
        if len(todo) > 1:
            # the next file's transfer starts when this one's last byte has arrived, while
            # this one's hash catches up and it is verified, stored and recorded
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="hubloader-file") as pool:
                try:
                    # each task runs in a copy of this context: the lock waits share one budget
                    results_or_cancel([pool.submit(contextvars.copy_context().run, fetch, f)
                                       for f in todo])
                except BaseException:  # Ctrl-C, or a file failed: the other stops at once
                    stop.set()
                    raise
        else:
            for file in todo:
                fetch(file)
        with file_lock(paths.manifest_lock):
            cache.update_manifest(paths, uri=source.uri, revision=listing.revision,
                                  files=entries, complete=True)
        if needs_ref:
            cache.write_ref(paths.meta_dir, revision or "main", paths.rev)
    return paths.snapshot_dir


class _LocalOnly(Source):
    """``source`` restricted to its local copies: a file without one is not fetched."""

    supports_ranges = False

    def __init__(self, source: Source):
        self.inner, self.uri, self.local_origin = source, source.uri, source.local_origin

    def local_copy(self, file: RemoteFile) -> tuple[Path, str] | None:
        return self.inner.local_copy(file)

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None):
        raise LocalEntryNotFoundError(f"{self.describe(file.path)} has no verified local copy")


def adopt_snapshot(request: SnapshotRequest) -> Path | None:
    """The snapshot another cache on this machine holds for ``request.revision``
    (:meth:`Source.cached_listing`), brought into hubloader's cache from the local copies
    with no request; ``None`` when that cache lacks it, or lacks a file this load needs
    (config and weights unless a card or ``allow_patterns`` says which files)."""
    source, card_files, allow_patterns = request.source, request.card_files, request.allow_patterns
    listing = source.cached_listing(request.revision)
    if listing is None:
        return None
    try:
        chosen = select_files(listing.files, card_files=card_files,
                              allow_patterns=allow_patterns, where=source.uri)
    except RemoteNotFoundError:
        return None
    names = [f.path for f in chosen]
    if not names or (not card_files and not allow_patterns and not (
            settings.CONFIG_NAME in names and any(
                _match(n, ("*.safetensors", *_PICKLE_PATTERNS)) for n in names))):
        return None  # a partial copy (a config fetched alone): not a model to load
    try:
        return _fetch_listed(dataclasses.replace(request, source=_LocalOnly(source), progress=False),
                             Listing(listing.revision, tuple(chosen)))
    except LocalEntryNotFoundError as err:
        logger.info("%s: not taken from %s (%s)", source.uri, source.local_origin, err)
        return None


def offline_snapshot(request: SnapshotRequest) -> Path:
    """The cached snapshot, or :class:`LocalEntryNotFoundError` saying how to get one."""
    paths = request.offline_paths()
    found = cached_snapshot(paths, allow_patterns=request.allow_patterns,
                            card_files=request.card_files)
    if not found:
        raise LocalEntryNotFoundError(
            f"{request.uri} is not in the cache ({paths.snapshot_dir}) and offline "
            "mode is on; run once online (unset HUBLOADER_OFFLINE / offline=False), or copy the "
            "files into a directory and pass its path"
        )
    return found
