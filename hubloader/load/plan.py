"""The load plan: one function decides, for every way in (``from_pretrain``,
``init_from_json``, ``AutoLoader``, ``validate``, ``convert``), which directory, which class,
which config and which task.

    model_name ──model_spec──► ModelSpec (parsed once: reference, card, FlagAI folder)
               ──plan_load───► LoadPlan (directory fetched, task resolved, class, config)

The name is parsed once at the entry, into a :class:`ModelSpec`, and that value travels down
to the hub; the task is resolved once, against the family that serves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..catalogue.cards import ModelCard
from ..errors import ConfigError
from .config import ModelConfig, read_config_file
from .flagai_rules import flagai_config, flagai_task, infer_model_type
from .registry import class_for_config, get_model_class, resolve_task
from .remote_code import find_code_entry
from .resolve import ModelSpec, fetch_for_load, model_spec

if TYPE_CHECKING:
    import torch

    from .landing import Staging
    from .modeling import BaseModel

    ModelClass = type[BaseModel[Any]]

__all__ = ["ModelSpec", "LoadPlan", "model_spec", "plan_load", "resolve_config"]


@dataclass
class LoadPlan:
    """What a load builds: decided by :func:`plan_load`, built by ``BaseModel``.

    Attributes:
        model_dir: the local directory holding the model's files.
        task: the canonical task (``None`` when no task was asked for: the class's own).
        model_type: the model's family: the config's ``model_type``, or the card's
            architecture where that family reads the config's type (CPM-Generate's
            ``"gpt2"`` is CPM, with CPM's tokenizer); ``None`` for a package's own code.
        model_class: the class to build; ``None`` when the package's own code builds it.
        config: the validated config (``None`` for a package's own code).
        card: the card the model was named by, if any.
        staged: weight files read as they landed (see :mod:`hubloader.load.landing`).
    """

    model_dir: Path
    task: str | None = None
    model_class: ModelClass | None = None
    config: ModelConfig | None = None
    card: ModelCard | None = None
    staged: Staging | None = field(default=None, repr=False)
    model_type: str | None = None


def resolve_config(data: dict[str, Any], requested: ModelClass, where: str, *,
                   task: str | None = None, name: str | None = None,
                   model_type_hint: str | None = None,
                   **overrides: Any) -> tuple[ModelClass, ModelConfig]:
    """The (model class, typed config) a parsed ``config.json`` stands for: the one way every
    loader, validator and converter reads a config.

    Args:
        data: the parsed ``config.json`` (see :func:`hubloader.load.config.read_config_file`).
        requested: the class the caller asked for (``BaseModel`` lets the config choose).
        where: what to name in error messages (the file's path).
        task: a task name; when given, the family's class serving it is chosen instead of
            ``requested`` (``AutoLoader``). A canonical task already resolved for the family
            is taken as it is.
        name: the model folder's name. A config without ``model_type`` is FlagAI's: the
            family of ``requested``, else ``model_type_hint`` (the card's architecture), else
            of the card ``name`` names, is taken, and FlagAI's meaning of its fields holds
            (:mod:`hubloader.load.flagai_rules`).
        model_type_hint: the family the model's card states.
        **overrides: config fields to change (validated by the config class).

    Returns:
        ``(cls, config)``: the class to build and its validated config.

    Raises:
        ConfigError: a missing or malformed ``model_type``/``architectures``, a class of
            another family, a wrongly typed value or an unknown override.
        ModelNotFoundError: no registered family for ``model_type``.
        UnknownTaskError: ``task`` is unknown or the family does not serve it.

    Example:
        >>> cls, config = resolve_config({"model_type": "bert", ...}, BaseModel, "config.json")
    """
    model_type = data.get("model_type")
    if model_type is None:  # FlagAI's config.json
        own = getattr(requested.config_class, "model_type", "")
        model_type = None if own else (model_type_hint or infer_model_type(name))
        if model_type or own:
            data = flagai_config(data, model_type or own)
    architectures = data.get("architectures")
    if architectures is not None and not isinstance(architectures, list):
        raise ConfigError(f"{where}: 'architectures' must be a list, got {architectures!r}")
    if model_type is not None and not isinstance(model_type, str):
        raise ConfigError(f"{where}: 'model_type' must be a string, got {model_type!r}")
    if task is not None:
        if not model_type:
            raise ConfigError(f"{where} has no 'model_type'; add one (e.g. \"bert\") so the "
                              f"class serving {task!r} can be chosen")
        cls = get_model_class(model_type, task)
    elif not model_type:
        if not getattr(requested.config_class, "model_type", ""):
            raise ConfigError(f"{where} has no 'model_type'; add one (e.g. \"bert\") so the "
                              "model class can be chosen, or load with a family class")
        cls = requested
    else:
        cls = class_for_config(requested, model_type, architectures)
    return cls, cls.config_class.from_dict(data, where=where, **overrides)


def _task_for(task: str, model_type: str) -> str:
    """``task`` (a user's name, FlagAI's included) resolved for the family ``model_type``."""
    return resolve_task(flagai_task(task, model_type), model_type)


def plan_load(ref: ModelSpec | Path, task: str | None = None, *, requested: ModelClass,
              overrides: dict[str, Any] | None = None, device: str | torch.device = "cpu",
              torch_dtype: str | torch.dtype | None = None,
              offline: bool | None = None, allow_patterns: list[str] | None = None) -> LoadPlan:
    """Decide directory, task, class and config for a load.

    Args:
        ref: the parsed name (:func:`model_spec`), or a local directory or ``config.json``
            (``init_from_json``, ``validate``), used as it is.
        task: the task asked for (``AutoLoader``; FlagAI's names included), resolved once
            for the family that serves it; ``None``: the class's own.
        requested: the class asked for (``BaseModel`` lets the config choose).
        overrides: config fields to change (validated by the config class).
        device, torch_dtype: where the weights go, so that weights landing while others still
            travel are read meanwhile.
        offline, allow_patterns: as in :func:`hubloader.hub.download`.

    Returns:
        The plan; its directory is local and fetched.

    Raises:
        ModelNotFoundError, UnknownTaskError, ConfigError, SourceError: what the steps raise;
            a task the card's family cannot serve fails before anything is fetched.
    """
    overrides = overrides or {}
    card: ModelCard | None = None
    staged: Staging | None = None
    config_path: Path | None = None
    resolved: tuple[str, str] | None = None  # (model_type, canonical task)
    if isinstance(ref, ModelSpec):
        card = ref.card
        if task is not None and card is not None and card.architecture:
            resolved = (card.architecture.lower(), _task_for(task, card.architecture))
        model_dir, staged = fetch_for_load(ref, device=device,  # transformers' "auto": later
                                           torch_dtype=None if torch_dtype == "auto" else torch_dtype, offline=offline,
                                           allow_patterns=allow_patterns)
    elif ref.is_file():
        config_path, model_dir = ref, ref.resolve().parent
    else:
        model_dir = ref
    if config_path is None and find_code_entry(model_dir) is not None:
        if overrides or torch_dtype is not None:
            given = sorted(overrides) + (["torch_dtype"] if torch_dtype is not None else [])
            raise ConfigError(
                f"{model_dir} builds its model with its own code, which hubloader cannot "
                f"pass {', '.join(given)} to; drop them and change the returned model "
                "instead (e.g. model.to(torch.float16))")
        canonical = resolved[1] if resolved else (resolve_task(task) if task else None)
        return LoadPlan(model_dir, canonical, None, None, card, staged)
    config_path = config_path or model_dir / settings.CONFIG_NAME
    data = read_config_file(config_path)
    hint = card.architecture if card is not None else None
    canonical = None
    family: str | None = None
    if task is not None:
        model_type = data.get("model_type") or hint or infer_model_type(model_dir.name)
        if not isinstance(model_type, str):
            raise ConfigError(f"{config_path} has no string 'model_type' and no card is named "
                              f"like {model_dir.name!r}; add one (e.g. \"bert\")")
        family = _family(model_type, hint)
        canonical = resolved[1] if resolved and resolved[0] == family \
            else _task_for(task, family)
        # the family's class for the task; the config is read as that class reads it
        requested = get_model_class(family, canonical)
    cls, config = resolve_config(data, requested, str(config_path), name=model_dir.name,
                                 model_type_hint=hint, **overrides)
    return LoadPlan(model_dir, canonical, cls, config, card, staged,
                    family or _family(config.model_type, hint))


def _family(model_type: str, card_architecture: str | None) -> str:
    """The card's family where it reads a config of ``model_type`` (CPM-Generate's ``"gpt2"``
    is CPM), else ``model_type``."""
    if card_architecture and model_type.lower() != card_architecture.lower() and \
            model_type.lower() in get_model_class(card_architecture).config_class.accepted_types():
        return card_architecture.lower()
    return model_type.lower()
