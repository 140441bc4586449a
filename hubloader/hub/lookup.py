"""A per-file warm-cache lookup that never touches the network: :func:`cached_file`.

The first lookup of a ``(name, file, revision)`` resolves the name (card, endpoint, URI), the
ref a moving label points at, and the card's digest; later lookups in the process are a
dictionary hit re-validated by ``stat`` calls only (no JSON, no lock, no card parsing):

* the file itself (a re-fetched file is a new inode: ``os.replace``),
* for a hub label (``main``, a branch), the ``refs/<label>`` file too (a branch that moved
  points at another snapshot); commits and S3/folder labels need no ref.

Any change to those (inode or mtime), or to ``HUBLOADER_HOME`` / ``HUBLOADER_ENDPOINT`` /
``HUBLOADER_CARDS_PATH``, sends the lookup down the full path again.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cached_file"]

_ENV = ("HUBLOADER_HOME", "XDG_CACHE_HOME", "HUBLOADER_ENDPOINT", "HUBLOADER_CARDS_PATH")
_MEMO_LIMIT = 4096
# key -> (file, ((guard path, stamp), ...))
_MEMO: dict[tuple, tuple[Path, tuple[tuple[str, tuple | None], ...]]] = {}


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def cached_file(model_name: str | os.PathLike, filename: str, *,
                revision: str | None = None) -> Path | None:
    """The verified cached copy of ``filename`` of ``model_name``, or ``None`` if it is not
    cached. Never opens a socket, never takes a lock, never writes.

    A file under its final name in the cache was verified (size and sha256) before it was
    renamed there; when the model's card gives the file's sha256, the cached copy must also
    have been verified against that digest. A moving label (``main``, a branch) is looked up
    as the cache last resolved it: call :func:`hubloader.download` to re-check the source.

    Args:
        model_name: a card name, a URI (``s3://``, ``hf://org/repo[@rev]``) or a local
            directory (the file is looked up in place).
        filename: the path inside the snapshot (``config.json``, ``1_Pooling/config.json``).
        revision: a branch, tag or commit (``hf://``), or a label for other sources.

    Returns:
        The file's path, or ``None`` when it is not in the cache.

    Raises:
        ModelNotFoundError: an unknown card name and no ``HUBLOADER_ENDPOINT``.
        InvalidModelNameError: a malformed name, or a ``filename`` escaping the snapshot.

    Example:
        >>> from hubloader.hub import cached_file
        >>> cached_file("all-MiniLM-L6-v2", "config.json")  # None until downloaded
    """
    key = (model_name, filename, revision, *map(os.environ.get, _ENV))
    hit = _MEMO.get(key)
    if hit is not None:
        path, guards = hit
        for guard, stamp in guards:
            if _stamp(guard) != stamp:
                break
        else:
            return path
        del _MEMO[key]
    path, guards = _resolve(model_name, filename, revision)
    if path is not None:
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.clear()
        _MEMO[key] = (path, guards)
    return path


def _resolve(model_name, filename: str, revision: str | None):
    from ..names import ModelRef, safe_join
    from . import cache, durability
    from .locate import locate
    from .request import SnapshotRequest
    from .sources import open_source

    target = locate(model_name, revision=revision)
    if isinstance(target, ModelRef):  # a local directory: in place
        path = safe_join(target.path, filename)
        return (path, ((str(path), _stamp(str(path))),)) if path.is_file() else (None, ())
    source = open_source(target.uri)  # the canonical URI; no client is built
    request = SnapshotRequest(source, revision=target.revision)
    durability.recover()  # blobs a dead process left unflushed are settled first
    paths = request.offline_paths()
    path = paths.file(filename)
    watched = [path]
    if source.uri.startswith("hf://") and not source.is_pinned(target.revision):
        watched.append(request.paths_for("main").meta_dir / "refs"
                       / cache.revision_key(target.revision or "main"))
    guards = tuple((str(p), _stamp(str(p))) for p in watched)
    if guards[0][1] is None:
        return None, ()
    want = target.card_files.get(filename)
    if want:
        entry = cache.read_manifest(paths)["files"].get(filename) or {}
        if entry.get("sha256") != want:
            return None, ()
    return path, guards
