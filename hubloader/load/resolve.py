"""name → a local model directory. The one place ``from_pretrain`` and ``AutoLoader`` ask
"where are this model's files?".

The name is parsed once, at the entry, into a :class:`ModelSpec` that travels down to the hub.
Local directories are used in place. Everything else goes to :func:`hubloader.hub.download`,
which also owns FlagAI's ``download_path`` rule (a folder put there by hand is used in place).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..catalogue.cards import ModelCard, find_card
from ..errors import ModelNotFoundError
from ..hub import distributed, download, prefetch
from ..hub.inflight import claim
from ..hub.locate import flagai_folder
from ..hub.zips import local_package
from ..names import ModelRef, parse_model_name, safe_join, validate_download_path

if TYPE_CHECKING:
    import torch

    from .landing import Staging

__all__ = ["ModelSpec", "model_spec", "resolve_model_dir", "prefetch_model_dir", "fetch_for_load",
           "FLAGAI_MODEL_DIR"]

# where FlagAI's from_pretrain and AutoLoader keep models when no directory is given
FLAGAI_MODEL_DIR = "./checkpoints/"


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for, parsed once.

    Attributes:
        ref: the parsed name (card, local directory or URI, with its revision).
        card: the card a card name names (``None`` for a directory or URI, or no such card).
        download_path: FlagAI's folder: files live in ``<download_path>/<name>/``.
    """

    ref: ModelRef
    card: ModelCard | None = None
    download_path: str | os.PathLike | None = None

    @property
    def revision(self) -> str | None:
        return self.ref.revision


def model_spec(model_name: str | os.PathLike | ModelSpec, *, revision: str | None = None,
               download_path: str | os.PathLike | None = None,
               default_folder: str | None = None) -> ModelSpec:
    """Parse ``model_name`` once into a :class:`ModelSpec`.

    Args:
        model_name: a card name, a local directory or a URI.
        revision: a revision given separately (it must agree with one pinned in a URI).
        download_path: FlagAI's folder for the model's files.
        default_folder: FlagAI's default folder (:data:`FLAGAI_MODEL_DIR` for
            ``from_pretrain`` and ``AutoLoader``), taken as ``download_path`` when none is
            given and it already holds the named model; else the name goes to the cache.

    Raises:
        InvalidModelNameError, UnsupportedSourceError: a malformed name, or one that would
            escape ``download_path``.
    """
    if isinstance(model_name, ModelSpec):
        return model_name
    validate_download_path(download_path)
    ref = parse_model_name(model_name, revision=revision)
    if download_path is not None and ref.kind != "uri":
        # FlagAI's layout: the name is joined to download_path, never used as a path itself
        safe_join(download_path, ref.name)
    card = find_card(ref.name) if ref.kind == "card" else None
    if download_path is None and default_folder is not None and ref.kind == "card" \
            and flagai_folder(ref, default_folder) is not None:
        download_path = default_folder
    return ModelSpec(ref, card, download_path)


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


def resolve_model_dir(model_name: str | os.PathLike | ModelSpec, *,
                      download_path: str | os.PathLike | None = None,
                      revision: str | None = None, offline: bool | None = None,
                      progress: bool = True, allow_patterns: list[str] | None = None) -> Path:
    """Return the local directory holding ``model_name``'s files, fetching them if needed
    (joining a fetch :func:`prefetch_model_dir` started).

    Raises:
        ModelNotFoundError: an unknown card name (with close matches) or a missing directory.
        InvalidModelNameError: a name that would escape ``download_path``.
        SourceError: fetching failed (see :mod:`hubloader.hub`).
    """
    spec = model_spec(model_name, revision=revision, download_path=download_path)
    if spec.ref.kind == "local":
        return _local_dir(spec.ref)
    # an unknown card name fails there, naming close matches
    return download(spec.ref, revision=spec.revision, download_path=spec.download_path,
                    offline=offline, progress=progress, allow_patterns=allow_patterns)


def prefetch_model_dir(spec: ModelSpec, *, offline: bool | None = None, progress: bool = True,
                       allow_patterns: list[str] | None = None) -> None:
    """Start fetching, in the background, what :func:`resolve_model_dir` would fetch for the
    same ``spec``; that call then joins the fetch. Does nothing for a local directory."""
    # under torch.distributed the ranks of a node agree through the process group's store on
    # who fetches; a child process outside the group would not take part
    if spec.ref.kind != "local" and not distributed.active():
        prefetch(spec.ref.name, revision=spec.revision, download_path=spec.download_path,
                 offline=offline, progress=progress, allow_patterns=allow_patterns)


def fetch_for_load(spec: ModelSpec, *, device: str | torch.device,
                   torch_dtype: str | torch.dtype | None, offline: bool | None = None,
                   allow_patterns: list[str] | None = None) -> tuple[Path, Staging | None]:
    """:func:`resolve_model_dir` for a load onto ``device`` in ``torch_dtype``: a fetch that
    :func:`prefetch_model_dir` started is followed file by file, and the weights that land
    while the rest still travel are read meanwhile (see :mod:`hubloader.load.landing`); they come
    back with the directory, for the load to take.

    Raises:
        What :func:`resolve_model_dir` raises.
    """
    if spec.ref.kind == "local":
        return _local_dir(spec.ref), None
    handle = claim(spec.ref.name, revision=spec.revision, download_path=spec.download_path,
                   allow_patterns=allow_patterns, offline=offline)
    if handle is not None:
        from .landing import Staging
        from .weights import resolve_device

        staging = Staging(device=resolve_device(device), torch_dtype=torch_dtype)
        return staging.follow(handle), staging
    return resolve_model_dir(spec, offline=offline, allow_patterns=allow_patterns), None
