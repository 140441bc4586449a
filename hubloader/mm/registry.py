"""One registry for mmpretrain-style components: backbones, necks, heads, losses and models.

The surface is mmengine's: ``register_module(name=None, force=False, module=None)`` as a
decorator or a call, ``build(cfg)`` recursive over nested ``type=`` dicts, ``get(name)`` and
``name in MODELS``. Errors are typed and say where in the config they happened
(``model.backbone.depth``), and an unknown ``type`` lists the close names.

Example:
    >>> from hubloader import MODELS
    >>> @MODELS.register_module()
    ... class MyNeck(torch.nn.Module): ...                             # doctest: +SKIP
    >>> MODELS.build(dict(type="MyNeck"))                               # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterator, Mapping, TypeVar

from ..errors import ConfigError, RegistryError

__all__ = ["Registry", "MODELS", "RegistryError", "build_from_cfg"]

T = TypeVar("T")


class Registry:
    """Names → classes (or functions) that build components from config dicts.

    Args:
        name: what the registry holds, for messages (``"model"``).
    """

    def __init__(self, name: str):
        self.name = name
        self._modules: dict[str, Callable[..., Any]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._modules))

    def __repr__(self) -> str:
        return f"Registry(name={self.name!r}, items={len(self._modules)})"

    @property
    def module_dict(self) -> dict[str, Callable[..., Any]]:
        """A copy of the table (mmengine's attribute)."""
        return dict(self._modules)

    def get(self, key: str) -> Callable[..., Any] | None:
        """The class registered as ``key``, or ``None`` (as mmengine's ``Registry.get``)."""
        return self._modules.get(key)

    def register_module(self, name: str | list[str] | None = None, force: bool = False,
                        module: Callable[..., Any] | None = None) -> Any:
        """Register ``module`` (a call) or the decorated class (a decorator).

        Args:
            name: the name(s) to register under; default the class's ``__name__``.
            force: replace a name that is taken instead of refusing it.
            module: the class to register now; without it this returns a decorator.

        Raises:
            RegistryError: a taken name without ``force=True``, or a name that is not a string.

        Example:
            >>> MODELS.register_module(module=MyHead)            # doctest: +SKIP
        """
        if not isinstance(force, bool):
            raise RegistryError(f"force must be a bool, got {type(force).__name__}")
        if not (name is None or isinstance(name, str)
                or (isinstance(name, list) and all(isinstance(n, str) for n in name))):
            raise RegistryError(f"name must be a string or a list of strings, got {name!r}")
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(cls: T) -> T:
            self._register(cls, name, force)  # type: ignore[arg-type]
            return cls

        return decorator

    def _register(self, module: Callable[..., Any], name: str | list[str] | None,
                  force: bool) -> None:
        if not callable(module):
            raise RegistryError(f"only a class or a function can be registered, got {module!r}")
        names = [module.__name__] if name is None else [name] if isinstance(name, str) else name
        for n in names:
            if not n:
                raise RegistryError("a registry name must not be empty")
            if n in self._modules and not force and self._modules[n] is not module:
                raise RegistryError(
                    f"{n!r} is already registered in {self.name} as "
                    f"{_qualname(self._modules[n])}; pick another name or pass force=True")
        for n in names:
            self._modules[n] = module

    def build(self, cfg: Mapping[str, Any], *, path: str = "model", **default_args: Any) -> Any:
        """Build the component that ``cfg['type']`` names, building nested ``type=`` dicts first.

        Args:
            cfg: a dict with ``type`` (a registered name or a class) and the arguments.
            path: where ``cfg`` sits in the config, for messages (``model.backbone``).
            default_args: arguments used where ``cfg`` does not set them.

        Returns:
            The built object.

        Raises:
            ConfigError: ``cfg`` is not a dict, misses ``type``, names an unknown type (the
                message lists close names), or gives an argument the class refuses (the message
                names its path, ``model.backbone.depth``).
        """
        return build_from_cfg(cfg, self, path=path, default_args=default_args)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _is_cfg(value: Any) -> bool:
    return isinstance(value, Mapping) and "type" in value


def build_from_cfg(cfg: Any, registry: Registry, *, path: str = "model",
                   default_args: Mapping[str, Any] | None = None) -> Any:
    """See :meth:`Registry.build`."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{path} must be a dict with a 'type' key, got {type(cfg).__name__}")
    args = dict(default_args or {})
    args.update(cfg)
    if "type" not in args:
        raise ConfigError(f"{path} has no 'type'; add type='<a name in {registry.name}>'")
    kind = args.pop("type")
    if isinstance(kind, str):
        cls = registry.get(kind)
        if cls is None:
            close = difflib.get_close_matches(kind, list(registry._modules), n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else \
                f"; registered: {', '.join(sorted(registry._modules))}"
            raise ConfigError(f"{path}.type={kind!r} is not registered in {registry.name}{hint}")
    elif inspect.isclass(kind) or callable(kind):
        cls = kind
    else:
        raise ConfigError(f"{path}.type must be a registered name or a class, got {kind!r}")
    args = {k: _build_nested(v, registry, f"{path}.{k}") for k, v in args.items()}
    _check_arguments(cls, args, path)
    try:
        return cls(**args, _cfg_path=path) if _takes_path(cls) else cls(**args)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"{path} ({getattr(cls, '__name__', cls)}): {err}") from err


def _build_nested(value: Any, registry: Registry, path: str) -> Any:
    """A nested ``dict(type=<registered name>, ...)`` (or a list of them) built first; other
    dicts (``norm_cfg=dict(type='BN')``, ``init_cfg``) stay data for the component to read."""
    if isinstance(value, Mapping) and isinstance(value.get("type"), str) \
            and value["type"] in registry:
        return build_from_cfg(value, registry, path=path)
    if isinstance(value, list) and value and all(
            isinstance(v, Mapping) and isinstance(v.get("type"), str) and v["type"] in registry
            for v in value):
        return [build_from_cfg(v, registry, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _takes_path(cls: Any) -> bool:
    try:
        return "_cfg_path" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _check_arguments(cls: Any, args: dict, path: str) -> None:
    """A missing or unknown argument is named by its config path before the class runs."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown: list[str] = []
    else:
        unknown = [k for k in args if k not in params]
    if unknown:
        known = [p for p in params if p not in ("self", "_cfg_path")]
        close = difflib.get_close_matches(unknown[0], known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else \
            f"; it takes {', '.join(known)}"
        raise ConfigError(f"{path}.{unknown[0]}: {cls.__name__} has no argument "
                          f"{unknown[0]!r}{hint}")
    for pname, p in params.items():
        if pname in ("self", "_cfg_path") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty and pname not in args:
            raise ConfigError(f"{path}.{pname} is required by {cls.__name__}; add it")


MODELS = Registry("MODELS")
