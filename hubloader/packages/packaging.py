"""Model packages as zip files (the downstream-platform interface's ``hubconf.py`` packages).

:func:`pack` writes a directory's files into a zip (temp file, then ``os.replace``). The checks
every zip meets on the way in (:func:`check_zip`, :func:`extract_zip`) and the one place a
package path becomes a folder (:func:`local_package`) live in :mod:`hubloader.hub.zips`,
below the loader, and are re-exported here.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import PackageError
from ..files import temp_name
from ..hub.zips import ZipSummary, check_zip, extract_zip, local_package, package_root

__all__ = ["ZipSummary", "pack", "check_zip", "extract_zip", "package_root", "local_package"]

logger = logging.getLogger(__name__)


def pack(directory: str | os.PathLike, output: str | os.PathLike, *,
         overwrite: bool = False, trust_remote_code: bool | str = False,
         entry: str | None = None, card: dict[str, Any] | None = None) -> Path:
    """Zip every file under ``directory`` (paths relative to it; hidden files and
    ``__pycache__`` left out) into ``output``.

    A package without a ``README.md`` (the downstream platform's layout: ``hubconf.py``, the
    package folder, ``weights/``) gets a card in the zip (the directory is left as it is),
    written by :func:`hubloader.packages.downstream.package_card` from the model's
    ``get_description()`` and the files; the model is built for that only when no foreign code
    would run, or with ``trust_remote_code``.

    Args:
        directory: the model package directory.
        output: the ``.zip`` to write.
        overwrite: replace an existing ``output``.
        trust_remote_code: run a code package's entry to describe it in the card.
        entry: the ``hubconf.py`` entry (default ``BIG_PRETRAINED_MODEL``).
        card: card fields for a written card (``license``, ``author``, ``tasks``...).

    Returns:
        The zip's path.

    Raises:
        PackageError: ``directory`` is missing, holds a symlink, or ``output`` exists.

    Example:
        >>> pack("my-model", "my-model.zip")
    """
    src, out = Path(directory), Path(output)
    if not src.is_dir():
        raise PackageError(f"{src} is not a directory; pack a model package folder")
    if out.exists() and not overwrite:
        raise PackageError(f"{out} exists; remove it or pass overwrite=True (--force)")
    members: list[tuple[Path, str]] = []
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in rel.split("/")):
            continue
        if p.resolve() == out.resolve():
            continue
        if p.is_symlink():
            raise PackageError(f"{p} is a symlink; a package must hold real files "
                               "(copy the target in)")
        if p.is_file():
            members.append((p, rel))
    card_text = None
    if not (src / settings.CARD_NAME).is_file():
        from .downstream import build_package_model, package_card

        model = build_package_model(src, trust_remote_code=trust_remote_code, entry=entry)
        card_text = package_card(src, model=model, fields=card)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(out)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            if card_text is not None:
                zf.writestr(settings.CARD_NAME, card_text)
            for p, rel in members:
                zf.write(p, rel)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("packed %s into %s", src, out)
    return out
