"""``config.json`` → a typed, validated config dataclass.

Each model family subclasses :class:`ModelConfig`. Keys in a file that the family does not
know are kept in ``extra`` (Hugging Face configs carry many) and written back on save;
keys given as *overrides* must be known, else :class:`ConfigError` lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ..errors import ConfigError
from ..files import atomic_write_json

__all__ = ["ModelConfig", "read_config_file", "declared_dtype"]


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``config.json`` into a dict.

    Raises:
        ConfigError: the file is missing, not JSON, or not a JSON object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no config file at {p}: a model directory needs a config.json") from None
    except (UnicodeDecodeError, IsADirectoryError) as err:
        raise ConfigError(f"{p} is not a UTF-8 text file: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{p} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix the file"
        ) from err
    except RecursionError:
        raise ConfigError(f"{p} nests JSON too deeply to be a config; fix the file") from None
    except ValueError as err:  # an integer of thousands of digits
        raise ConfigError(f"{p} holds a number no config needs ({err}); fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a JSON object, not {type(data).__name__}")
    return data


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        return not args or all(_type_ok(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return isinstance(value, hint) if isinstance(hint, type) else True


# no size, count or id in a config comes near this; bigger ones only overflow later
_MAX_INT = 2**53


def _is_dropout(name: str) -> bool:
    return "dropout" in name or name.endswith(("pdrop", "_prob"))


def _check_number(where: str, name: str, value: Any) -> None:
    """Refuse values that no model can be built from: huge integers, NaN and infinities,
    a dropout outside [0, 1), a non-positive epsilon."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and abs(value) > _MAX_INT:
        raise ConfigError(f"{where}: {name!r} is {str(value)[:20]}... ({len(str(abs(value)))} "
                          "digits); no model has sizes like that — fix the config")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {name!r} is {value}; it must be a finite number")
    if isinstance(value, (int, float)):
        if _is_dropout(name) and not 0 <= value < 1:
            raise ConfigError(f"{where}: {name!r} is {value}; a dropout probability must be "
                              "in [0, 1)")
        if name.endswith(("_eps", "_epsilon")) and not value > 0:
            raise ConfigError(f"{where}: {name!r} is {value}; an epsilon must be positive")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_number(where, name, item)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def declared_dtype(data: Mapping[str, Any]) -> Any:
    """The weights' dtype a ``config.json`` declares: ``dtype`` (what transformers 5 writes)
    wins over the older ``torch_dtype``."""
    return data["dtype"] if data.get("dtype") is not None else data.get("torch_dtype")


@dataclass
class ModelConfig:
    """Fields every family shares. Subclasses add theirs and set ``model_type``.

    ``torch_dtype`` holds the checkpoint's dtype: read from ``dtype`` (what transformers 5
    writes), else from ``torch_dtype`` (older files), and written back as ``dtype``.
    """

    model_type: ClassVar[str] = ""

    torch_dtype: str | None = None
    architectures: list[str] | None = None
    tie_word_embeddings: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return sorted(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config", **overrides: Any):
        """Build a config from a dict plus validated overrides.

        Raises:
            ConfigError: a wrong ``model_type``, a wrongly typed value, or an unknown override.
        """
        data = dict(data)
        file_type = data.pop("model_type", None)
        declared = declared_dtype(data)
        data.pop("dtype", None)
        if declared is not None:
            data["torch_dtype"] = declared
        if cls.model_type and file_type is not None and str(file_type).lower() not in cls.accepted_types():
            raise ConfigError(
                f"{where}: model_type {file_type!r} does not fit {cls.__name__} "
                f"(expects {cls.model_type!r}); load it with the class its model_type names"
            )
        known = set(cls.field_names())
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown config override(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        data.update(overrides)
        hints = typing.get_type_hints(cls)
        kwargs, extra = {}, dict(data.pop("extra", None) or {})
        for key, value in data.items():
            if key in known:
                if not _type_ok(value, hints[key]):
                    raise ConfigError(
                        f"{where}: {key!r} must be {_type_name(hints[key])}, "
                        f"got {value!r} ({type(value).__name__})"
                    )
                kwargs[key] = value
            else:
                extra[key] = value
        try:
            return cls(**kwargs, extra=extra)  # __post_init__ validates
        except ConfigError as err:
            if where in str(err):
                raise
            raise ConfigError(f"{where}: {err}") from err

    @classmethod
    def accepted_types(cls) -> set[str]:
        return {cls.model_type}

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides: Any):
        return cls.from_dict(read_config_file(path), where=str(path), **overrides)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name != "extra":
                _check_number(type(self).__name__, f.name, getattr(self, f.name))
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses extend. Raise :class:`ConfigError` on a problem."""

    # -- output -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["model_type"] = self.model_type
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        out.pop("torch_dtype", None)
        if self.torch_dtype is not None:
            out["dtype"] = self.torch_dtype
        return out

    def to_json_file(self, path: str | Path) -> None:
        """Write the config as ``config.json`` to ``path`` atomically (see
        :func:`hubloader.files.atomic_write_json`)."""
        atomic_write_json(path, self.to_dict(), indent=2)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)
