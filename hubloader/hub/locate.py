"""Where a model name's files come from: an explicit URI, ``HUBLOADER_ENDPOINT``, or the
card's ``source`` (+ ``revision``), in that order; and which digests its card promises."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..catalogue.cards import find_card, model_info
from ..errors import ModelNotFoundError
from ..names import ModelRef, parse_model_name, safe_join

__all__ = ["Target", "locate", "folder_name", "flagai_folder"]


@dataclass(frozen=True)
class Target:
    """A resolved fetch request.

    Attributes:
        uri: the source URI (``s3://...``, ``hf://org/repo``, ``file:///...``).
        revision: the revision asked for (``None``: the source's default).
        name: the folder name used under ``download_path``.
        card_files: ``path -> sha256 or None`` promised by the card (empty: no card list).
    """

    uri: str
    revision: str | None
    name: str
    card_files: dict[str, str | None] = field(default_factory=dict)


def folder_name(ref: ModelRef) -> str:
    """The folder a URI's files get under ``download_path``: its last path component."""
    parts = [p for p in ref.location.split("/") if p]
    return parts[-1] if parts else ref.scheme or "model"


def flagai_folder(ref: ModelRef, download_path: str | os.PathLike, *,
                  fetched: bool = True) -> Path | None:
    """FlagAI's folder rule, the one place it is stated: a model's files live in
    ``<download_path>/<name>/``, ``<name>`` being the name as given or, for a card, the card's
    own spelling (a URI's last path component). Returns the first such folder holding a
    ``config.json``; with ``fetched=False`` only one hubloader did not fetch (it keeps no
    ``<download_path>/.hubloader/<name>/`` for it), which is used in place without network.
    ``None`` for a local directory, which is never joined to ``download_path``.

    Raises:
        InvalidModelNameError: a name that would escape ``download_path``.
    """
    if ref.kind == "local" or ref.scheme == "file":
        return None
    if ref.kind == "card":  # the name is joined to download_path, never used as a path itself
        safe_join(download_path, ref.name)
    names = [folder_name(ref)] if ref.kind == "uri" else [ref.name]
    card = find_card(ref.name) if ref.kind == "card" else None
    for name in dict.fromkeys(names + ([card.name] if card else [])):
        folder = safe_join(download_path, name)
        if (folder / settings.CONFIG_NAME).is_file() and \
                (fetched or not (Path(download_path) / ".hubloader" / name).is_dir()):
            return folder
    return None


def locate(model_name: str | os.PathLike | ModelRef, *,
           revision: str | None = None) -> Target | ModelRef:
    """Resolve ``model_name`` to a :class:`Target`, or return the :class:`ModelRef` of a local
    directory (used in place).

    Raises:
        ModelNotFoundError: an unknown card, or a card without a source and no endpoint set.
        InvalidModelNameError, UnsupportedSourceError: a malformed name or URI.
    """
    ref = model_name if isinstance(model_name, ModelRef) else \
        parse_model_name(model_name, revision=revision)
    if ref.kind == "local" or (ref.kind == "uri" and ref.scheme == "file"):
        return ref
    if ref.kind == "uri":
        return Target(f"{ref.scheme}://{ref.location}", ref.revision, folder_name(ref))
    card = find_card(ref.name)
    base = settings.endpoint()
    if card is None and base is None:
        model_info(ref.name)  # raises ModelNotFoundError naming close matches
    name = card.name if card else ref.name
    files = {f.path: f.sha256 for f in card.files} if card else {}
    revision = ref.revision if revision is None else revision
    rev = revision if revision is not None else (card.revision if card else None)
    if base is not None:
        return Target(base.rstrip("/") + "/" + name, rev, name, files)
    if card is None:  # model_info above raises for an unknown name
        raise ModelNotFoundError(f"no card named {ref.name!r}")
    if not card.source:
        raise ModelNotFoundError(
            f"card {card.name!r} names no source to fetch from; set HUBLOADER_ENDPOINT to a "
            "hub holding it (s3://, hf://, file://), or pass download_path= with the files"
        )
    src = parse_model_name(card.source, revision=None)
    uri = f"{src.scheme}://{src.location}"
    if src.kind == "local":
        uri = src.path.expanduser().absolute().as_uri()
    return Target(uri, rev if rev is not None else src.revision, name, files)
