"""Looking after the managed cache: list, verify (re-hash), prune, remove.

The CLI (``hubloader cache ls|verify|prune|rm``) prints what these return.

Snapshot entries are hard links to ``blobs/<sha256>`` (see :mod:`.cache`), so sizes are
counted per inode, never per name; a blob whose link count is 1 is used by no snapshot and is
collected by ``rm`` and ``prune``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidModelNameError, LocalEntryNotFoundError
from . import cache
from ..files import sha256_file

__all__ = ["CachedSnapshot", "snapshot_files", "Problem", "PruneReport", "CacheUsage",
           "scan_cache", "verify_cache", "unverified_files", "prune_cache", "remove_from_cache",
           "repo_dir_for", "cache_usage", "collect_blobs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedSnapshot:
    """One snapshot in the cache.

    Attributes:
        repo: the repository key (folder name); uri: its source; revision: the revision key;
        path: the snapshot directory; files / size: what its manifest records;
        complete: fetched in full at least once; refs: labels resolving to it.
    """

    repo: str
    uri: str
    revision: str
    path: Path
    files: int
    size: int
    complete: bool
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Problem:
    """A file that failed verification: ``kind`` is ``missing``, ``size`` or ``sha256``."""

    path: Path
    kind: str
    expected: str
    actual: str


@dataclass
class PruneReport:
    removed: list[Path] = field(default_factory=list)
    freed: int = 0


@dataclass(frozen=True)
class CacheUsage:
    """Bytes held by the cache. ``files``: the snapshot entries' sizes added up (what a
    per-snapshot listing shows); ``on_disk``: each inode once (snapshot entries, partials and
    blobs); ``shared``: what hard links to shared blobs save (``files`` - entries' inodes)."""

    files: int
    on_disk: int
    shared: int


def _files(path: Path):
    """Every regular file under ``path`` (or ``path`` itself), symlinks not followed."""
    if path.is_symlink() or path.is_file():
        yield path
        return
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            yield p


def _blob_files(cache_dir) -> list[Path]:
    folder = cache.blobs_root(cache_dir)
    return sorted(p for p in folder.iterdir() if cache.is_blob_name(p.name)) \
        if folder.is_dir() else []


def _freed_by(paths: list[Path], cache_dir) -> tuple[int, list[Path]]:
    """What removing ``paths`` (files or folders) frees: ``(bytes, blobs left unused)``.

    An inode is freed when every link to it is among ``paths``, or when the one link left is
    its blob (which is then collected, with the blobs no snapshot used already)."""
    seen: Counter = Counter()
    stats = {}
    for path in paths:
        for f in _files(path):
            st = f.lstat()
            key = (st.st_dev, st.st_ino)
            seen[key] += 1
            stats[key] = st
    freed = sum(st.st_size for key, st in stats.items() if st.st_nlink - seen[key] <= 0)
    unused = []
    for blob in _blob_files(cache_dir):
        st = blob.lstat()
        if st.st_nlink - seen[(st.st_dev, st.st_ino)] == 1:
            unused.append(blob)
            freed += st.st_size
    return freed, unused


def collect_blobs(cache_dir: str | os.PathLike | None = None, *,
                  dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove the blobs no snapshot links to any more (``st_nlink == 1``).

    Returns:
        ``(blob, size)`` for each one removed (or, with ``dry_run``, that would be).
    """
    out = []
    for blob in _blob_files(cache_dir):
        try:
            st = blob.lstat()
            if st.st_nlink == 1:
                if not dry_run:
                    blob.unlink()
                out.append((blob, st.st_size))
        except FileNotFoundError:  # another process collected it
            continue
    for blob, _ in out:
        logger.info("%s blob %s: no snapshot uses it", "would remove" if dry_run else "removed",
                    blob.name)
    return out


def cache_usage(cache_dir: str | os.PathLike | None = None) -> CacheUsage:
    """The cache's size counted per name and per inode (see :class:`CacheUsage`)."""
    root = cache.cache_root(cache_dir)
    stats: dict = {}
    entries, entry_inodes = 0, set()
    for snap in scan_cache(cache_dir):
        for f in _files(snap.path):
            st = f.lstat()
            entries += st.st_size
            entry_inodes.add((st.st_dev, st.st_ino))
            stats[(st.st_dev, st.st_ino)] = st.st_size
    for top in ([root] if root.is_dir() else []) + _blob_files(cache_dir):
        for f in _files(top):
            st = f.lstat()
            stats[(st.st_dev, st.st_ino)] = st.st_size
    unique_entries = sum(stats[k] for k in entry_inodes)
    return CacheUsage(entries, sum(stats.values()), entries - unique_entries)


def _refs(repo_dir: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ref in sorted((repo_dir / "refs").glob("*")) if (repo_dir / "refs").is_dir() else []:
        out.setdefault(ref.read_text(encoding="utf-8").strip(), []).append(ref.name)
    return out


def scan_cache(cache_dir: str | os.PathLike | None = None) -> list[CachedSnapshot]:
    """Every snapshot under the cache root, sorted by repository and revision."""
    root = cache.cache_root(cache_dir)
    out = []
    for repo_dir in _repo_dirs(root):
        try:
            uri = json.loads((repo_dir / "source.json").read_text(encoding="utf-8"))["uri"]
        except (OSError, ValueError, KeyError):
            uri = "?"
        refs = _refs(repo_dir)
        for snap in sorted(p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()):
            paths = cache.SnapshotPaths(snap, repo_dir, snap.name)
            manifest = cache.read_manifest(paths)
            entries = manifest["files"]
            out.append(CachedSnapshot(repo_dir.name, uri, snap.name, snap, len(entries),
                                      sum(int(e.get("size") or 0) for e in entries.values()),
                                      bool(manifest.get("complete")),
                                      tuple(refs.get(snap.name, ()))))
    return out


def _repo_dirs(root: Path) -> list[Path]:
    """The repository folders directly under ``root``; a symlink is never one, so nothing
    that ``prune`` or ``rm`` walks leads outside the cache."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()) \
        if root.is_dir() else []


def _check_repo_name(name: str) -> None:
    """Refuse a name that could stand for more than one repository: an unset shell variable
    (``hubloader cache rm "$MODEL"``) must not reach the cache root."""
    if not isinstance(name, str) or not name.strip() or name.strip() in (".", "..") \
            or any(c in name for c in "*?[]\x00"):
        raise InvalidModelNameError(
            f"{name!r} does not name one cached model; give a card name, a URI or a cache key "
            "as 'hubloader cache ls' lists them (no wildcards, not empty)")


def snapshot_files(snap: CachedSnapshot) -> list[dict]:
    """``[{path, size, sha256, origin}]`` of a snapshot's manifest. ``origin`` says where the
    bytes came from: the source's URI, ``hf-cache`` (huggingface_hub's cache, linked), or
    ``blob`` (identical bytes another snapshot already had); ``?`` for files recorded before
    origins were."""
    manifest = cache.read_manifest(cache.SnapshotPaths(snap.path, snap.path.parent.parent,
                                                       snap.revision))
    return [{"path": p, "size": e.get("size"), "sha256": e.get("sha256"),
             "origin": e.get("origin") or "?"} for p, e in sorted(manifest["files"].items())]


def repo_dir_for(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of ``name``: a repository key, a URI, or a card name.

    Returns:
        A real folder directly under the cache root (never the root itself, never a link).

    Raises:
        InvalidModelNameError: ``name`` is empty, blank, ``.``, ``..`` or holds a wildcard.
        LocalEntryNotFoundError: nothing cached under that name.
    """
    _check_repo_name(name)
    root = cache.cache_root(cache_dir)
    candidates = [root / name] if "/" not in name and "\\" not in name else []
    try:
        from .locate import locate
        from .sources import open_source

        target = locate(name)
        if not hasattr(target, "kind"):
            candidates.append(root / cache.repo_key(open_source(target.uri).uri))
    except Exception as err:  # an unknown name: fall through to the error below
        logger.debug("%s does not resolve to a source: %s", name, err)
    for candidate in candidates:
        try:
            found = candidate.is_dir() and not candidate.is_symlink()
        except OSError:  # a name too long for a file name names nothing cached
            continue
        if found and candidate.parent == root and candidate.name not in ("", ".", ".."):
            return candidate
    raise LocalEntryNotFoundError(f"nothing cached for {name!r} under {root}; "
                                  "'hubloader cache ls' lists what is there")


def verify_cache(cache_dir: str | os.PathLike | None = None, *,
                 name: str | None = None) -> tuple[int, list[Problem]]:
    """Re-hash every cached file against its manifest, and every blob against its name.

    Each inode is hashed once: snapshot entries linked to one blob cost one read. With
    ``name``, only that repository's entries (and the blobs they link to) are checked.

    Returns:
        ``(files_checked, problems)``: the snapshot entries checked (blobs not counted), and
        every bad entry and blob.
    """
    snaps = scan_cache(cache_dir)
    if name is not None:
        repo = repo_dir_for(name, cache_dir).name
        snaps = [s for s in snaps if s.repo == repo]
    hashed: dict[tuple[int, int], str] = {}

    def sha256_of(path: Path, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino)
        if key not in hashed:
            hashed[key] = sha256_file(path)
        return hashed[key]

    checked, problems = 0, []
    for snap in snaps:
        paths = cache.SnapshotPaths(snap.path, snap.path.parents[1], snap.revision)
        for rel, entry in sorted(cache.read_manifest(paths)["files"].items()):
            checked += 1
            path = paths.file(rel)
            if not path.is_file():
                problems.append(Problem(path, "missing", "present", "absent"))
                continue
            st = path.stat()
            if entry.get("size") is not None and st.st_size != entry["size"]:
                problems.append(Problem(path, "size", str(entry["size"]), str(st.st_size)))
                continue
            actual = sha256_of(path, st)
            if entry.get("sha256") and actual != entry["sha256"]:
                problems.append(Problem(path, "sha256", entry["sha256"], actual))
    reached = set(hashed)
    for blob in _blob_files(cache_dir):
        st = blob.stat()
        if name is not None and (st.st_dev, st.st_ino) not in reached:
            continue
        actual = sha256_of(blob, st)
        if actual != blob.name:
            problems.append(Problem(blob, "sha256", blob.name, actual))
    logger.debug("verify: %d file(s) hashed once each", len(hashed))
    return checked, problems


def unverified_files(cache_dir: str | os.PathLike | None = None, *,
                     name: str | None = None) -> list[Path]:
    """The cached files that were never checked against a digest from their source: the
    manifest records what each file was verified against when it was fetched (``verified``:
    ``sha256``, ``md5``, ``multipart ETag`` ...) and ``None`` where the source stated nothing
    (or the entry predates the record). :func:`verify_cache` can only tell that such a file
    is unchanged since, not that it is what the source holds.
    """
    snaps = scan_cache(cache_dir)
    if name is not None:
        repo = repo_dir_for(name, cache_dir).name
        snaps = [s for s in snaps if s.repo == repo]
    out = []
    for snap in snaps:
        paths = cache.SnapshotPaths(snap.path, snap.path.parents[1], snap.revision)
        for rel, entry in sorted(cache.read_manifest(paths)["files"].items()):
            if not entry.get("verified"):
                out.append(paths.file(rel))
    return out


def prune_cache(cache_dir: str | os.PathLike | None = None, *, min_age: float = 3600.0,
                dry_run: bool = False) -> PruneReport:
    """Remove partial downloads older than ``min_age`` seconds, snapshots never completed,
    snapshots of a repository with refs that no ref points to any more (superseded
    commits), then the blobs no snapshot links to.

    Returns:
        What was (or, with ``dry_run``, would be) removed and the bytes freed (each inode
        once: a snapshot entry whose blob another snapshot still uses frees nothing).
    """
    report = PruneReport()
    root = cache.cache_root(cache_dir)
    now = time.time()

    for repo_dir in _repo_dirs(root):
        partial = repo_dir / "partial"
        for part in sorted(partial.iterdir()) if partial.is_dir() and not partial.is_symlink() else []:
            if now - part.lstat().st_mtime >= min_age:
                report.removed.append(part)
        refs = _refs(repo_dir)
        snapshots = repo_dir / "snapshots"
        for snap in _repo_dirs(snapshots) if not snapshots.is_symlink() else []:
            paths = cache.SnapshotPaths(snap, repo_dir, snap.name)
            manifest = cache.read_manifest(paths)
            stale = not manifest.get("complete") and now - snap.stat().st_mtime >= min_age
            superseded = bool(refs) and snap.name not in refs
            if stale or superseded:
                report.removed.append(snap)
                if paths.manifest.exists() and not paths.manifest.parent.is_symlink():
                    report.removed.append(paths.manifest)
    report.freed, unused = _freed_by(report.removed, cache_dir)
    if not dry_run:
        for path in report.removed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        unused = [blob for blob, _ in collect_blobs(cache_dir)]
    report.removed.extend(unused)
    return report


def remove_from_cache(name: str, cache_dir: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Delete everything cached for ``name`` (a repository key, URI or card name), then the
    blobs no other snapshot links to.

    Returns:
        ``(removed_folder, bytes_freed)``; blobs another repository still links to stay (and
        free nothing).

    Raises:
        LocalEntryNotFoundError: nothing cached under that name.
    """
    folder = repo_dir_for(name, cache_dir)
    size, _ = _freed_by([folder], cache_dir)
    shutil.rmtree(folder)
    collect_blobs(cache_dir)
    return folder, size
