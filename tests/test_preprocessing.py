"""Image preprocessing from preprocessor_config.json against transformers' PIL processors, and
bad images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from _families import max_diff
from hubloader.errors import ConfigError, InputError
from hubloader.vision.preprocessing import load_image_processor

from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402
from transformers.models.convnext.image_processing_pil_convnext import ConvNextImageProcessorPil  # noqa: E402
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(57, 41), (40, 70), (33, 33)]):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        p = d / f"im{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    gray = d / "gray.png"
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8), mode="L").save(gray)
    return paths, gray


@pytest.mark.parametrize("hf_proc", [
    ViTImageProcessorPil(size={"height": 32, "width": 40}),
    ConvNextImageProcessorPil(size={"shortest_edge": 32}),          # what ResNet cards use
    ConvNextImageProcessorPil(size={"shortest_edge": 384}),         # >= 384: plain resize
    CLIPImageProcessorPil(size={"shortest_edge": 30}, crop_size={"height": 24, "width": 24}),
], ids=["vit", "convnext-crop-pct", "convnext-384", "shortest-edge-crop"])
def test_matches_transformers(tmp_path, images, hf_proc):
    paths, _ = images
    hf_proc.save_pretrained(str(tmp_path))
    ours = load_image_processor(tmp_path)
    for p in paths:
        ref = hf_proc(Image.open(p).convert("RGB"), return_tensors="pt")["pixel_values"]
        got = ours(p)["pixel_values"]
        assert got.dtype == torch.float32
        assert got.shape == ref.shape
        assert max_diff(got, ref) <= 1e-5


def test_batch_of_mixed_inputs(tmp_path, images):
    paths, gray = images
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(str(tmp_path))
    proc = load_image_processor(tmp_path)
    batch = proc([paths[0], Image.open(paths[1]), gray])["pixel_values"]
    assert batch.shape == (3, 3, 16, 16)
    # a grayscale image is converted to RGB: its three channels are equal
    assert torch.equal(batch[2, 0], batch[2, 1]) and torch.equal(batch[2, 1], batch[2, 2])


def test_not_an_image(tmp_path, images):
    ViTImageProcessorPil().save_pretrained(str(tmp_path))
    proc = load_image_processor(tmp_path)
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is text, not a JPEG")
    with pytest.raises(InputError, match="not an image"):
        proc(fake)
    with pytest.raises(InputError, match="no image file"):
        proc(tmp_path / "missing.png")
    with pytest.raises(InputError, match="file path or a PIL.Image"):
        proc(np.zeros((4, 4, 3)))
    with pytest.raises(InputError, match="no images"):
        proc([])


def test_bad_preprocessor_config(tmp_path):
    with pytest.raises(ConfigError, match="preprocessor_config.json"):
        load_image_processor(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_image_processor(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": -1}}))
    with pytest.raises(ConfigError, match="size"):
        load_image_processor(tmp_path)
