"""The model registry: ``model_type`` × canonical task → model class.

Families register with the :func:`register_model` decorator; re-registering a pair warns.
The families are imported on first lookup, so ``import hubloader`` stays cheap.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from ..errors import ConfigError, ModelNotFoundError, UnknownTaskError
from ..tasks import TASKS, canonical_tasks, close_task_names

if TYPE_CHECKING:
    from .modeling import BaseModel

    ModelClass = type[BaseModel[Any]]

__all__ = ["register_model", "TokenizerDefaults", "tokenizer_defaults", "get_model_class", "import_families", "resolve_task", "known_task", "model_types", "served_tasks",
           "class_for_config"]

logger = logging.getLogger(__name__)
M = TypeVar("M", bound="ModelClass")

@dataclass(frozen=True)
class TokenizerDefaults:
    """What transformers' tokenizer class for a family assumes when the model's tokenizer
    files do not say: a family declares it with its ``register_model``.

    Attributes:
        tokenizer_class: transformers' class name written by ``save_pretrained``.
        special_tokens: the class's special tokens (each used only if the vocabulary holds it).
        token_type_ids: whether the family's forward takes ``token_type_ids``.
        padding_side: the class's padding side (Llama's pads on the left, for generation).
        kinds: other tokenizer kinds these defaults stand for (transformers' class name,
            lowercased, without ``Tokenizer``/``Fast``: ``"xlmroberta"``).
    """

    tokenizer_class: str | None = None
    special_tokens: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    token_type_ids: bool = True
    padding_side: str = "right"
    kinds: tuple[str, ...] = ()


# model_type -> canonical task -> class
_REGISTRY: dict[str, dict[str, ModelClass]] = {}
# model_type -> its tokenizer's defaults
_TOKENIZERS: dict[str, TokenizerDefaults] = {}
_LOADED = False
_FAMILY_MODULES = ("hubloader.models",)


def register_model(model_type: str, task: str = "base", *,
                   tokenizer: TokenizerDefaults | None = None) -> Callable[[M], M]:
    """Class decorator: serve ``task`` for ``model_type`` with the decorated class, and make
    ``task`` the class's own ``task`` (the first registration's, for a class serving several).
    ``tokenizer``: the family's tokenizer defaults (:func:`tokenizer_defaults`), given once.

    Example:
        >>> @register_model("bert", "fill-mask")
        ... class BertForMaskedLM(BaseModel): ...
    """
    if task not in TASKS:
        raise ValueError(f"register_model: {task!r} is not a canonical task ({sorted(TASKS)})")
    if tokenizer is not None:
        for name in (model_type, *tokenizer.kinds):
            _TOKENIZERS[name.lower()] = tokenizer

    def deco(cls: M) -> M:
        table = _REGISTRY.setdefault(model_type.lower(), {})
        if task in table and table[task] is not cls:
            warnings.warn(f"re-registering {model_type}/{task}: {table[task].__name__} -> "
                          f"{cls.__name__}", stacklevel=2)
        table[task] = cls
        if "task" not in vars(cls):  # the first task a class is registered for is its own
            cls.task = task
        return cls

    return deco


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for mod in _FAMILY_MODULES:
            importlib.import_module(mod)


def import_families() -> None:
    """Import every family's module (and torch with them); lookups do it on first use."""
    _ensure_loaded()


def tokenizer_defaults(model_type: str) -> TokenizerDefaults | None:
    """The tokenizer defaults the family of ``model_type`` (or of a tokenizer kind it named)
    declared, ``None`` if none did."""
    _ensure_loaded()
    return _TOKENIZERS.get(model_type.lower())


def model_types() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def served_tasks(model_type: str) -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY.get(model_type.lower(), {}))


def _unknown_type(model_type: str) -> ModelNotFoundError:
    close = difflib.get_close_matches(model_type.lower(), model_types(), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ModelNotFoundError(f"no model family serves model_type {model_type!r}.{hint} "
                              f"Known: {', '.join(model_types())}")


def known_task(task: str) -> list[str]:
    """The canonical tasks ``task`` may stand for; checks the name without choosing.

    Raises:
        UnknownTaskError: ``task`` is no task name (with close matches).
    """
    candidates = canonical_tasks(task)
    if not candidates:
        close = close_task_names(task)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownTaskError(f"unknown task {task!r}.{hint} Known tasks: "
                               f"{', '.join(sorted(TASKS))} (and their aliases)")
    return candidates


def resolve_task(task: str, model_type: str | None = None) -> str:
    """The canonical task ``task`` stands for (for ``model_type`` where it is ambiguous).

    Raises:
        UnknownTaskError: ``task`` is no task name, or ``model_type`` does not serve it.
    """
    candidates = known_task(task)
    if model_type is None:
        return candidates[0]
    _ensure_loaded()
    served = _REGISTRY.get(model_type.lower())
    if served is None:
        raise _unknown_type(model_type)
    for c in candidates:
        if c in served:
            return c
    raise UnknownTaskError(f"model family {model_type!r} cannot serve task {task!r}; it serves: "
                           f"{', '.join(sorted(served))}")


def get_model_class(model_type: str, task: str = "base") -> ModelClass:
    """The class serving ``task`` for ``model_type``.

    Raises:
        ModelNotFoundError: unknown ``model_type`` (with close matches).
        UnknownTaskError: unknown task, or one the family does not serve.
    """
    _ensure_loaded()
    served = _REGISTRY.get(model_type.lower())
    if served is None:
        raise _unknown_type(model_type)
    if task in served:  # a canonical task already resolved for this family
        return served[task]
    return served[resolve_task(task, model_type)]


def _by_architecture(model_type: str, architectures: Any) -> ModelClass | None:
    for name in architectures or ():
        for cls in _REGISTRY.get(model_type.lower(), {}).values():
            if cls.__name__ == name:
                return cls
    return None


def class_for_config(requested: ModelClass, model_type: str,
                     architectures: Any = None) -> ModelClass:
    """The class to build for a checkpoint of ``model_type`` when ``requested`` was asked for.

    ``BaseModel`` (or any class not bound to a family) becomes the class the config's
    ``architectures`` names, else the family's class for the requested class's task; a family class whose ``model_type`` differs is swapped for the
    registered subclass serving the same task (``BertModel`` on a RoBERTa checkpoint →
    ``RobertaModel``).

    Raises:
        ModelNotFoundError: no registered family for ``model_type``.
        ConfigError: ``requested`` belongs to another, unrelated family.
    """
    _ensure_loaded()
    own = getattr(requested.config_class, "model_type", "")
    task = getattr(requested, "task", "base")
    if own and model_type.lower() in requested.config_class.accepted_types():
        return requested  # its own family, or one its config reads (Galactica's "opt")
    if model_type.lower() not in _REGISTRY:
        raise _unknown_type(model_type)
    if not own:  # BaseModel: the config's architectures name the head, if we have it
        found = _by_architecture(model_type, architectures)
        if found is not None:
            return found
    cls = _REGISTRY[model_type.lower()].get(task)
    if cls is None:
        raise ConfigError(f"{requested.__name__} serves {task!r}, which model_type "
                          f"{model_type!r} does not; it serves {served_tasks(model_type)}")
    if own and not issubclass(cls, requested):
        raise ConfigError(f"the checkpoint's model_type is {model_type!r}; load it with "
                          f"{cls.__name__} (or BaseModel), not {requested.__name__}")
    return cls
