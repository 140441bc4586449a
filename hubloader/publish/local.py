"""The local side of a push: which files a model directory holds, their sizes and sha256, and
the order they go up in (data files, then ``config.json``, then the card)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..errors import ConfigError
from ..files import sha256_file

__all__ = ["PushResult", "LocalFile", "local_files", "LAST"]

#: pushed after everything else, in this order, so a reader that finds the card finds every
#: file it lists already in place
LAST = (settings.CONFIG_NAME, settings.CARD_NAME)


@dataclass
class PushResult:
    """What a push did.

    Attributes:
        uri: where the model went.
        uploaded: files sent, in upload order (the card last).
        skipped: files already there with the same sha256.
        bytes_uploaded: bytes of the files sent.
    """

    uri: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


@dataclass(frozen=True)
class LocalFile:
    """One file to push: its ``/``-separated path in the directory, where it is, size, sha256."""

    path: str
    abspath: Path
    size: int
    sha256: str


def local_files(directory: str | os.PathLike) -> list[LocalFile]:
    """Every file under ``directory`` with its size and sha256, in upload order: data files
    sorted, then ``config.json``, then ``README.md``.

    Raises:
        ConfigError: the directory is missing, empty, or holds a symlink.
    """
    from ..catalogue.cards import file_entries

    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a directory; push a model directory (save_pretrained "
                          "writes one)")
    entries = file_entries(d)
    card = d / settings.CARD_NAME
    if card.is_file():
        entries.append({"path": settings.CARD_NAME, "size": card.stat().st_size,
                        "sha256": sha256_file(card)})
    if not entries:
        raise ConfigError(f"{d} holds no files to push")
    files = [LocalFile(e["path"], d / e["path"], e["size"], e["sha256"]) for e in entries]
    rank = {name: i + 1 for i, name in enumerate(LAST)}
    return sorted(files, key=lambda f: (rank.get(f.path, 0), f.path))
