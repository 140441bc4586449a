"""Argument checks for components built from configs: each error names its config path."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import ConfigError

__all__ = ["check_choice", "check_int", "check_indices", "check_default"]


def check_int(path: str, name: str, value: Any, *, low: int | None = None,
              high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}.{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low}" + (f" to {high}" if high is not None else "")
        raise ConfigError(f"{path}.{name} must be {span}, got {value}")
    return value


def check_choice(path: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    if not isinstance(value, (str, int)) or value not in choices:
        raise ConfigError(f"{path}.{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_indices(path: str, name: str, value: Any, count: int) -> tuple[int, ...]:
    """``out_indices``: an int or a sequence of ints in ``[-count, count)``, normalised."""
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"{path}.{name} must be an integer or a non-empty list of integers, "
                          f"got {value!r}")
    out = []
    for i in items:
        check_int(path, name, i, low=-count, high=count - 1)
        out.append(i % count)
    return tuple(out)


def check_default(path: str, name: str, value: Any, default: Any, why: str = "") -> None:
    """An mmpretrain argument hubloader accepts only at its default value."""
    if value != default:
        raise ConfigError(f"{path}.{name}={value!r} is not supported by hubloader (only "
                          f"{default!r}){'; ' + why if why else ''}")
