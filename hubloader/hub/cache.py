"""Where fetched files live, and the small manifest that says what a snapshot holds.

Managed cache (default)::

    $HUBLOADER_HOME/blobs/<sha256>             every verified file once, named by its content;
                                               shared by all repositories and revisions
    $HUBLOADER_HOME/pending/                   blobs not yet flushed to disk (see .durability)
    $HUBLOADER_HOME/models/                    (HUBLOADER_HOME: see settings.hub_home)
      <repo-key>/                              one per source: s3--bucket--prefix, hf--org--repo,
        source.json                              file--<folder>--<hash>; source.json names the URI
        snapshots/<rev>/<files...>             what download() returns: hard links to blobs
                                               (plain copies where a hard link cannot be made)
        manifests/<rev>.json                   per file: size, etag, sha256; "complete" when a
                                               whole snapshot has been fetched once
        refs/<label>                           a branch/tag -> the commit it resolved to (hf://)
        partial/<id>.<owner>.incomplete[...]   resumable downloads, one set per transfer (never
                                               under a final name, see .partials)
        partial/<id>.<owner>.incomplete.verified  verified bytes on their way into blobs/
        locks/<rev>/<file>.lock, <rev>.manifest.lock

``download_path`` layout (FlagAI's): the files go to ``<download_path>/<name>/`` and the
bookkeeping (manifests, refs, partial, locks) to ``<download_path>/.hubloader/<name>/``.
No blobs there: the files are plain files.

A blob is only ever created from bytes verified while streaming (``os.link`` of the verified
temp file, which fails rather than replace an existing blob), so its name is its sha256. A
blob's link count says how many snapshot entries still use it: ``st_nlink == 1`` means none
(see :mod:`.cache_admin`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import InvalidModelNameError
from ..files import atomic_write_json as write_json_atomic  # re-exported
from ..files import atomic_write_text
from ..names import safe_join
from .sources.base import RemoteFile

__all__ = ["SnapshotPaths", "cache_root", "blobs_root", "is_blob_name", "repo_key", "managed_paths", "flat_paths",
           "read_manifest", "update_manifest", "read_ref", "write_ref", "revision_key",
           "write_json_atomic", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The managed cache's root: ``cache_dir``, else ``hub_home()/models``."""
    return Path(cache_dir).expanduser() if cache_dir else settings.hub_home() / "models"


def blobs_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The content-addressed store beside the models root: ``hub_home()/blobs`` by default."""
    return cache_root(cache_dir).parent / "blobs"


def is_blob_name(name: str) -> bool:
    """Whether ``name`` is a blob's name (a lowercase hex sha256)."""
    return _SHA256.fullmatch(name) is not None


def _safe_component(text: str, limit: int = 96) -> str:
    clean = _UNSAFE.sub("-", text).strip("-.") or "x"
    if len(clean) > limit or clean != text:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        clean = f"{clean[:limit]}-{digest}" if len(clean) > limit else clean
    return clean


def repo_key(uri: str) -> str:
    """The cache folder name of a source URI (stable, filesystem-safe, human-readable).

    Example:
        >>> repo_key("s3://models/bert-base-en/")
        's3--models--bert-base-en'
    """
    scheme, _, rest = uri.partition("://")
    if scheme == "file":
        path = rest.rstrip("/") or "/"
        digest = hashlib.sha1(path.encode()).hexdigest()[:10]
        return f"file--{_safe_component(Path(path).name or 'root', 60)}--{digest}"
    parts = [p for p in rest.split("/") if p]
    return "--".join([scheme] + [_safe_component(p) for p in parts])


def revision_key(revision: str) -> str:
    """A revision label or commit as a single safe path component (``refs/pr/1`` -> ``refs--pr--1``)."""
    return "--".join(_safe_component(p) for p in revision.split("/") if p) or "main"


@dataclass(frozen=True)
class SnapshotPaths:
    """Every path that one snapshot (a source at one revision) uses.

    Attributes:
        snapshot_dir: the directory handed to the user.
        meta_dir: the repository's bookkeeping directory.
        rev: the revision key (see :func:`revision_key`).
        blobs_dir: the content-addressed store (``None``: plain files, no blobs).
    """

    snapshot_dir: Path
    meta_dir: Path
    rev: str
    blobs_dir: Path | None = None

    def blob(self, sha256: str | None) -> Path | None:
        """Where the blob of ``sha256`` lives, or ``None`` (no blob store, or not a sha256)."""
        if self.blobs_dir is None or not sha256 or not is_blob_name(sha256.lower()):
            return None
        return self.blobs_dir / sha256.lower()

    def link_temp(self, path: str, owner: str) -> Path:
        """A temp name (beside the partials, same filesystem as the snapshot) under which
        transfer ``owner`` links or copies snapshot entry ``path`` before renaming it into
        place; the owner makes it private whether or not the locks hold."""
        return self.meta_dir / "partial" / f".{self._path_id(path)}.{owner}.link"

    def file(self, path: str) -> Path:
        """The final location of snapshot file ``path`` (refuses ``..`` and absolute paths).

        The entry itself is not resolved: one that is a link is not the verified file, and is
        replaced by it (its folders are, so none of them leads outside)."""
        folder, _, name = path.rpartition("/")
        if name in ("", ".", ".."):
            raise InvalidModelNameError(f"file name {path!r} names no file under "
                                        f"{str(self.snapshot_dir)!r}; use a plain file name")
        if path.startswith(("/", "~")) or "\\" in path or path[1:2] == ":":
            return safe_join(self.snapshot_dir, path)  # refuses what is not a plain name
        return (safe_join(self.snapshot_dir, folder) if folder else self.snapshot_dir) / name

    def lock(self, path: str) -> Path:
        folder, _, name = path.rpartition("/")
        if len(name.encode("utf-8", "surrogatepass")) > 128:  # room for the lock's own suffixes
            name = f"{name[:64]}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"
        return safe_join(self.meta_dir / "locks" / self.rev, f"{folder}/{name}.lock" if folder
                         else f"{name}.lock")

    @property
    def manifest_lock(self) -> Path:
        return self.meta_dir / "locks" / f"{self.rev}.manifest.lock"

    @property
    def fetch_lock(self) -> Path:
        """Held for a whole snapshot fetch, so that processes arriving meanwhile wait and then
        find the finished snapshot instead of each listing the source."""
        return self.meta_dir / "locks" / f"{self.rev}.fetch.lock"

    @property
    def manifest(self) -> Path:
        return self.meta_dir / "manifests" / f"{self.rev}.json"

    def partial_stem(self, file: RemoteFile) -> Path:
        """``partial/<path id>-<version id>``: what every temp file of this version of ``file``
        starts with. The version id pins size and etag, so a changed remote object never
        resumes onto an old prefix; the path id finds the older versions' orphans (see
        :meth:`stale_partials`)."""
        version = hashlib.sha256(f"{file.size}\0{file.etag}".encode()).hexdigest()[:16]
        return self.meta_dir / "partial" / f"{self._path_id(file.path)}-{version}"

    def partial(self, file: RemoteFile, owner: str) -> Path:
        """The temp file transfer ``owner`` writes ``file`` to (see :mod:`.partials`):
        ``<path id>-<version id>.<owner>.incomplete``."""
        stem = self.partial_stem(file)
        return stem.with_name(f"{stem.name}.{owner}.incomplete")

    def stale_partials(self, file: RemoteFile) -> list[Path]:
        """Temp files of ``file``'s path left by other versions of it (another etag/size)."""
        current = self.partial_stem(file).name + "."
        folder = self.meta_dir / "partial"
        if not folder.is_dir():
            return []
        return [p for p in folder.glob(self._path_id(file.path) + "-*.incomplete*")
                if not p.name.startswith(current)]

    def _path_id(self, path: str) -> str:
        return hashlib.sha256(f"{self.rev}\0{path}".encode()).hexdigest()[:24]


def managed_paths(uri: str, rev: str, *, cache_dir: str | os.PathLike | None = None) -> SnapshotPaths:
    """Paths of ``uri`` at revision key ``rev`` in the managed cache."""
    meta = cache_root(cache_dir) / repo_key(uri)
    return SnapshotPaths(meta / "snapshots" / rev, meta, rev, blobs_root(cache_dir))


def flat_paths(download_path: str | os.PathLike, name: str, rev: str) -> SnapshotPaths:
    """Paths for the ``download_path`` layout: files in ``<download_path>/<name>/``."""
    folder = safe_join(download_path, name)
    meta = safe_join(Path(download_path) / ".hubloader", name)
    return SnapshotPaths(folder, meta, rev)


def read_manifest(paths: SnapshotPaths) -> dict:
    """The snapshot's manifest (``{"files": {}, ...}`` when there is none or it is unreadable)."""
    try:
        data = json.loads(paths.manifest.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"version": MANIFEST_VERSION, "files": {}}


def update_manifest(paths: SnapshotPaths, *, uri: str, revision: str, files: dict | None = None,
                    complete: bool | None = None) -> dict:
    """Merge ``files`` (path -> {size, etag, sha256}) into the manifest and write it atomically.

    The caller holds ``paths.manifest_lock``.

    Not fsynced: on ext4 and the like an fsync commits the journal, which first writes out
    the data of every file written meanwhile, so it would wait for the blobs that
    :mod:`.durability` flushes in the background. A manifest lost to a power loss reads as
    empty (:func:`read_manifest`), and the snapshot is checked at the source again.
    """
    data = read_manifest(paths)
    data.update(version=MANIFEST_VERSION, uri=uri, revision=revision)
    data["files"].update(files or {})
    if complete:
        data["complete"] = True
    write_json_atomic(paths.manifest, data)
    source_json = paths.meta_dir / "source.json"
    if not source_json.exists():
        write_json_atomic(source_json, {"uri": uri})
    return data


def read_ref(meta_dir: Path, label: str) -> str | None:
    """The revision key a label (branch, tag) last resolved to, or ``None``."""
    try:
        value = (meta_dir / "refs" / revision_key(label)).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def write_ref(meta_dir: Path, label: str, rev: str) -> None:
    ref = meta_dir / "refs" / revision_key(label)
    if read_ref(meta_dir, label) == rev:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ref, rev)
