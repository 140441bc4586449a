"""Looking after the managed cache: list, verify (re-hash), prune, remove.

The CLI (``hubloader cache ls|verify|prune|rm``) prints what these return.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LocalEntryNotFoundError
from . import cache
from .transfer import Digests, hash_file
from .sources.base import RemoteFile

__all__ = ["CachedSnapshot", "Problem", "PruneReport", "scan_cache", "verify_cache",
           "prune_cache", "remove_from_cache", "repo_dir_for"]

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


def _du(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def _refs(repo_dir: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ref in sorted((repo_dir / "refs").glob("*")) if (repo_dir / "refs").is_dir() else []:
        out.setdefault(ref.read_text(encoding="utf-8").strip(), []).append(ref.name)
    return out


def scan_cache(cache_dir: str | os.PathLike | None = None) -> list[CachedSnapshot]:
    """Every snapshot under the cache root, sorted by repository and revision."""
    root = cache.cache_root(cache_dir)
    out = []
    for repo_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
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


def repo_dir_for(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of ``name``: a repository key, a URI, or a card name.

    Raises:
        LocalEntryNotFoundError: nothing cached under that name.
    """
    root = cache.cache_root(cache_dir)
    candidates = [root / name] if "/" not in name and name not in (".", "..") else []
    try:
        from .locate import locate
        from .sources import open_source

        target = locate(name)
        if not hasattr(target, "kind"):
            candidates.append(root / cache.repo_key(open_source(target.uri).uri))
    except Exception as err:  # an unknown name: fall through to the error below
        logger.debug("%s does not resolve to a source: %s", name, err)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise LocalEntryNotFoundError(f"nothing cached for {name!r} under {root}; "
                                  "'hubloader cache ls' lists what is there")


def verify_cache(cache_dir: str | os.PathLike | None = None, *,
                 name: str | None = None) -> tuple[int, list[Problem]]:
    """Re-hash every cached file against its manifest.

    Returns:
        ``(files_checked, problems)``.
    """
    snaps = scan_cache(cache_dir)
    if name is not None:
        repo = repo_dir_for(name, cache_dir).name
        snaps = [s for s in snaps if s.repo == repo]
    checked, problems = 0, []
    for snap in snaps:
        paths = cache.SnapshotPaths(snap.path, snap.path.parents[1], snap.revision)
        for rel, entry in sorted(cache.read_manifest(paths)["files"].items()):
            checked += 1
            path = paths.file(rel)
            if not path.is_file():
                problems.append(Problem(path, "missing", "present", "absent"))
                continue
            size = path.stat().st_size
            if entry.get("size") is not None and size != entry["size"]:
                problems.append(Problem(path, "size", str(entry["size"]), str(size)))
                continue
            digests = Digests(RemoteFile(rel, size))
            hash_file(path, digests)
            actual = digests.sha256.hexdigest()
            if entry.get("sha256") and actual != entry["sha256"]:
                problems.append(Problem(path, "sha256", entry["sha256"], actual))
    return checked, problems


def prune_cache(cache_dir: str | os.PathLike | None = None, *, min_age: float = 3600.0,
                dry_run: bool = False) -> PruneReport:
    """Remove partial downloads older than ``min_age`` seconds, snapshots never completed,
    and snapshots of a repository with refs that no ref points to any more (superseded
    commits).

    Returns:
        What was (or, with ``dry_run``, would be) removed and the bytes freed.
    """
    report = PruneReport()
    root = cache.cache_root(cache_dir)
    now = time.time()

    def drop(path: Path) -> None:
        report.freed += _du(path)
        report.removed.append(path)
        if dry_run:
            return
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    for repo_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        for part in sorted((repo_dir / "partial").glob("*")) if (repo_dir / "partial").is_dir() else []:
            if now - part.stat().st_mtime >= min_age:
                drop(part)
        refs = _refs(repo_dir)
        for snap in sorted(p for p in (repo_dir / "snapshots").glob("*") if p.is_dir()):
            paths = cache.SnapshotPaths(snap, repo_dir, snap.name)
            manifest = cache.read_manifest(paths)
            stale = not manifest.get("complete") and now - snap.stat().st_mtime >= min_age
            superseded = bool(refs) and snap.name not in refs
            if stale or superseded:
                drop(snap)
                if paths.manifest.exists():
                    drop(paths.manifest)
    return report


def remove_from_cache(name: str, cache_dir: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Delete everything cached for ``name`` (a repository key, URI or card name).

    Returns:
        ``(removed_folder, bytes_freed)``.

    Raises:
        LocalEntryNotFoundError: nothing cached under that name.
    """
    folder = repo_dir_for(name, cache_dir)
    size = _du(folder)
    shutil.rmtree(folder)
    return folder, size
