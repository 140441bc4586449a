"""Fetching: sources (local folder hubs, S3, the Hugging Face hub) into the local cache.

Placeholder until the fetching layer lands: it names the missing capability.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnsupportedSourceError
from ..names import parse_model_name

__all__ = ["download"]


def download(model_name: str | os.PathLike, *, revision: str | None = None,
             download_path: str | os.PathLike | None = None, allow_patterns=None,
             offline: bool | None = None, progress: bool = True) -> Path:
    """Fetch ``model_name``'s snapshot and return its local directory."""
    ref = parse_model_name(model_name, revision=revision)
    if ref.kind == "uri" and ref.scheme == "file" and ref.path.is_dir():
        return ref.path
    raise UnsupportedSourceError(
        f"fetching {ref.name!r} needs the download layer, which this build does not have yet; "
        "put the files in a local directory and pass its path (or download_path=)"
    )
