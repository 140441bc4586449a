"""Tiny image classifiers and generated image-folder datasets for the AlphaMed/FedAvg tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

LABELS = ("red", "green", "blue")
_COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def tiny_resnet_dir(root: Path, *, seed: int = 0, labels=("cat", "dog")) -> Path:
    """A small random ResNet image classifier saved as a hubloader folder, with a 16x16
    preprocessor_config.json; its labels differ from the datasets' (the head is replaced)."""
    import torch

    from hubloader.models import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    cfg = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                       id2label={str(i): n for i, n in enumerate(labels)})
    model = ResNetForImageClassification.from_config(cfg)
    model.save_pretrained(root)
    (root / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True,
        "size": {"height": 16, "width": 16}, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    return root


def write_images(split_dir: Path, counts: dict[str, int], *, seed: int, size: int = 16) -> None:
    """``counts[label]`` noisy images of the label's colour under ``split_dir/<label>/``."""
    from PIL import Image

    rng = random.Random(seed)
    for label, n in counts.items():
        d = split_dir / label
        d.mkdir(parents=True, exist_ok=True)
        base = _COLOURS[label]
        for i in range(n):
            img = Image.new("RGB", (size, size))
            img.putdata([tuple(max(0, min(255, c + rng.randint(-60, 60))) for c in base)
                         for _ in range(size * size)])
            img.save(d / f"{label}_{i}.png")


def image_dataset(root: Path, *, train: dict[str, int], test: dict[str, int] | None = None,
                  val: dict[str, int] | None = None, seed: int = 0) -> Path:
    write_images(root / "train", train, seed=seed)
    if val:
        write_images(root / "val", val, seed=seed + 1000)
    if test:
        write_images(root / "test", test, seed=seed + 2000)
    return root


def tiny_vision_dir(root: Path, family: str, *, seed: int = 0) -> Path:
    """A small random ViT or Swin image classifier (16x16 input), saved with a
    preprocessor_config.json, labels cat/dog."""
    import torch

    from hubloader.models import (SwinConfig, SwinForImageClassification, ViTConfig,
                                  ViTForImageClassification)

    torch.manual_seed(seed)
    id2label = {"0": "cat", "1": "dog"}
    if family == "vit":
        model = ViTForImageClassification.from_config(ViTConfig(
            hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            image_size=16, patch_size=8, id2label=id2label))
    else:
        model = SwinForImageClassification.from_config(SwinConfig(
            image_size=16, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
            window_size=2, drop_path_rate=0.0, id2label=id2label))
    model.save_pretrained(root)
    (root / "preprocessor_config.json").write_text(json.dumps({
        "size": {"height": 16, "width": 16}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return root
