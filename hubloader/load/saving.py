"""Writing a model directory: safetensors weights (one file, or shards plus an index), and the
model card (``README.md``) whose ``files`` list gives every file's size and sha256.

Every file is written to a temporary name in the target directory and moved into place with
``os.replace``; the card is written last, so a directory with a card is a complete one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

import torch

from .. import settings
from ..errors import ConfigError
from ..catalogue.cards import file_entries
from ..files import atomic_write_text, temp_name

__all__ = ["parse_size", "write_safetensors", "file_entries", "write_card", "WEIGHT_FILE_RE"]

logger = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
#: weight files a save owns (and removes when a new save changes layout)
WEIGHT_FILE_RE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")


def parse_size(size: int | str) -> int:
    """``"500MB"``, ``"2GiB"``, ``"1000"`` or an int → bytes.

    Raises:
        ConfigError: not a positive size.

    Example:
        >>> parse_size("5MB")
        5000000
    """
    if isinstance(size, bool):
        raise ConfigError(f"size must be bytes or a string like '500MB', got {size!r}")
    if isinstance(size, int):
        value = size
    else:
        match = _SIZE_RE.match(str(size))
        unit = match.group(2).upper() if match else ""
        if not match or unit not in _UNITS:
            raise ConfigError(f"size {size!r} is not understood; use bytes or a number with "
                              f"a unit such as '500MB' or '2GiB'")
        value = int(float(match.group(1)) * _UNITS[unit])
        if match.group(2)[-1:] == "b" and unit in ("KB", "MB", "GB", "TB"):
            value //= 8  # "5Gb" is gigabits, as transformers reads max_shard_size
    if value <= 0:
        raise ConfigError(f"size must be positive, got {size!r}")
    return value


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, cloning any that share storage (safetensors refuses those)."""
    out, seen = {}, set()
    for key, t in state.items():
        t = t.detach().contiguous().cpu()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr is not None and (ptr in seen or _nbytes(t) != t.untyped_storage().nbytes()):
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[key] = t
    return out


def _plan_shards(state: dict[str, torch.Tensor], max_bytes: int) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    size = 0
    for key, t in state.items():
        n = _nbytes(t)
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += n
    return shards


def write_safetensors(state: dict[str, torch.Tensor], out: str | os.PathLike, *,
                      max_shard_size: int | str | None = None,
                      metadata: dict[str, str] | None = None) -> list[Path]:
    """Write ``state`` as ``model.safetensors`` or as shards ``model-0000k-of-0000n.safetensors``
    plus ``model.safetensors.index.json``; remove weight files of an earlier save that the new
    layout does not use.

    Args:
        state: tensor name → tensor (tensors sharing storage are cloned).
        out: the directory (created if needed).
        max_shard_size: bytes or ``"500MB"``; ``None`` writes one file. A tensor bigger than
            the limit gets a shard of its own.
        metadata: safetensors header metadata (``{"format": "pt"}`` by default).

    Returns:
        The weight files written (the index last).

    Raises:
        ConfigError: a bad ``max_shard_size``.
    """
    from safetensors.torch import save_file

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    state = _unshare(state)
    meta = {"format": "pt", **(metadata or {})}
    plan = [list(state)] if max_shard_size is None else _plan_shards(state, parse_size(max_shard_size))
    if len(plan) == 1:
        names = [settings.SAFE_WEIGHTS_NAME]
    else:
        names = [f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]
    written, tmps = [], []
    try:
        for name, keys in zip(names, plan):
            tmp = temp_name(d / name)
            tmps.append(tmp)
            save_file({k: state[k] for k in keys}, str(tmp), metadata=meta)
        if len(plan) > 1:
            index = {"metadata": {"total_size": sum(_nbytes(t) for t in state.values())},
                     "weight_map": {k: name for name, keys in zip(names, plan) for k in keys}}
            tmp = temp_name(d / settings.SAFE_WEIGHTS_INDEX_NAME)
            tmps.append(tmp)
            tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            names.append(settings.SAFE_WEIGHTS_INDEX_NAME)
        keep = set(names)
        for stale in d.iterdir():  # an older layout would shadow the new one
            if WEIGHT_FILE_RE.match(stale.name) and stale.name not in keep:
                logger.info("removing %s from an earlier save", stale)
                stale.unlink()
        for tmp, name in zip(tmps, names):
            os.replace(tmp, d / name)
            written.append(d / name)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    logger.info("wrote %d weight file(s) to %s", len(written), d)
    return written


def write_card(directory: str | os.PathLike, meta: dict[str, Any], *, body: str = "") -> Path:
    """Write ``README.md`` with ``meta`` as front matter plus a fresh ``files`` list of every
    file in ``directory``; the result is checked with :func:`hubloader.catalogue.cards.parse_card`.

    Returns:
        The card's path.

    Raises:
        CardError: ``meta`` lacks a required field or has a bad value.
    """
    from ..catalogue.cards import card_text, parse_card

    d = Path(directory)
    meta = {k: v for k, v in meta.items() if k != "files"}
    meta["files"] = file_entries(d)
    text = card_text(meta, body)
    parse_card(text, where=str(d / settings.CARD_NAME))  # refuse to write a card we'd reject
    path = d / settings.CARD_NAME
    atomic_write_text(path, text)
    return path
