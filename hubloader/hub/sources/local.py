"""A folder hub: a local (or network-mounted) directory, ``file:///srv/models/<name>/``.

Fetching from it goes through the same cache, lock and verification as any remote source,
so a folder on a slow NFS mount is read once and a corrupt copy is caught.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator

from ...errors import AccessDeniedError, NetworkError, RemoteNotFoundError
from .base import CHUNK_SIZE, Listing, RemoteChangedError, RemoteFile, Source

__all__ = ["LocalSource"]

_SKIP_DIRS = {".git", ".hubloader", "__pycache__"}


class LocalSource(Source):
    """Files under a local directory. Revisions are labels only (a folder has one version);
    the ETag is ``<mtime_ns>-<size>``.

    Args:
        root: the directory holding the snapshot's files.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().absolute()
        self.uri = self.root.as_uri()

    def list_files(self, revision: str | None) -> Listing:
        if not self.root.is_dir():
            raise RemoteNotFoundError(
                f"folder hub {self.root} does not exist or is not a directory; check the path "
                "(or HUBLOADER_ENDPOINT) and that the volume is mounted"
            )
        files = []
        try:
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for name in sorted(filenames):
                    full = Path(dirpath) / name
                    st = full.stat()
                    rel = full.relative_to(self.root).as_posix()
                    files.append(RemoteFile(rel, st.st_size, f"{st.st_mtime_ns}-{st.st_size}"))
        except PermissionError as err:
            raise AccessDeniedError(f"cannot read folder hub {self.root}: {err}") from err
        if not files:
            raise RemoteNotFoundError(f"folder hub {self.root} holds no files")
        return Listing(revision or "main", tuple(files))

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        path = self.root / file.path
        try:
            fh = open(path, "rb")
        except FileNotFoundError as err:
            raise RemoteChangedError(f"{path} disappeared since it was listed") from err
        except PermissionError as err:
            raise AccessDeniedError(f"cannot read {path}: {err}") from err
        with fh:
            st = os.fstat(fh.fileno())
            if file.etag and f"{st.st_mtime_ns}-{st.st_size}" != file.etag:
                raise RemoteChangedError(f"{path} changed since it was listed")
            fh.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                try:
                    chunk = fh.read(want)
                except OSError as err:  # e.g. a network mount dropping out
                    if err.errno in (errno.EIO, errno.ESTALE, errno.ETIMEDOUT):
                        raise NetworkError(f"reading {path} failed: {err}") from err
                    raise
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
