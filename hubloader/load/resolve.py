"""name → a local model directory. The one place ``from_pretrain`` and ``AutoLoader`` ask
"where are this model's files?".

Local directories are used in place. Everything else goes to :func:`hubloader.hub.download`,
which also owns FlagAI's ``download_path`` rule (a folder put there by hand is used in place).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..catalogue.cards import find_card
from ..errors import HubLoaderError, ModelNotFoundError
from ..hub.zips import local_package
from ..names import ModelRef, parse_model_name, safe_join, validate_download_path

if TYPE_CHECKING:
    import torch

    from .landing import Staging

__all__ = ["resolve_model_dir", "prefetch_model_dir", "fetch_for_load", "FLAGAI_MODEL_DIR",
           "flagai_default_dir"]

# where FlagAI's from_pretrain and AutoLoader keep models when no directory is given
FLAGAI_MODEL_DIR = "./checkpoints/"


def flagai_default_dir(model_name: str | os.PathLike, *,
                       revision: str | None = None) -> str | None:
    """FlagAI's default ``download_path``, ``./checkpoints/``, when it holds the model named
    ``model_name`` (as spelt, or as its card spells it: ``<dir>/<name>/config.json``); else
    ``None``, and the name goes to the cache and its source."""
    from ..settings import CONFIG_NAME

    ref = parse_model_name(model_name, revision=revision)
    if ref.kind != "card":
        return None
    card = find_card(ref.name)
    for name in dict.fromkeys([ref.name] + ([card.name] if card else [])):
        if (Path(FLAGAI_MODEL_DIR) / name / CONFIG_NAME).is_file():
            return FLAGAI_MODEL_DIR
    return None


def _local_dir(ref: ModelRef) -> Path:
    path = ref.path
    if path.is_file() and path.suffix.lower() == ".zip":
            return local_package(path)
    if not path.is_dir():
        hint = ""
        if ref.kind == "local" and "/" not in ref.name.strip("./") and find_card(ref.name.strip("./")):
            hint = f" (a card named {ref.name.strip('./')!r} exists: pass the name without './')"
        raise ModelNotFoundError(f"{path} is not a directory{hint}; give a model directory "
                                 "holding config.json and weights, a card name or a URI")
    return path.resolve()  # package code imports against a root that no chdir moves


def _local_or_name(model_name: str | os.PathLike, *, download_path: str | os.PathLike | None,
                   revision: str | None) -> Path | str:
    """The directory to use as it is, or the name to hand to the hub."""
    validate_download_path(download_path)
    if download_path is not None and isinstance(model_name, (str, os.PathLike)) \
            and "://" not in os.fspath(model_name):
        # FlagAI's layout: the name is joined to download_path, never used as a path itself
        safe_join(download_path, os.fspath(model_name).strip())
    ref = parse_model_name(model_name, revision=revision)
    if ref.kind == "local":
        return _local_dir(ref)
    return ref.name


def resolve_model_dir(model_name: str | os.PathLike, *, download_path: str | os.PathLike | None = None,
                      revision: str | None = None, offline: bool | None = None,
                      progress: bool = True, allow_patterns: list[str] | None = None) -> Path:
    """Return the local directory holding ``model_name``'s files, fetching them if needed
    (joining a fetch :func:`prefetch_model_dir` started).

    Raises:
        ModelNotFoundError: an unknown card name (with close matches) or a missing directory.
        InvalidModelNameError: a name that would escape ``download_path``.
        SourceError: fetching failed (see :mod:`hubloader.hub`).
    """
    found = _local_or_name(model_name, download_path=download_path, revision=revision)
    if isinstance(found, Path):
        return found
    from ..hub import download  # an unknown card name fails there, naming close matches

    return download(found, revision=revision, download_path=download_path,
                    offline=offline, progress=progress, allow_patterns=allow_patterns)


def prefetch_model_dir(model_name: str | os.PathLike, *,
                       download_path: str | os.PathLike | None = None,
                       revision: str | None = None, offline: bool | None = None,
                       progress: bool = True, allow_patterns: list[str] | None = None) -> None:
    """Start fetching, in the background, what :func:`resolve_model_dir` would fetch for the
    same arguments; that call then joins the fetch. Does nothing for a local directory, and
    leaves a bad name for :func:`resolve_model_dir` to report."""
    try:
        found = _local_or_name(model_name, download_path=download_path, revision=revision)
    except HubLoaderError:  # resolve_model_dir raises it, in the caller's thread
        return
    from ..hub import distributed

    # under torch.distributed the ranks of a node agree through the process group's store on
    # who fetches; a child process outside the group would not take part
    if isinstance(found, str) and not distributed.active():
        from ..hub import prefetch

        prefetch(found, revision=revision, download_path=download_path, offline=offline,
                 progress=progress, allow_patterns=allow_patterns)


def fetch_for_load(model_name: str | os.PathLike, *, device: torch.device,
                   torch_dtype: str | torch.dtype | None,
                   download_path: str | os.PathLike | None = None, revision: str | None = None,
                   offline: bool | None = None,
                   allow_patterns: list[str] | None = None) -> tuple[Path, Staging | None]:
    """:func:`resolve_model_dir` for a load onto ``device`` in ``torch_dtype``: a fetch that
    :func:`prefetch_model_dir` started is followed file by file, and the weights that land
    while the rest still travel are read meanwhile (see :mod:`hubloader.load.landing`); they come
    back with the directory, for the load to take.

    Raises:
        What :func:`resolve_model_dir` raises.
    """
    try:
        found = _local_or_name(model_name, download_path=download_path, revision=revision)
    except HubLoaderError:
        found = None  # resolve_model_dir reports it
    if isinstance(found, Path):
        return found, None
    if isinstance(found, str):
        from ..hub.inflight import claim

        handle = claim(found, revision=revision, download_path=download_path,
                       allow_patterns=allow_patterns, offline=offline)
        if handle is not None:
            from .landing import Staging

            staging = Staging(device=device, torch_dtype=torch_dtype)
            return staging.follow(handle), staging
    return resolve_model_dir(model_name, download_path=download_path, revision=revision,
                             offline=offline, allow_patterns=allow_patterns), None
