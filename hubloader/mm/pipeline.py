"""The inference part of mmpretrain's ``test_pipeline``, on Pillow images.

``LoadImageFromFile``, ``ResizeEdge``, ``Resize``, ``CenterCrop`` and ``PackInputs`` (the steps
mmpretrain's test pipelines use). Images are RGB here; mmpretrain reads BGR with OpenCV and
its data preprocessor's ``to_rgb`` swaps them back, so both feed the network RGB.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from ..errors import ConfigError, InputError

__all__ = ["load_image", "apply_pipeline"]

_INTERP = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1, "box": 4, "hamming": 5}


def load_image(image: Any) -> Any:
    """A Pillow RGB image from a path, a Pillow image or an ``H x W x 3`` uint8 array (RGB).

    Raises:
        InputError: anything else, or a file that is not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise InputError(f"cannot read the image {image}: {err}") from err
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None  # type: ignore[assignment]
    if np is not None and isinstance(image, np.ndarray) and image.ndim == 3 \
            and image.shape[2] == 3 and image.dtype == np.uint8:
        return Image.fromarray(image, "RGB")
    raise InputError("image must be a file path, a PIL image or an HxWx3 uint8 RGB array")


def _size(value: Any, path: str) -> tuple[int, int]:
    """``(width, height)`` from mmpretrain's ``scale``/``crop_size`` (an int or ``(w, h)``)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{path} must be a positive int or (width, height), got {value!r}")


def apply_pipeline(image: Any, steps: Sequence[Any]) -> torch.Tensor:
    """``image`` through ``steps``; returns a ``[3, H, W]`` float tensor of 0-255 values.

    Raises:
        ConfigError: a step hubloader does not know, or bad step arguments.
        InputError: an image it cannot read.
    """
    import numpy as np

    img = load_image(image)
    for i, step in enumerate(steps):
        where = f"test_pipeline[{i}]"
        if not isinstance(step, dict) or "type" not in step:
            raise ConfigError(f"{where} must be a dict with a 'type'")
        kind = step["type"]
        interp = _INTERP.get(str(step.get("interpolation", "bilinear")))
        if interp is None:
            raise ConfigError(f"{where}.interpolation must be one of {sorted(_INTERP)}")
        if kind in ("LoadImageFromFile", "PackInputs", "PackClsInputs"):
            continue
        if kind == "ResizeEdge":
            scale = step.get("scale")
            if not isinstance(scale, int) or scale <= 0:
                raise ConfigError(f"{where}.scale must be a positive int")
            edge = step.get("edge", "short")
            w, h = img.size
            ref = {"short": min(w, h), "long": max(w, h), "width": w, "height": h}.get(edge)
            if ref is None:
                raise ConfigError(f"{where}.edge must be short, long, width or height")
            ratio = scale / ref
            img = img.resize((int(w * ratio + 0.5), int(h * ratio + 0.5)), interp)
        elif kind == "Resize":
            w, h = _size(step.get("scale"), f"{where}.scale")
            img = img.resize((w, h), interp)
        elif kind == "CenterCrop":
            cw, ch = _size(step.get("crop_size"), f"{where}.crop_size")
            w, h = img.size
            x1 = max(0, int(round((w - cw) / 2.0)))
            y1 = max(0, int(round((h - ch) / 2.0)))
            img = img.crop((x1, y1, min(w, x1 + cw), min(h, y1 + ch)))
        else:
            raise ConfigError(f"{where}: hubloader's inference does not run {kind!r}; it knows "
                              "LoadImageFromFile, ResizeEdge, Resize, CenterCrop, PackInputs")
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)
