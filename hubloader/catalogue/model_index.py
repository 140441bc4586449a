"""mmpretrain's catalogue: ``model-index.yml`` and the ``metafile.yml`` files it imports.

A metafile lists ``Collections`` (a family: paper, architecture, code) and ``Models`` (a
released model: ``Name``, ``In Collection``, ``Metadata``, ``Results``, ``Weights``,
``Config``, ``Converted From``). A ``model-index.yml`` gathers metafiles with ``Import``.
Paths are relative to the file that names them and must stay inside the index's folder.

Sources of names, beside the model cards: every ``model-index.yml`` directly in a
``HUBLOADER_CARDS_PATH`` directory (earlier directories take precedence), then the index
hubloader ships for mmpretrain's own ResNet, ViT and Swin models.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import CardError, ModelNotFoundError

__all__ = ["ModelIndexEntry", "read_model_index", "model_index_entries",
           "find_model_index_entry", "model_index_info"]

logger = logging.getLogger(__name__)

INDEX_NAME = "model-index.yml"
#: the index shipped with hubloader (data only; no module of the mm package is imported)
SHIPPED_INDEX = Path(__file__).parent.parent / "mm" / "zoo" / INDEX_NAME


@dataclass(frozen=True)
class ModelIndexEntry:
    """One model of a metafile.

    Attributes:
        name: the model's name (``resnet18_8xb32_in1k``).
        config: the config file's absolute path.
        weights: the checkpoint's URL (http(s)://, s3://, file://), or ``None``.
        collection: the ``In Collection`` name; ``paper`` its collection's paper
            (``{'Title', 'URL'}``).
        results: the ``Results`` list (dataset, task, metrics).
        metadata: the model's ``Metadata`` over its collection's.
        converted_from: ``Converted From`` (original weights and code), if any.
        index: the ``model-index.yml`` it came from.
    """

    name: str
    config: Path
    weights: str | None = None
    collection: str = ""
    paper: dict = field(default_factory=dict)
    results: tuple[dict, ...] = ()
    metadata: dict = field(default_factory=dict)
    converted_from: dict = field(default_factory=dict)
    index: Path | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks of its results, as hubloader's task names (``image-classification``)."""
        found = {str(r.get("Task", "")).strip().lower().replace(" ", "-") for r in self.results}
        return tuple(sorted(t for t in found if t)) or ("image-classification",)

    @property
    def architecture(self) -> str:
        return "mmpretrain"


def _yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise CardError(f"cannot read {path}: {err}") from err
    except yaml.YAMLError as err:
        raise CardError(f"{path} is not valid YAML: {err}") from err


def _inside(root: Path, rel: Any, where: Path, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise CardError(f"{where}: {what} must be a relative path, got {rel!r}")
    p = (root / rel).resolve()
    if not p.is_relative_to(root.resolve()):
        raise CardError(f"{where}: {what} {rel!r} leaves the index folder {root}")
    return p


def read_model_index(path: str | Path) -> list[ModelIndexEntry]:
    """Every model of ``path`` (a ``model-index.yml`` or one ``metafile.yml``).

    Raises:
        CardError: unreadable YAML, a field of the wrong type, a model without ``Name`` or
            ``Config``, or an ``Import``/``Config`` path that leaves the index's folder.
    """
    index = Path(path).resolve()
    root = index.parent
    top = _yaml(index) or {}
    if not isinstance(top, dict):
        raise CardError(f"{index}: the top level must be a mapping")
    docs: list[tuple[Path, dict]] = [(index, top)]
    imports = top.get("Import") or []
    if not isinstance(imports, list):
        raise CardError(f"{index}: Import must be a list of metafile paths")
    for rel in imports:
        meta_path = _inside(root, rel, index, "Import")
        doc = _yaml(meta_path) or {}
        if not isinstance(doc, dict):
            raise CardError(f"{meta_path}: the top level must be a mapping")
        docs.append((meta_path, doc))
    collections: dict[str, dict] = {}
    for where, doc in docs:
        for c in doc.get("Collections") or []:
            if isinstance(c, dict) and isinstance(c.get("Name"), str):
                collections[c["Name"]] = c
    out: list[ModelIndexEntry] = []
    for where, doc in docs:
        models = doc.get("Models") or []
        if not isinstance(models, list):
            raise CardError(f"{where}: Models must be a list")
        for m in models:
            if not isinstance(m, dict) or not isinstance(m.get("Name"), str):
                raise CardError(f"{where}: every model needs a Name")
            if "Config" not in m:
                raise CardError(f"{where}: model {m['Name']!r} has no Config")
            coll = collections.get(str(m.get("In Collection", "")), {})
            meta = {**(coll.get("Metadata") or {}), **(m.get("Metadata") or {})}
            weights = m.get("Weights")
            if weights is not None and not isinstance(weights, str):
                raise CardError(f"{where}: model {m['Name']!r}: Weights must be a URL")
            results = m.get("Results") or []
            out.append(ModelIndexEntry(
                name=m["Name"], config=_inside(root, m["Config"], where, "Config"),
                weights=weights, collection=str(m.get("In Collection", "")),
                paper=dict(coll.get("Paper") or m.get("Paper") or {}),
                results=tuple(r for r in results if isinstance(r, dict)), metadata=meta,
                converted_from=dict(m.get("Converted From") or {}), index=index))
    return out


_CACHE: dict[tuple, dict[str, ModelIndexEntry]] = {}


def _indexes() -> list[Path]:
    found = [d / INDEX_NAME for d in settings.extra_card_dirs() if (d / INDEX_NAME).is_file()]
    return found + [SHIPPED_INDEX]


def _table() -> dict[str, ModelIndexEntry]:
    files = _indexes()
    key = tuple((str(f), f.stat().st_mtime_ns if f.is_file() else 0) for f in files)
    if key not in _CACHE:
        table: dict[str, ModelIndexEntry] = {}
        for f in files:
            try:
                entries = read_model_index(f)
            except CardError as err:
                logger.warning("skipping model index %s: %s", f, err)
                continue
            for e in entries:
                table.setdefault(e.name.lower(), e)
        _CACHE.clear()
        _CACHE[key] = table
    return _CACHE[key]


def model_index_entries() -> list[ModelIndexEntry]:
    """Every model-index entry, sorted by name."""
    return sorted(_table().values(), key=lambda e: e.name.lower())


def find_model_index_entry(name: str) -> ModelIndexEntry | None:
    """The entry called ``name`` (case-insensitive), or ``None``."""
    return _table().get(name.strip().lower())


def model_index_info(name: str) -> ModelIndexEntry:
    """The entry called ``name``.

    Raises:
        ModelNotFoundError: no entry has that name; the message lists close ones.
    """
    entry = find_model_index_entry(name)
    if entry is None:
        names = [e.name for e in model_index_entries()]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(f"no model-index entry named {name!r}.{hint} Run "
                                 "'hubloader ls' to see all models.")
    return entry
