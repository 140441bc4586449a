"""Local file primitives every writer shares: a file's sha256, temporary names beside a final
path, and atomic text/JSON writes (temp file in the same directory, then ``os.replace``).

A leaf module: it imports nothing from hubloader, so the hub, saving and publishing code can
all use it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any, Iterator

__all__ = ["sha256_file", "temp_name", "atomic_write_text", "atomic_write_json", "open_regular",
           "regular_size", "read_regular", "copy_verified"]

_CHUNK = 8 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a whole local file.

    Raises:
        OSError: the file cannot be read.

    Example:
        >>> sha256_file("model.safetensors")
        'e3b0c442...'
    """
    with open(path, "rb") as fh:
        file_digest = getattr(hashlib, "file_digest", None)  # Python 3.11+
        if file_digest is not None:
            return file_digest(fh, "sha256").hexdigest()
        h = hashlib.sha256()
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
        return h.hexdigest()


def temp_name(final: str | os.PathLike) -> Path:
    """A hidden name beside ``final`` that no other process or thread picks.

    Being in the same directory, it is renamed over ``final`` atomically.

    Example:
        >>> temp_name(Path("out/config.json"))  # out/.config.json.<pid>.<random>.tmp
    """
    p = Path(final)
    return p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def building_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``final`` to fill; when the block ends without an error it is
    renamed into place (a folder another process put there first is kept, as the same content
    under the same name). The temporary folder is removed in every case.

    Example:
        >>> with building_dir(cache / "packages" / digest) as tmp:
        ...     extract_zip(zip_path, tmp)
    """
    tmp = temp_name(final)
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same folder first
            if not Path(final).is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``:
    readers see the old or the new content, never a mix, and a failure leaves no temp file.

    Not fsynced: callers that need the bytes on disk flush them themselves.

    Raises:
        OSError: the directory is missing or not writable, or the disk is full.
    """
    tmp = temp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 1) -> None:
    """Write ``data`` as JSON (sorted keys, a final newline) to ``path`` atomically, creating
    the parent directory. See :func:`atomic_write_text`.

    Raises:
        TypeError: ``data`` is not JSON-serialisable (nothing is written).
        OSError: as :func:`atomic_write_text`.
    """
    text = json.dumps(data, indent=indent, sort_keys=True) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def open_regular(path: str | os.PathLike, flags: int, mode: int = 0o644) -> int:
    """A descriptor of ``path`` that is a regular file, opened without following a symlink.

    A file in a shared cache may have been replaced by a link to a file elsewhere; writing or
    reading through it would reach outside the cache. The last component is opened with
    ``O_NOFOLLOW`` and the open file checked with ``fstat`` (a FIFO or device is refused
    too, without blocking on it).

    Raises:
        FileNotFoundError: ``path`` is missing (and ``flags`` has no ``O_CREAT``).
        OSError: ``path`` is a symlink (``ELOOP``) or not a regular file (``EINVAL``).
    """
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags | os.O_NOFOLLOW | nonblock | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        if nonblock:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def regular_size(path: str | os.PathLike) -> int | None:
    """The size of ``path`` if it is a regular file itself (not a link to one), else ``None``."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, a regular file, read without following a symlink
    (see :func:`open_regular`)."""
    with os.fdopen(open_regular(path, os.O_RDONLY), "rb") as fh:
        return fh.read()


_FICLONE = 0x40049409  # Linux: share the source's extents copy-on-write (btrfs, XFS)


def copy_verified(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy ``src`` to the new file ``dst`` and return the sha256 of what ``dst`` holds.

    The copy is a file of its own, so a later write to ``src`` never changes it. Where the
    filesystem can, it is a copy-on-write clone (no bytes written, no space used until one of
    them changes); elsewhere the bytes are copied. Either way the digest is taken from ``dst``,
    so the caller compares it with the digest it trusts and knows what it kept.

    Raises:
        OSError: ``src`` cannot be read or ``dst`` created (an existing ``dst`` is refused).
    """
    import fcntl

    with open(src, "rb") as fin, open(dst, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
        except OSError:
            digest = hashlib.sha256()  # one pass: each block is hashed as it is written
            while block := fin.read(_CHUNK):
                fout.write(block)
                digest.update(block)
            return digest.hexdigest()
    return sha256_file(dst)  # a clone: its bytes were never read, so read them now
