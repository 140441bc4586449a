"""Files already in huggingface_hub's cache, reused for ``hf://`` sources (read only).

huggingface_hub keeps a repository as::

    <HF_HUB_CACHE>/models--org--name/
        refs/<branch>                  the commit the branch last resolved to
        snapshots/<commit>/<path>      a symlink to ../../blobs/<blob>
        blobs/<blob>                   the bytes; <blob> is the sha256 for LFS files and the
                                       git blob sha1 for the others

A file found there is checked against the digest its blob name records (sha256 or git sha1)
and then *copied* into hubloader's blob store (a copy-on-write clone where the filesystem
offers one), the copy hashed again: hubloader's file never shares an inode with
huggingface_hub's, so nothing written to that cache later, in place or not, changes what
hubloader verified. hubloader never writes into huggingface_hub's cache.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from .. import settings
from .digests import Digests, hash_file
from .sources.base import Listing, RemoteFile

__all__ = ["repo_dir", "cached_listing", "local_blob", "verify_local", "ORIGIN"]

logger = logging.getLogger(__name__)

#: how the manifest and ``hubloader cache ls`` name a file taken from huggingface_hub's cache
ORIGIN = "hf-cache"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def repo_dir(repo_id: str) -> Path:
    """huggingface_hub's folder for model repository ``repo_id``."""
    return settings.hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))


def _commit_for(repo: Path, revision: str) -> str | None:
    if _SHA1.match(revision):
        return revision
    try:
        commit = (repo / "refs" / revision).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return commit if _SHA1.match(commit) else None


def cached_listing(repo_id: str, revision: str | None) -> tuple[Listing, Path] | None:
    """The files of ``repo_id`` at ``revision`` that huggingface_hub's cache holds, as a
    :class:`Listing` (each file's etag is its blob name, as :class:`HfSource` lists it), and
    the snapshot folder; ``None`` when the cache has no such snapshot. Touches no network."""
    repo = repo_dir(repo_id)
    commit = _commit_for(repo, revision or "main")
    snap = repo / "snapshots" / commit if commit else None
    if snap is None or not snap.is_dir():
        return None
    files = []
    for path in sorted(snap.rglob("*")):
        if not path.is_file():  # a dangling link: the blob went away
            continue
        rel = path.relative_to(snap).as_posix()
        blob = path.resolve().name
        sha256 = blob if _SHA256.match(blob) else None
        git_sha1 = blob if _SHA1.match(blob) else None
        files.append(RemoteFile(rel, path.stat().st_size, sha256 or git_sha1, sha256=sha256,
                                git_sha1=git_sha1))
    if not files:
        return None
    return Listing(commit or "", tuple(files)), snap


def local_blob(repo_id: str, file: RemoteFile) -> Path | None:
    """huggingface_hub's blob holding ``file`` (found by the sha256 or git blob id the
    listing gives), when it exists with the listed size."""
    name = file.sha256 or file.git_sha1
    if not name:
        return None
    blob = repo_dir(repo_id) / "blobs" / name.lower()
    try:
        size = blob.stat().st_size
    except OSError:
        return None
    return blob if file.size is None or size == file.size else None


def verify_local(path: Path, file: RemoteFile) -> str | None:
    """The sha256 of ``path`` when its bytes match the digest ``file`` records (its sha256,
    else its git blob sha1), else ``None`` (logged). A file with no digest is not trusted."""
    if not (file.sha256 or file.git_sha1):
        return None
    digests = Digests(dataclasses.replace(file, size=path.stat().st_size))
    hash_file(path, digests)
    if digests.mismatch(None) is not None:
        logger.warning("%s in huggingface_hub's cache does not match its recorded digest; "
                       "not using it", path)
        return None
    return digests.sha256.hexdigest()
