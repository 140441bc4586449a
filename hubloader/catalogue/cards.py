"""Model cards: ``README.md`` files with YAML front matter (AlphaMed's model cards), parsed into
:class:`ModelCard`, checked against a schema, and looked up by name, case-insensitively.

Built-in cards ship in ``hubloader.model_cards`` (the repository's ``model_cards/``);
``HUBLOADER_CARDS_PATH`` adds directories that take precedence.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from .. import settings
from ..errors import CardError, ConfigError, ModelNotFoundError
from ..files import sha256_file
from ..tasks import all_task_names
from .model_index import ModelIndexEntry, find_model_index_entry, model_index_entries

__all__ = ["ModelCard", "CardFile", "parse_card", "load_card", "find_card", "all_cards",
           "list_models", "model_info", "card_text", "file_entries"]

logger = logging.getLogger(__name__)

# AlphaMed's required fields; ``architecture`` (the family's model_type) is optional because a
# package's config.json usually names it, and a code package has none
REQUIRED = ("name", "tasks", "license", "author")
KNOWN = set(REQUIRED) | {"architecture", "display-name", "framework", "source", "revision",
                         "files", "tags", "datasets", "is-federated", "language", "description",
                         "input-shape", "adapter"}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CardFile:
    """One file a card promises: its path in the snapshot, size and sha256 where known."""

    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """A parsed model card. ``architecture`` is the ``model_type`` of the family that serves it
    (``""`` when the card leaves it to config.json); ``is_federated`` is AlphaMed's
    ``is-federated``; ``input_shape`` is one input sample's shape for ``validate`` to run."""

    name: str
    tasks: tuple[str, ...]
    license: str
    author: str
    architecture: str = ""
    display_name: str = ""
    framework: str = "PyTorch"
    source: str | None = None
    revision: str | None = None
    files: tuple[CardFile, ...] = ()
    tags: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    description: str = ""
    is_federated: bool = False
    input_shape: tuple[int, ...] | None = None
    adapter: str | None = None  # a peft LoRA adapter (name, directory or URI) merged on load
    path: Path | None = field(default=None, compare=False)

    def file(self, name: str) -> CardFile | None:
        return next((f for f in self.files if f.path == name), None)


def _split_front_matter(text: str, where: str) -> tuple[str, str]:
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.startswith("---"):
        raise CardError(f"{where}: a model card must start with '---' and YAML front matter")
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)(.*)$", text, re.S)
    if not match:
        raise CardError(f"{where}: front matter is not closed by a line with '---'")
    return match.group(1), match.group(2)


def _str_list(meta: dict, key: str, where: str) -> tuple[str, ...]:
    value = meta.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise CardError(f"{where}: '{key}' must be a list of strings")
    return tuple(str(v) for v in value)


def _files(meta: dict, where: str) -> tuple[CardFile, ...]:
    raw = meta.get("files") or []
    if not isinstance(raw, list):
        raise CardError(f"{where}: 'files' must be a list of {{path, size, sha256}} entries")
    out = []
    for i, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise CardError(f"{where}: files[{i}] needs a string 'path'")
        path = entry["path"]
        if path.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", path):
            raise CardError(f"{where}: files[{i}].path {path!r} must be relative, without '..'")
        size = entry.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise CardError(f"{where}: files[{i}].size must be a non-negative integer")
        sha = entry.get("sha256")
        if sha is not None:
            sha = str(sha).lower()
            if not _SHA_RE.match(sha):
                raise CardError(f"{where}: files[{i}].sha256 must be 64 hex digits")
        out.append(CardFile(path, size, sha))
    return tuple(out)


def parse_card(text: str, *, where: str = "<card>", path: Path | None = None) -> ModelCard:
    """Parse and validate a card's text.

    Raises:
        CardError: broken YAML, missing required fields, wrong types or unknown tasks.
    """
    import yaml

    front, body = _split_front_matter(text, where)
    try:
        # libyaml's safe loader when PyYAML has it: much faster, and every lookup parses
        # every card once per process
        meta = yaml.load(front, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise CardError(f"{where}: front matter is not valid YAML: {err}") from err
    if not isinstance(meta, dict):
        raise CardError(f"{where}: front matter must be a YAML mapping of fields")
    missing = [k for k in REQUIRED if meta.get(k) in (None, "", [])]
    if missing:
        raise CardError(
            f"{where}: missing required field(s) {', '.join(missing)}; "
            f"a card needs {', '.join(REQUIRED)}"
        )
    unknown = sorted(set(meta) - KNOWN)
    if unknown:
        logger.warning("%s: ignoring unknown card field(s): %s", where, ", ".join(unknown))
    tasks = _str_list(meta, "tasks", where)
    valid = set(all_task_names())
    bad = [t for t in tasks if t.lower() not in valid]
    if bad:
        raise CardError(f"{where}: unknown task(s) {bad}; allowed: {', '.join(sorted(valid))}")
    for key in ("name", "license", "author", "architecture"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            raise CardError(f"{where}: '{key}' must be a string")
    federated = meta.get("is-federated", False)
    if not isinstance(federated, bool):
        raise CardError(f"{where}: 'is-federated' must be true or false, got {federated!r}")
    shape = meta.get("input-shape")
    if shape is not None and (not isinstance(shape, list) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise CardError(f"{where}: 'input-shape' must be one sample's shape as a list of "
                        f"positive ints, e.g. [3, 224, 224]; got {shape!r}")
    framework = meta.get("framework")
    if framework is not None and (not isinstance(framework, str)
                                  or framework.strip().lower() != "pytorch"):
        # AlphaMed's platform, like hubloader, runs PyTorch models only
        raise CardError(f"{where}: 'framework' is {framework!r}, but only PyTorch models load; "
                        "write 'framework: PyTorch' or leave the field out")
    source = meta.get("source")
    if source is not None and not isinstance(source, str):
        raise CardError(f"{where}: 'source' must be a URI string")
    adapter = meta.get("adapter")
    if adapter is not None and (not isinstance(adapter, str) or not adapter.strip()):
        raise CardError(f"{where}: 'adapter' must name a peft LoRA adapter (a card name, a "
                        f"directory or a URI), got {adapter!r}")
    return ModelCard(
        name=meta["name"],
        tasks=tuple(t.lower() for t in tasks),
        license=meta["license"],
        author=meta["author"],
        architecture=(meta.get("architecture") or "").lower(),
        display_name=str(meta.get("display-name") or meta["name"]),
        framework="PyTorch",
        source=source,
        revision=str(meta["revision"]) if meta.get("revision") is not None else None,
        files=_files(meta, where),
        tags=_str_list(meta, "tags", where),
        datasets=_str_list(meta, "datasets", where),
        description=body.strip(),
        is_federated=federated,
        input_shape=tuple(shape) if shape is not None else None,
        adapter=adapter,
        path=path,
    )


def load_card(path: str | Path) -> ModelCard:
    """Read and validate the card at ``path`` (a ``.md`` file or a directory's README.md)."""
    p = Path(path)
    if p.is_dir():
        p = p / settings.CARD_NAME
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError(f"no model card at {p}: add a README.md with YAML front matter") from None
    except UnicodeDecodeError as err:
        raise CardError(f"{p}: a card must be UTF-8 text ({err})") from err
    return parse_card(text, where=str(p), path=p)


def card_text(meta: dict[str, Any], body: str = "") -> str:
    """Render front matter + body as card text (used by save_pretrained and publishing)."""
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def _card_dirs() -> list[Path]:
    dirs = list(settings.extra_card_dirs())
    dirs.append(Path(str(resources.files("hubloader.model_cards"))))
    return dirs


_INDEX: dict[tuple, dict[str, ModelCard]] = {}


def _index() -> dict[str, ModelCard]:
    dirs = _card_dirs()
    key = tuple((str(d), d.stat().st_mtime_ns if d.is_dir() else 0) for d in dirs)
    if key not in _INDEX:
        index: dict[str, ModelCard] = {}
        for d in dirs:  # earlier directories take precedence
            for f in sorted(d.glob("*.md")) if d.is_dir() else []:
                try:
                    card = load_card(f)
                except (CardError, OSError) as err:
                    # one broken file must not hide every other card; validate still reports it
                    logger.warning("skipping model card %s: %s (check it with 'hubloader "
                                   "validate %s')", f, err, f)
                    continue
                index.setdefault(card.name.lower(), card)
        _INDEX.clear()
        _INDEX[key] = index
    return _INDEX[key]


def all_cards() -> list[ModelCard]:
    return sorted(_index().values(), key=lambda c: c.name.lower())


def find_card(name: str) -> ModelCard | None:
    """The card called ``name`` (case-insensitive), or ``None``."""
    return _index().get(name.strip().lower())


def model_info(name: str) -> ModelCard | ModelIndexEntry:
    """The card of ``name``, else its mmpretrain model-index entry (see :mod:`.model_index`).

    Raises:
        ModelNotFoundError: no card has that name; the message lists close matches.
    """
    card = find_card(name)
    entry = find_model_index_entry(name) if card is None else None
    if entry is not None:
        return entry
    if card is None:
        names = [c.name for c in all_cards()] + [e.name for e in model_index_entries()]
        by_lower = {n.lower(): n for n in names}
        close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower),
                                                                 n=3, cutoff=0.5)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelNotFoundError(
            f"no model card named {name!r}.{hint} Run 'hubloader ls' to see all models, "
            "or pass a local directory or a URI (s3://, hf://, file://)."
        )
    return card


def list_models(task: str | None = None, pattern: str | None = None) -> list[str]:
    """Names of the models with a card, then of the mmpretrain model-index entries, optionally only those serving ``task`` and/or whose
    name matches the shell-style ``pattern`` (case-insensitive).

    Example:
        >>> "all-MiniLM-L6-v2" in list_models(task="embedding")
        True
    """
    import fnmatch

    from ..tasks import canonical_tasks

    wanted = set(canonical_tasks(task)) if task else None
    out = []
    for card in all_cards():
        if pattern and not fnmatch.fnmatch(card.name.lower(), pattern.lower()):
            continue
        if wanted is not None:
            served = {c for t in card.tasks for c in canonical_tasks(t)}
            if not (served & wanted):
                continue
        out.append(card.name)
    taken = {n.lower() for n in out} | {c.name.lower() for c in all_cards()}
    for entry in model_index_entries():
        if entry.name.lower() in taken:
            continue
        if pattern and not fnmatch.fnmatch(entry.name.lower(), pattern.lower()):
            continue
        if wanted is not None and not ({c for t in entry.tasks for c in canonical_tasks(t)}
                                       & wanted):
            continue
        out.append(entry.name)
    return out


def _is_internal(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def file_entries(directory: str | os.PathLike, *, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``[{path, size, sha256}]`` for every regular file under ``directory`` (sorted; hidden
    files, ``__pycache__`` and the card itself left out).

    Raises:
        ConfigError: a symlink in the directory (a package must hold real files).
    """
    d = Path(directory)
    skip = {settings.CARD_NAME, *exclude}
    out = []
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if _is_internal(rel) or "__pycache__" in rel.split("/") or rel in skip:
            continue
        if p.is_symlink():
            raise ConfigError(f"{p} is a symlink; a model directory must hold real files")
        if p.is_file():
            out.append({"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)})
    return out
