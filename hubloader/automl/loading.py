"""Which :class:`~hubloader.automl.base.AutoModel` a name or folder gets: a package's own
``entry_class`` (trusted), a factory registered for the folder's ``model_type``, or the
built-in :class:`~hubloader.automl.image.AutoImageClassifier` for any hubloader family that
serves ``image-classification``."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError, PackageError

if TYPE_CHECKING:
    from .base import AutoModel

__all__ = ["load_auto_model", "register_auto_model"]

logger = logging.getLogger(__name__)

#: model_type → factory(resource_dir, **kwargs) for families hubloader's registry lacks
#: (mmpretrain's ImageClassifier registers here)
_FACTORIES: dict[str, Callable[..., AutoModel]] = {}


def register_auto_model(model_type: str, factory: Callable[..., AutoModel], *,
                        force: bool = False) -> None:
    """Serve folders whose ``config.json`` says ``model_type`` with ``factory``.

    Raises:
        ConfigError: ``model_type`` is registered already and ``force`` is false.
    """
    key = model_type.lower()
    if key in _FACTORIES and not force:
        raise ConfigError(f"an AutoModel factory for {model_type!r} is registered already; "
                          "pass force=True to replace it")
    _FACTORIES[key] = factory


def load_auto_model(name_or_dir: str | os.PathLike, *, trust_remote_code: bool | str = False,
                    **kwargs: Any) -> AutoModel:
    """See :meth:`hubloader.automl.AutoModel.from_pretrain`."""
    from ..load.config import read_config_file
    from ..load.registry import served_tasks
    from ..load.remote_code import find_code_entry, load_custom_model
    from ..load.resolve import resolve_model_dir

    root = resolve_model_dir(name_or_dir)
    entry = find_code_entry(root)
    if entry is not None:
        if entry.kind == "hubconf":
            raise PackageError(f"{root} is a downstream-platform hubconf.py package, not an "
                               "AlphaMed one; load it with model_downstream_interface.load_model")
        model: AutoModel = load_custom_model(root, trust_remote_code=trust_remote_code,
                                             entry_kwargs=kwargs)
        return model
    model_type = str(read_config_file(root / "config.json").get("model_type") or "").lower()
    if model_type in _FACTORIES:
        return _FACTORIES[model_type](root, **kwargs)
    try:
        serves = "image-classification" in served_tasks(model_type)
    except Exception:  # an unknown family: say what is supported below
        serves = False
    if not serves:
        raise ConfigError(f"{root}: no built-in AutoModel for model_type {model_type!r}; the "
                          "built-in one serves hubloader's image classifiers (resnet, vit, swin). "
                          "Ship your own AutoModel with entry_file/entry_class")
    # The built-in classifier subclasses AutoModel, whose from_pretrain leads here, so it is
    # found by name, as the model registry finds the families.
    image = importlib.import_module(".image", __package__)
    built: AutoModel = image.AutoImageClassifier(Path(root), **kwargs)
    return built
