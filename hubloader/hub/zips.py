"""Package zips, checked at the door, and the one place a local package path becomes a folder.

:func:`check_zip` inspects every member before anything is written and refuses zip-slip
(``..``) and absolute paths, symlinks, duplicate names, a file that is also a folder (``a``
and ``a/b``), encrypted members, too many members, and zip bombs (declared total size above
``HUBLOADER_ZIP_MAX_SIZE_MB``, or a total or per-member compression ratio above
``HUBLOADER_ZIP_MAX_RATIO``). :func:`extract_zip` also refuses a zip larger than the free space
at its destination, then extracts, counting the bytes actually inflated against the same
limits (headers can lie); running out of space midway is a :class:`DiskFullError`.
:func:`local_package` turns a relative, ``~``, symlinked folder or a ``.zip`` (extracted once
into the cache, keyed by its sha256) into one absolute real folder.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import settings
from ..errors import DiskFullError, ModelNotFoundError, PackageError
from ..files import building_dir, sha256_file

__all__ = ["ZipSummary", "check_zip", "extract_zip", "package_root", "local_package"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_NAME_MAX = 255  # the longest file or folder name most filesystems take, in bytes
_RATIO_FLOOR = 1 << 20  # members (and zips) smaller than this are not judged by ratio
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipSummary:
    """What :func:`check_zip` found: member count, declared bytes, and the worst ratio."""

    members: int
    total_size: int
    max_ratio: float

def _member_path(name: str, where: str) -> str:
    if "\x00" in name or not name:
        raise PackageError(f"{where}: a member has an empty name or a NUL byte")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE_RE.match(norm):
        raise PackageError(f"{where}: member {name!r} has an absolute path; a package holds "
                           "only relative paths — re-create it with 'hubloader pack'")
    if ".." in norm.split("/"):
        raise PackageError(f"{where}: member {name!r} escapes the package with '..' (zip-slip); "
                           "the zip was refused")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    return "/".join(parts)


def check_zip(zf: zipfile.ZipFile, *, where: str = "<zip>", max_size: int | None = None,
              max_ratio: float | None = None, max_files: int | None = None) -> ZipSummary:
    """Check every member's header without extracting anything.

    Args:
        zf: an open zip.
        where: the zip's name, for messages.
        max_size, max_ratio, max_files: limits (default: ``HUBLOADER_ZIP_MAX_SIZE_MB``,
            ``HUBLOADER_ZIP_MAX_RATIO``, ``HUBLOADER_ZIP_MAX_FILES``).

    Returns:
        A :class:`ZipSummary`.

    Raises:
        PackageError: the first problem, named.
    """
    max_size = settings.zip_max_size() if max_size is None else max_size
    max_ratio = settings.zip_max_ratio() if max_ratio is None else max_ratio
    max_files = settings.zip_max_files() if max_files is None else max_files
    infos = zf.infolist()
    if len(infos) > max_files:
        raise PackageError(f"{where} has {len(infos)} members, more than the limit {max_files} "
                           "(HUBLOADER_ZIP_MAX_FILES)")
    seen: dict[str, str] = {}
    folders: dict[str, str] = {}  # every folder a member implies, lowercased -> a member in it
    total, packed, worst = 0, 0, 0.0
    for info in infos:
        path = _member_path(info.filename, where)
        if not path and not info.is_dir():
            raise PackageError(f"{where}: member {info.filename!r} names no file (only '.' and "
                               "'/'); re-create the zip with 'hubloader pack'")
        if any(len(part.encode("utf-8", "surrogatepass")) > _NAME_MAX for part in path.split("/")):
            raise PackageError(f"{where}: member {info.filename[:60]!r}... has a name longer than "
                               f"the {_NAME_MAX} bytes a file or folder name may have; "
                               "re-create the zip with shorter names")
        key = path.lower()
        parts = key.split("/")
        for i in range(1, len(parts) + (1 if info.is_dir() else 0)):
            folder = "/".join(parts[:i])
            if folder in seen:
                raise PackageError(f"{where}: {seen[folder]!r} is a file and also a folder of "
                                   f"{info.filename!r}; a package cannot hold both")
            folders.setdefault(folder, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageError(f"{where}: member {info.filename!r} is a symlink; packages may "
                               "not contain links")
        if info.flag_bits & 0x1:
            raise PackageError(f"{where}: member {info.filename!r} is encrypted; packages must "
                               "not be encrypted")
        if info.is_dir():
            continue
        if key in seen:
            raise PackageError(f"{where}: duplicate member {info.filename!r} (also "
                               f"{seen[key]!r}); a package must name each file once")
        if key in folders:
            raise PackageError(f"{where}: {info.filename!r} is a file and also a folder of "
                               f"{folders[key]!r}; a package cannot hold both")
        seen[key] = info.filename
        total += info.file_size
        packed += info.compress_size
        if total > max_size:
            raise PackageError(f"{where} would inflate to more than {max_size:,} bytes "
                               "(HUBLOADER_ZIP_MAX_SIZE_MB); refused as a possible zip bomb")
        ratio = info.file_size / max(1, info.compress_size)
        worst = max(worst, ratio)
        if info.file_size >= _RATIO_FLOOR:
            if ratio > max_ratio:
                raise PackageError(
                    f"{where}: member {info.filename!r} inflates {ratio:.0f}x ({info.compress_size:,}"
                    f" → {info.file_size:,} bytes), above the limit {max_ratio:g}x "
                    "(HUBLOADER_ZIP_MAX_RATIO); refused as a possible zip bomb")
    # many small members each under the floor still add up to a bomb
    if total >= _RATIO_FLOOR and total / max(1, packed) > max_ratio:
        raise PackageError(
            f"{where} inflates {total / max(1, packed):.0f}x in total ({packed:,} → {total:,} "
            f"bytes), above the limit {max_ratio:g}x (HUBLOADER_ZIP_MAX_RATIO); refused as a "
            "possible zip bomb")
    return ZipSummary(len(seen), total, worst)


def _free_bytes(dest: Path) -> int:
    """Free bytes on the filesystem that will hold ``dest`` (its nearest existing folder)."""
    probe = dest.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def extract_zip(zip_path: str | os.PathLike, dest: str | os.PathLike, **limits) -> ZipSummary:
    """Check, then extract ``zip_path`` into the empty or new directory ``dest``.

    Members are written with plain permissions (no links, no special bits); the bytes
    actually inflated are counted against the size limit.

    Returns:
        The :class:`ZipSummary` of the checks.

    Raises:
        PackageError: not a zip, or any check failed (see :func:`check_zip`). Files extracted
            before a failure are removed.
        DiskFullError: the zip inflates to more than the destination's free space (refused
            before anything is written), or the disk filled up during extraction.
    """
    src, out = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as err:
        raise PackageError(f"{src} is not a readable zip file ({err})") from err
    with zf:
        summary = check_zip(zf, where=str(src), **limits)
        max_size = limits.get("max_size") or settings.zip_max_size()
        free = _free_bytes(out)
        if summary.total_size > free:
            raise DiskFullError(f"{src} inflates to {summary.total_size:,} bytes but {out} has "
                                f"{free:,} bytes free; free some space or extract elsewhere")
        out.mkdir(parents=True, exist_ok=True)
        written = 0
        created: list[Path] = []
        try:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = _member_path(info.filename, str(src))
                target = out.joinpath(*PurePosixPath(rel).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                created.append(target)
                with zf.open(info) as fin, open(target, "xb") as fout:
                    for chunk in iter(lambda: fin.read(_CHUNK), b""):
                        written += len(chunk)
                        if written > max_size:
                            raise PackageError(f"{src} inflated past {max_size:,} bytes "
                                               "(HUBLOADER_ZIP_MAX_SIZE_MB); refused as a zip bomb")
                        fout.write(chunk)
        except zipfile.BadZipFile as err:
            for p in created:
                p.unlink(missing_ok=True)
            raise PackageError(f"{src} is corrupt ({err}); re-create it") from err
        except OSError as err:
            for p in created:
                p.unlink(missing_ok=True)
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise DiskFullError(f"the disk holding {out} filled up while extracting {src} "
                                    f"({err.strerror}); nothing was kept — free some space and "
                                    "try again") from err
            raise PackageError(f"{src} cannot be extracted into {out} ({err.strerror}: "
                               f"{err.filename}); nothing was kept — re-create the zip with "
                               "'hubloader pack', or extract it elsewhere") from err
        except BaseException:
            for p in created:
                p.unlink(missing_ok=True)
            raise
    return summary


def package_root(extracted: str | os.PathLike) -> Path:
    """The package directory inside an extracted zip: the zip's root, or its single top
    folder when everything sits in one (``swin-transformer/hubconf.py``)."""
    root = Path(extracted)
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (root / settings.CONFIG_NAME).exists():
        return entries[0]
    return root


def local_package(path: str | os.PathLike) -> Path:
    """The absolute, real directory of a local model package, however it was given.

    Every entry point that takes a package (``from_pretrain``, ``AutoLoader``,
    ``model_downstream_interface.load_model``, ``hubloader validate``, the AlphaMed
    ``AutoModel``) asks here, so a relative path, ``./``, ``~``, a symlink and a ``.zip`` all
    behave as the absolute folder would: imported code keeps a stable root whatever the
    working directory, and a zip is checked (:func:`check_zip`), extracted once into
    ``<hub_home>/packages/<sha256 of the zip>/`` (temp folder, then an atomic rename) and
    loaded as that folder.

    Args:
        path: a package directory or a ``.zip`` package.

    Returns:
        The package directory (inside the extraction for a zip, see :func:`package_root`).

    Raises:
        ModelNotFoundError: ``path`` does not exist, or is a file that is not a ``.zip``.
        PackageError, DiskFullError: the zip failed a check (nothing is kept).

    Example:
        >>> local_package("./swin-transformer.zip")
        PosixPath('/home/me/.cache/hubloader/packages/3f2a.../swin-transformer')
    """
    given = Path(path).expanduser()
    try:
        real = given.resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as err:  # missing, or a symlink loop
        raise ModelNotFoundError(f"{path} does not exist; give a model package folder or "
                                 ".zip (relative to {Path.cwd()})") from err
    if real.is_dir():
        return real
    if real.is_file() and real.suffix.lower() == ".zip":
        return package_root(_unpacked(real))
    raise ModelNotFoundError(f"{path} is neither a directory nor a .zip package; give a model "
                             "package folder or a zip made by 'hubloader pack'")


def _unpacked(zip_path: Path) -> Path:
    target = settings.hub_home().expanduser().resolve() / "packages" / sha256_file(zip_path)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with building_dir(target) as tmp:
        extract_zip(zip_path, tmp)
    logger.info("extracted %s into %s", zip_path, target)
    return target
