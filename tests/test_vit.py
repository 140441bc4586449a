"""ViT against transformers (random-init, HF format): classification logits and loss, the
backbone with pooler, AutoLoader with the image processor, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _families import TOL, max_diff, save_hf
from hubloader import AutoLoader, BaseModel
from hubloader.errors import InputError, TokenizerError, UnknownTaskError
from hubloader.models import ViTForImageClassification, ViTModel

import transformers  # noqa: E402  (test-only oracle)
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402

SIZE = 32


def _config(**kw):
    return transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=48, image_size=SIZE, patch_size=8,
                                  num_labels=5, initializer_range=0.2, **kw)


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(_config()).eval()
    path = save_hf(hf, tmp_path_factory.mktemp("vit"))
    ViTImageProcessorPil(size={"height": SIZE, "width": SIZE}).save_pretrained(str(path))
    return hf, path


def _pixels(batch=2, seed=0, size=SIZE):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_classification_matches_transformers(hf_vit):
    hf, path = hf_vit
    ours = ViTForImageClassification.from_pretrain(str(path))
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    x, labels = _pixels(), torch.tensor([1, 4])
    with torch.no_grad():
        ref, out = hf(pixel_values=x, labels=labels), ours(pixel_values=x, labels=labels)
    assert out["logits"].shape == (2, 5)
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL


def test_backbone_with_pooler_matches_transformers(tmp_path):
    torch.manual_seed(1)
    hf = transformers.ViTModel(_config()).eval()
    ours = ViTModel.from_pretrain(str(save_hf(hf, tmp_path)))
    x = _pixels(seed=2)
    with torch.no_grad():
        ref, out = hf(pixel_values=x), ours(x)
    assert max_diff(out["hidden_states"], ref.last_hidden_state) <= TOL
    assert max_diff(out["pooled"], ref.pooler_output) <= TOL


def test_base_model_picks_the_head(hf_vit):
    _, path = hf_vit
    assert isinstance(BaseModel.from_pretrain(str(path)), ViTForImageClassification)


def test_autoloader_image_classification_end_to_end(hf_vit, tmp_path):
    hf, path = hf_vit
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8)).save(img)
    loader = AutoLoader("classification", model_name=str(path))  # alias → image-classification
    assert loader.task == "image-classification"
    model, proc = loader.get_model(), loader.get_processor()
    batch = proc(img)
    ref_px = ViTImageProcessorPil(size={"height": SIZE, "width": SIZE})(
        Image.open(img), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert max_diff(model(**batch)["logits"], hf(pixel_values=ref_px).logits) <= TOL
    with pytest.raises(TokenizerError, match="get_processor"):
        loader.get_tokenizer()
    with pytest.raises(UnknownTaskError, match="cannot serve"):
        AutoLoader("text-generation", model_name=str(path))


def test_bad_inputs(hf_vit):
    _, path = hf_vit
    ours = ViTForImageClassification.from_pretrain(str(path))
    with pytest.raises(InputError, match="torch.Tensor"):
        ours(pixel_values=np.zeros((1, 3, SIZE, SIZE)))
    with pytest.raises(InputError, match="batch dimension"):
        ours(pixel_values=torch.zeros(3, SIZE, SIZE))
    with pytest.raises(InputError, match="channels"):
        ours(pixel_values=torch.zeros(1, 1, SIZE, SIZE))
    with pytest.raises(InputError, match="float"):
        ours(pixel_values=torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(InputError, match="expects"):
        ours(pixel_values=torch.zeros(1, 3, SIZE * 2, SIZE))
    with pytest.raises(InputError, match="required"):
        ours()
    with pytest.raises(InputError, match="unexpected"):
        ours(pixel_values=_pixels(), input_ids=torch.ones(1, 3))


@pytest.mark.parametrize("size", [(48, 48), (40, 56), (32, 32)])
def test_interpolated_positions_match_transformers(hf_vit, size):
    """Other image sizes with interpolate_pos_encoding=True: the same bicubic resize of the
    learned positions as transformers (and the trained grid is left as it is)."""
    hf, path = hf_vit
    ours = ViTForImageClassification.from_pretrain(str(path))
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = hf(pixel_values=x, interpolate_pos_encoding=True)
        out = ours(pixel_values=x, interpolate_pos_encoding=True)
        plain = ours(pixel_values=x[..., :SIZE, :SIZE])
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert out["hidden_states"].shape[1] == (size[0] // 8) * (size[1] // 8) + 1
    if size == (SIZE, SIZE):
        assert max_diff(out["logits"], plain["logits"]) == 0
    else:
        with pytest.raises(InputError, match="interpolate_pos_encoding=True"):
            ours(pixel_values=x)
    with pytest.raises(InputError, match="smaller than one 8x8 patch"):
        ours(pixel_values=torch.randn(1, 3, 4, 40), interpolate_pos_encoding=True)
