"""What one snapshot fetch is asked to do: the source, the revision, which files, where they
go. :mod:`.snapshot` takes one :class:`SnapshotRequest` instead of a row of keywords."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from . import cache
from .cache import SnapshotPaths
from .sources.base import Source

__all__ = ["SnapshotRequest"]


@dataclass(frozen=True)
class SnapshotRequest:
    """One snapshot to bring into (or find in) the cache.

    Attributes:
        source: the backend.
        revision: the revision asked for (``None``: the source's default).
        card_files: path -> sha256 (or ``None``) promised by the card (empty: no card list).
        allow_patterns: shell patterns narrowing the files (``None``: the defaults).
        progress: byte bars on stderr.
        download_path: FlagAI's layout: files in ``<download_path>/<name>/`` instead of the
            managed cache (``None``).
        name: the folder name under ``download_path``.

    Example:
        >>> request = SnapshotRequest(open_source("s3://models/bert"), allow_patterns=["*.json"])
        >>> fetch_snapshot(request)
    """

    source: Source
    revision: str | None = None
    card_files: Mapping[str, str | None] = field(default_factory=dict)
    allow_patterns: Sequence[str] | None = None
    progress: bool = True
    download_path: str | os.PathLike | None = None
    name: str = ""

    @property
    def uri(self) -> str:
        return self.source.uri

    def paths_for(self, rev: str) -> SnapshotPaths:
        """The paths of the snapshot at revision key ``rev`` (managed cache or
        ``download_path`` layout)."""
        if self.download_path is not None:
            return cache.flat_paths(self.download_path, self.name, rev)
        return cache.managed_paths(self.source.uri, rev)

    def offline_paths(self) -> SnapshotPaths:
        """The paths a cache-only lookup uses: the revision the label last resolved to."""
        label = self.revision or "main"
        meta = self.paths_for("main").meta_dir
        return self.paths_for(cache.read_ref(meta, label) or cache.revision_key(label))
