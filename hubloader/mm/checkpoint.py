"""mmpretrain checkpoints (``{'meta': ..., 'state_dict': ...}`` ``.pth``) in and out.

Reading goes through ``torch.load(weights_only=True)``: a pickle that would build anything but
tensors and plain containers is refused, unexecuted. The key layout is a mapping, declared by
each backbone (``mm_key_rules``: mmpretrain's names → hubloader's module paths) and inverted
for saving with :func:`hubloader.checkpoint_keys.invert_key_rules`; ``mm_fused_keys`` split
mmpretrain's fused ``qkv`` projection into hubloader's separate query/key/value on the way in
and join them on the way out. Loading is strict: every key must find its parameter.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..load.checkpoint_keys import invert_key_rules, rename_keys
from ..errors import UnsafeWeightsError, WeightsError, WeightsMismatchError
from ..files import temp_name

__all__ = ["read_mm_checkpoint", "load_mm_checkpoint", "to_mm_state_dict", "from_mm_state_dict",
           "save_mm_checkpoint"]

Fused = tuple[tuple[str, tuple[str, ...]], ...]


def read_mm_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of an mmpretrain ``.pth`` (or a bare state dict).

    Raises:
        UnsafeWeightsError: the pickle holds anything but tensors and plain containers.
        WeightsError: the file is missing, corrupt, or holds no state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; check the path")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeWeightsError(
            f"{path} was refused: its pickle would load objects other than tensors (it may run "
            f"code). It was not executed. Re-save it from a trusted source. ({err})") from err
    except (EOFError, RuntimeError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({err}); "
                           "delete it and download again") from err
    meta: dict = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        found = obj.get("meta")
        meta = found if isinstance(found, dict) else {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj, meta


def _unfuse(state: dict[str, torch.Tensor], fused: Fused) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for joined, parts in fused:
            if joined in key:
                if value.shape[0] % len(parts):
                    raise WeightsError(f"{key} of shape {tuple(value.shape)} does not split into "
                                       f"{len(parts)} equal parts")
                for part, chunk in zip(parts, value.chunk(len(parts), dim=0)):
                    out[key.replace(joined, part)] = chunk.contiguous()
                break
        else:
            out[key] = value
    return out


def _fuse(state: Mapping[str, torch.Tensor], fused: Fused) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, list[torch.Tensor | None]] = {}
    for key, value in state.items():
        for joined, parts in fused:
            hit = next((i for i, p in enumerate(parts) if p in key), None)
            if hit is not None:
                target = key.replace(parts[hit], joined)
                slots = pending.setdefault(target, [None] * len(parts))
                slots[hit] = value
                if all(s is not None for s in slots):
                    out[target] = torch.cat([s for s in slots if s is not None], dim=0)
                    del pending[target]
                break
        else:
            out[key] = value
    if pending:
        raise WeightsError(f"cannot join {sorted(pending)}: a part is missing")
    return out


def from_mm_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmpretrain's names → ``model``'s ``state_dict`` names."""
    renamed = rename_keys(state, getattr(model, "mm_key_rules", ()))
    unfused = _unfuse(renamed, tuple(getattr(model, "mm_fused_keys", ())))
    hook = getattr(model, "mm_load_transform", None)
    return hook(unfused) if hook is not None else unfused


def to_mm_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor] | None = None
                     ) -> dict[str, torch.Tensor]:
    """``model``'s state (or ``state`` in its names) in mmpretrain's names."""
    state = model.state_dict() if state is None else state
    hook = getattr(model, "mm_save_transform", None)
    state = hook(dict(state)) if hook is not None else state
    joined = _fuse(state, tuple(getattr(model, "mm_fused_keys", ())))
    return rename_keys(joined, invert_key_rules(getattr(model, "mm_key_rules", ())))


def load_mm_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True
                       ) -> dict:
    """Load an mmpretrain checkpoint into ``model`` (an ``ImageClassifier``); returns its meta.

    Args:
        model: the model built from the checkpoint's config.
        path: the ``.pth``.
        strict: every checkpoint key must find a parameter and every parameter a key.

    Raises:
        WeightsMismatchError: strict and the keys (named in mmpretrain's layout) or shapes differ.
        UnsafeWeightsError, WeightsError: see :func:`read_mm_checkpoint`.

    Example:
        >>> load_mm_checkpoint(model, "resnet18_8xb32_in1k_20210831-fbbb1da6.pth")  # doctest: +SKIP
    """
    state, meta = read_mm_checkpoint(path)
    load_mm_state_dict(model, state, strict=strict, source=str(path))
    return meta


def load_mm_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *,
                       strict: bool = True, source: str = "checkpoint") -> None:
    """Load a state dict in mmpretrain's names; see :func:`load_mm_checkpoint`."""
    mapped = from_mm_state_dict(model, state)
    own = model.state_dict()
    inverse = invert_key_rules(getattr(model, "mm_key_rules", ()))

    def mm_name(key: str) -> str:
        return next(iter(rename_keys({key: 0}, inverse)))

    missing = [k for k in own if k not in mapped]
    unexpected = [k for k in mapped if k not in own]
    mismatched = [(k, tuple(mapped[k].shape), tuple(own[k].shape)) for k in own
                  if k in mapped and mapped[k].shape != own[k].shape]
    if mismatched or (strict and (missing or unexpected)):
        parts = []
        if missing:
            parts.append(f"missing {sorted(mm_name(k) for k in missing)[:8]}")
        if unexpected:
            parts.append(f"unexpected {sorted(unexpected)[:8]}")
        if mismatched:
            parts.append(f"shape mismatch {[(mm_name(k), a, b) for k, a, b in mismatched][:8]}")
        raise WeightsMismatchError(
            f"{source} does not fit the model ({'; '.join(parts)}); build the model from the "
            "checkpoint's own config", missing=[mm_name(k) for k in missing],
            unexpected=unexpected, mismatched=mismatched)
    model.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=strict)


def save_mm_checkpoint(model: nn.Module, path: str | os.PathLike, *,
                       meta: dict | None = None) -> Path:
    """Write ``model`` as an mmpretrain checkpoint (``{'meta', 'state_dict'}``), atomically.

    mmpretrain's ``load_checkpoint(model, path, strict=True)`` reads the file as it reads its own.

    Raises:
        OSError: the directory is not writable or the disk is full (no partial file is left).
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in to_mm_state_dict(model).items()}
    payload = {"meta": {"saved_by": "hubloader", **(meta or {})}, "state_dict": state}
    tmp = temp_name(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

