"""``load_model``: build the model a ``hubconf.py`` package declares.

Calling :func:`load_model` on a directory is the user's explicit request to run that package's
code (as ``torch.hub.load(dir, source="local")`` is), so it runs with hubloader's
``trust_remote_code=True``; everything else of hubloader's code handling still applies: the
``dependencies`` list is read without running anything and checked with
:func:`importlib.util.find_spec` before the import, the code is hashed and pinned, and its
modules import under names unique to that hash, so two packages whose folders share a name never
see each other's modules. Loading the same package through ``hubloader`` (``from_pretrain``,
``AutoLoader``) still needs ``trust_remote_code``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["load_model"]


def load_model(dir: str | os.PathLike, model: str = "BIG_PRETRAINED_MODEL", *args: Any,
               **kwargs: Any) -> Any:
    """Load the model of the package in ``dir``.

    Args:
        dir: the package directory (it holds ``hubconf.py``), relative or absolute, or the
            package's ``.zip``.
        model: the ``hubconf.py`` entry: a class with ``from_pretrained`` (called with
            ``*args, **kwargs``), or any other callable (called with them).
        *args, **kwargs: passed to the entry.

    Returns:
        The entry's model (a ``torch.nn.Module``), in eval mode.

    Raises:
        hubloader.errors.PackageError: no ``hubconf.py``, a missing dependency, no such entry,
            or the package's import failed.

    Example:
        >>> model = load_model("example/vision-transformer")
        >>> model.get_features_shape((3, 224, 224), 0)
        (197, 768)
    """
    from hubloader.errors import PackageError
    from hubloader.hub.zips import local_package
    from hubloader.load.remote_code import HUBCONF_NAME, load_custom_model

    dir = local_package(dir)  # relative, ~, a symlink or a .zip: the same real folder
    if not os.path.isfile(os.path.join(dir, HUBCONF_NAME)):
        raise PackageError(f"{dir} has no {HUBCONF_NAME}; load_model takes a downstream-platform "
                           "package directory (hubconf.py, the package folder, weights/)")
    return load_custom_model(dir, trust_remote_code=True, entry_name=model, entry_args=args,
                             **kwargs)
