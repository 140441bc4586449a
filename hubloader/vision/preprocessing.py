"""Vision preprocessing from ``preprocessor_config.json``: resize, center crop, rescale,
normalize — with Pillow and torch, no torchvision.

The steps and their order follow transformers' PIL image processors (``ViTImageProcessor``,
``ConvNextImageProcessor`` — the one ResNet checkpoints name — and the generic
shortest-edge-then-crop processors), so the same image gives the same ``pixel_values``.

Example:
    >>> proc = load_image_processor("./vit-base-patch16-224")
    >>> batch = proc(["cat.jpg", "dog.png"])          # {"pixel_values": [2, 3, 224, 224]}
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputError, PackageError

__all__ = ["ImageProcessor", "load_image_processor", "load_image", "clip_image_processor",
           "PREPROCESSOR_NAME"]

logger = logging.getLogger(__name__)

PREPROCESSOR_NAME = "preprocessor_config.json"
_IMAGENET_STANDARD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
# OpenAI's CLIP statistics (FlagAI's clip_transform and transformers' CLIPImageProcessor)
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
_BICUBIC, _BILINEAR = 3, 2


def _pil():
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - Pillow is in the test environment
        raise PackageError("image preprocessing needs Pillow: pip install 'hubloader[vision]'") from err
    return Image


def load_image(image: Any):
    """An RGB ``PIL.Image`` from a path or a PIL image.

    Raises:
        InputError: the path does not exist, or the file is not an image Pillow can read.
    """
    Image = _pil()
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, (str, os.PathLike)):
        raise InputError(f"an image must be a file path or a PIL.Image, got {type(image).__name__}")
    path = Path(image)
    if not path.is_file():
        raise InputError(f"no image file at {path}; give the path of a JPEG/PNG/... image")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{path} is not an image Pillow can read ({err}); pass a JPEG, PNG or "
                         "other image file") from err


# processors whose plain-int ``size`` is the shortest edge, not a square
_SHORTEST_EDGE_TYPES = ("CLIPImageProcessor", "CLIPFeatureExtractor")


def _size_dict(value: Any, where: str) -> dict[str, int]:
    if isinstance(value, int):
        return {"height": value, "width": value}
    if isinstance(value, dict) and value and all(isinstance(v, int) and v > 0 for v in value.values()):
        if "shortest_edge" in value or ("height" in value and "width" in value):
            return dict(value)
    raise ConfigError(f"{where}: a size must be an int or {{'height','width'}} / "
                      f"{{'shortest_edge'}} of positive ints, got {value!r}")


@dataclass
class ImageProcessor:
    """Resize → center crop → rescale → normalize, as ``preprocessor_config.json`` says.

    Attributes mirror the file's keys; ``processor_type`` is its ``image_processor_type``.
    """

    do_resize: bool = True
    size: dict[str, int] = field(default_factory=lambda: {"height": 224, "width": 224})
    resample: int = _BILINEAR
    do_center_crop: bool = False
    crop_size: dict[str, int] | None = None
    crop_pct: float | None = None
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: list[float] = field(default_factory=lambda: list(_IMAGENET_STANDARD[0]))
    image_std: list[float] = field(default_factory=lambda: list(_IMAGENET_STANDARD[1]))
    processor_type: str = "ViTImageProcessor"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = PREPROCESSOR_NAME) -> "ImageProcessor":
        """Build from the contents of a ``preprocessor_config.json``.

        Raises:
            ConfigError: a malformed size, mean/std or resample value.
        """
        ptype = str(data.get("image_processor_type") or data.get("feature_extractor_type")
                    or "ViTImageProcessor").removesuffix("Fast").removesuffix("Pil")
        convnext = ptype == "ConvNextImageProcessor"
        kw: dict[str, Any] = {"processor_type": ptype}
        if convnext:
            kw.update(size={"shortest_edge": 384}, resample=_BICUBIC, crop_pct=224 / 256)
        for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            if key in data:
                kw[key] = bool(data[key])
        if "size" in data:
            kw["size"] = _size_dict(data["size"], where)
            if ptype in _SHORTEST_EDGE_TYPES and isinstance(data["size"], int):
                kw["size"] = {"shortest_edge": data["size"]}  # CLIP's int is the short side
        if data.get("crop_size") is not None:
            kw["crop_size"] = _size_dict(data["crop_size"], where)
        if convnext and data.get("crop_pct") is not None:
            kw["crop_pct"] = float(data["crop_pct"])
        if data.get("resample") is not None:
            if not isinstance(data["resample"], int) or not 0 <= data["resample"] <= 5:
                raise ConfigError(f"{where}: resample must be a PIL filter number 0..5")
            kw["resample"] = data["resample"]
        if data.get("rescale_factor") is not None:
            kw["rescale_factor"] = float(data["rescale_factor"])
        for key in ("image_mean", "image_std"):
            if data.get(key) is not None:
                v = data[key]
                v = [v] * 3 if isinstance(v, (int, float)) else v
                if not isinstance(v, list) or not all(isinstance(x, (int, float)) for x in v):
                    raise ConfigError(f"{where}: {key} must be a number or a list of numbers")
                kw[key] = [float(x) for x in v]
        if any(s == 0 for s in kw.get("image_std", [1.0])):
            raise ConfigError(f"{where}: image_std must not contain 0")
        return cls(**kw)

    # -- steps ------------------------------------------------------------------------------
    def _resize(self, img, size: dict[str, int]):
        w, h = img.size
        if "shortest_edge" in size:
            edge = size["shortest_edge"]
            if self.crop_pct is not None and edge < 384:  # ConvNeXt/ResNet: resize, then crop
                short, long = (w, h) if w <= h else (h, w)
                target = int(edge / self.crop_pct)
                new_short, new_long = target, int(target * long / short)
                img = img.resize((new_short, new_long) if w <= h else (new_long, new_short),
                                 resample=self.resample)
                return self._crop(img, edge, edge)
            if self.crop_pct is not None:
                return img.resize((edge, edge), resample=self.resample)
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(edge * long / short)
            return img.resize((edge, new_long) if w <= h else (new_long, edge), resample=self.resample)
        return img.resize((size["width"], size["height"]), resample=self.resample)

    @staticmethod
    def _crop(img, height: int, width: int):
        w, h = img.size
        if height > h or width > w:  # pad with black like transformers, keeping the centre
            Image = _pil()
            canvas = Image.new(img.mode, (max(w, width), max(h, height)))
            canvas.paste(img, ((max(w, width) - w) // 2, (max(h, height) - h) // 2))
            img, (w, h) = canvas, canvas.size
        top, left = (h - height) // 2, (w - width) // 2
        return img.crop((left, top, left + width, top + height))

    def preprocess_one(self, image: Any) -> torch.Tensor:
        """One image (path or PIL image) → ``[3, H, W]`` float32 tensor."""
        img = load_image(image)
        if self.do_resize:
            img = self._resize(img, self.size)
        if self.do_center_crop and self.crop_size:
            img = self._crop(img, self.crop_size["height"], self.crop_size["width"])
        arr = np.asarray(img, dtype=np.float32)  # [H, W, C]
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        if self.do_rescale:
            x = x * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=torch.float32)[:, None, None]
            std = torch.tensor(self.image_std, dtype=torch.float32)[:, None, None]
            x = (x - mean) / std
        return x

    def __call__(self, images: Any | Sequence[Any], *, device: str | torch.device | None = None
                 ) -> dict[str, torch.Tensor]:
        """Preprocess one image or a list of images.

        Args:
            images: a path, a ``PIL.Image``, or a list of them (all preprocessed to one size).
            device: where to put the batch (default: CPU).

        Returns:
            ``{"pixel_values": [batch, 3, H, W] float32 tensor}``.

        Raises:
            InputError: a path that is missing or not an image, or images of different sizes
                after preprocessing (e.g. ``do_resize`` off).
        """
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise InputError("no images given: pass a path, a PIL.Image or a list of them")
        tensors = [self.preprocess_one(im) for im in items]
        if len({t.shape for t in tensors}) > 1:
            raise InputError(f"images differ in size after preprocessing "
                             f"({sorted({tuple(t.shape) for t in tensors})}); enable do_resize")
        batch = torch.stack(tensors)
        return {"pixel_values": batch if device is None else batch.to(device)}


def load_image_processor(model_dir: str | os.PathLike) -> ImageProcessor:
    """The image processor of a model directory, from its ``preprocessor_config.json``.

    Raises:
        ConfigError: the file is missing, not JSON, or malformed.
    """
    path = Path(model_dir) / PREPROCESSOR_NAME
    if not path.is_file():
        raise ConfigError(f"no {PREPROCESSOR_NAME} in {model_dir}: a vision model needs one to "
                          "preprocess images; download the model again or add the file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); download the model again") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return ImageProcessor.from_dict(data, where=str(path))


def clip_image_processor(image_size: int) -> ImageProcessor:
    """CLIP's preprocessing for ``image_size`` pixels (bicubic shortest-edge resize, centre
    crop, OpenAI's statistics): what a FlagAI CLIP folder, which carries no
    ``preprocessor_config.json``, is preprocessed with."""
    return ImageProcessor(size={"shortest_edge": image_size}, resample=_BICUBIC,
                          do_center_crop=True,
                          crop_size={"height": image_size, "width": image_size},
                          image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD),
                          processor_type="CLIPImageProcessor")
