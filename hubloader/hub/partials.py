"""Temp files of transfers: each writer's own, and when another's may be taken over.

Correct bytes must not rest on the cache's locks (on Lustre, GPFS and some NFS mounts they
lie), so no two writers ever share a file. Every transfer writes under a name of its own::

    partial/<path id>-<version id>.<owner>.incomplete[.parallel|.ranges|.verified]
    owner = <host>~<pid>~<nonce>

A killed download still resumes: its files are adopted by the next transfer of the same
version, by renaming them to the adopter's own name. A rename is atomic on every POSIX
filesystem and on NFS, so of several claimants exactly one wins; the others find the name
gone and start their own files. Only a writer that is provably gone is adopted from: its pid
is dead on this host, or its heartbeat (the mtime of its files, refreshed every third of
``HUBLOADER_LOCK_LIFETIME`` while it runs, see :class:`Heartbeat`) is older than the lifetime.
Comparing a heartbeat from another host assumes the hosts' clocks agree to well within it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time
from pathlib import Path

from .. import settings
from ..files import read_regular, regular_size
from .cache import SnapshotPaths
from .sources.base import RemoteFile

__all__ = ["new_owner", "claim", "resumable_bytes", "writer_gone", "unit", "held_bytes",
           "fresh_name", "Heartbeat", "PARALLEL", "RANGES", "RANGES_TMP", "VERIFIED"]

logger = logging.getLogger(__name__)

#: suffixes of the files a transfer keeps beside its temp file
PARALLEL, RANGES, RANGES_TMP, VERIFIED = ".parallel", ".ranges", ".ranges.tmp", ".verified"
_COPY = ".copy"
_SUFFIXES = ("", PARALLEL, RANGES, RANGES_TMP, VERIFIED, _COPY)
_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)~(?P<pid>[0-9]+)~[0-9a-f]+\.")


def _host() -> str:
    """This host as a name part: the hostname, and the pid namespace where there is one, so
    that containers sharing a hostname never judge each other's pids."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname())[:48] or "host"
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # 'pid:[4026531836]'
    except OSError:
        return host
    return f"{host}-ns{re.sub(r'[^0-9]', '', namespace)}"


def new_owner() -> str:
    """A name part no other transfer, in this process or any other, has: host, pid, nonce."""
    return f"{_host()}~{os.getpid()}~{secrets.token_hex(4)}"


def fresh_name(partial: Path) -> Path:
    """``partial`` under a new owner: the same file and version, a temp file of its own."""
    name, found = _OWNER.subn(f".{new_owner()}.", partial.name, count=1)
    return partial.with_name(name if found else f"{partial.name}.{new_owner()}.incomplete")


def unit(partial: Path) -> list[Path]:
    """``partial`` and the files kept beside it (parallel data, range progress, verified)."""
    return [partial.with_name(partial.name + s) for s in _SUFFIXES]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _pid_dead(partial: Path) -> bool:
    """Whether ``partial``'s writer ran on this host and its pid is dead: its open files are
    closed, nothing more can reach them."""
    match = _OWNER.search(partial.name)
    return match is not None and match["host"] == _host() and not _pid_alive(int(match["pid"]))


def writer_gone(partial: Path, *, lifetime: float | None = None) -> bool:
    """Whether the transfer that writes ``partial`` is provably gone: its pid is dead on this
    host, or none of its files has been touched for ``lifetime`` seconds (default
    ``HUBLOADER_LOCK_LIFETIME``). A name without an owner counts by its heartbeat alone."""
    if _pid_dead(partial):
        return True
    times = []
    for p in unit(partial):
        try:
            times.append(p.lstat().st_mtime)
        except FileNotFoundError:
            pass
    limit = settings.lock_lifetime() if lifetime is None else lifetime
    return bool(times) and time.time() - max(times) > limit


def _base(path: Path) -> Path:
    """The temp file a transfer's file belongs to (``x.incomplete.ranges`` -> ``x.incomplete``)."""
    name = path.name
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def _others(paths: SnapshotPaths, file: RemoteFile, mine: Path | None = None) -> list[Path]:
    """The temp files (one per transfer) of this version of ``file``, ``mine`` aside."""
    stem = paths.partial_stem(file)
    folder = stem.parent
    if not folder.is_dir():
        return []
    bases = {_base(p) for p in folder.glob(stem.name + ".*.incomplete*")}
    bases.discard(mine)
    return sorted(bases)


def resumable_bytes(paths: SnapshotPaths, file: RemoteFile) -> int:
    """The most bytes of this version of ``file`` any transfer has on disk."""
    return max(map(held_bytes, _others(paths, file)), default=0)


def range_files(partial: Path) -> tuple[Path, Path, Path]:
    """A parallel transfer's data file, its progress sidecar and the sidecar's temp file."""
    data, sidecar, tmp = (partial.with_name(partial.name + suffix)
                          for suffix in (PARALLEL, RANGES, RANGES_TMP))
    return data, sidecar, tmp


def saved_bytes(partial: Path) -> int:
    """Bytes a killed parallel download of ``partial`` recorded as written (0: none)."""
    try:
        return sum(json.loads(read_regular(range_files(partial)[1]))["done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def held_bytes(partial: Path) -> int:
    """Bytes of the file ``partial``'s transfer has on disk (verified, whole or in ranges)."""
    verified, base = partial.with_name(partial.name + VERIFIED), partial
    for p in (verified, base):
        size = regular_size(p)
        if size is not None:
            return size
    return saved_bytes(partial)


def _adopt(old: Path, mine: Path, *, copy: bool) -> bool:
    """Move ``old``'s files to ``mine``'s names, the one holding the bytes first: whoever
    renames it wins. ``False`` when another claimant was first.

    ``copy``: the old writer is gone by its heartbeat only, so it may be frozen rather than
    dead and write again through the files it holds open. Each file is then copied to a new
    one of the adopter's own, so that such late writes land in a file nobody uses any more
    (its bytes were the source's, at their offsets, so a copy taken meanwhile stays right).
    """
    def name(base: Path, suffix: str) -> Path:
        return base.with_name(base.name + suffix)

    if name(old, VERIFIED).exists():  # verified bytes: re-checked by the adopter, no request
        moves = [(VERIFIED, "")]
    elif name(old, RANGES).exists():
        moves = [(RANGES, RANGES), (PARALLEL, PARALLEL)]
    else:
        moves = [("", "")]
    for i, (src, dst) in enumerate(moves):
        try:
            os.rename(name(old, src), name(mine, dst))
        except FileNotFoundError:
            if i == 0:
                return False
            name(mine, RANGES).unlink(missing_ok=True)  # progress without its data: useless
            break
        if copy:  # the progress sidecar first, then the data it vouches for
            claimed, fresh = name(mine, dst), name(mine, _COPY)
            shutil.copyfile(claimed, fresh, follow_symlinks=False)
            os.replace(fresh, claimed)
    return True


def _discard(partial: Path) -> None:
    for p in unit(partial):
        try:
            p.unlink(missing_ok=True)
        except OSError:  # another user's file in a shared folder: left to its owner
            pass


def _adoptable(partial: Path, size: int | None) -> bool:
    """Whether every file of ``partial``'s unit that exists is a regular file of this user's
    with no other name: a link or a foreign file planted in a shared cache would make the
    adopter write or read outside it (or let its owner change bytes after they are checked).
    Complete verified bytes may have a second name, their blob's: they are only re-hashed,
    never written to."""
    verified = partial.with_name(partial.name + VERIFIED)
    for p in unit(partial):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        shared = st.st_nlink != 1 and not (p == verified and st.st_size == size)
        if not stat.S_ISREG(st.st_mode) or shared or st.st_uid != os.getuid():
            logger.warning("not resuming from %s: not a regular file of this user's", p)
            return False
    return True


def _partial_folder(folder: Path) -> None:
    """Make ``folder`` a real directory: a link in its place (which would send every temp
    file elsewhere) is removed first."""
    if folder.is_symlink():
        logger.warning("%s is a link; replacing it with a folder", folder)
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def claim(paths: SnapshotPaths, file: RemoteFile, owner: str) -> Path:
    """The temp file transfer ``owner`` writes ``file`` to. When writers that are gone left
    bytes of the same version, the most of them are adopted into it (the others removed);
    a live writer's files are left alone.
    """
    mine = paths.partial(file, owner)
    _partial_folder(mine.parent)
    gone = [p for p in _others(paths, file, mine) if writer_gone(p)]
    for old in sorted(gone, key=held_bytes, reverse=True):
        have = held_bytes(old)
        if _adoptable(old, file.size) and not mine.exists() and not mine.with_name(mine.name + RANGES).exists() \
                and _adopt(old, mine, copy=not _pid_dead(old)):
            logger.info("%s: resuming from %d bytes left by a transfer that is gone (%s)",
                        file.path, have, old.name)
        _discard(old)
    return mine


class Heartbeat:
    """While the block runs, refresh the mtime of ``partial``'s files every third of
    ``HUBLOADER_LOCK_LIFETIME``, so that other processes, on any host, can tell the writer is
    alive even while its transfer stalls or waits to retry. ``partial`` may be changed while
    it runs (a transfer that moved to a fresh temp file)."""

    def __init__(self, partial: Path):
        self.partial = partial
        self._interval = settings.lock_lifetime() / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hubloader-heartbeat",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for p in unit(self.partial):
                try:
                    os.utime(p)
                except OSError:  # not there (yet, or any more): nothing to vouch for
                    pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
