"""Swin against transformers (random-init, HF format): logits, loss and every stage's hidden
states; the blocks as the downstream platform's feature entries; the pyramid layer choice."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _families import max_diff, save_hf
from hubloader import AutoLoader, BaseModel
from hubloader.errors import FeatureShapeError
from hubloader.models import SwinForImageClassification, SwinModel
from model_downstream_interface import BigModel4DownstreamInterface
from model_downstream_interface.utils import get_pyramid_feature_layer_indexes

import transformers  # noqa: E402  (test-only oracle)

TOL = 1e-5


def _config(**kw):
    base = dict(image_size=32, patch_size=2, embed_dim=8, depths=[2, 2, 2], num_heads=[2, 2, 4],
                window_size=4, num_labels=3, initializer_range=0.2, drop_path_rate=0.0)
    base.update(kw)
    return transformers.SwinConfig(**base)


def _randomize(model):
    """Random relative position tables (transformers starts them at zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def hf_swin(tmp_path_factory):
    torch.manual_seed(0)
    hf = _randomize(transformers.SwinForImageClassification(_config())).eval()
    return hf, save_hf(hf, tmp_path_factory.mktemp("swin"))


def _pixels(batch=2, seed=0, size=(32, 32)):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(32, 32), (36, 44)])  # whole windows; padded windows
def test_logits_and_stages_match_transformers(hf_swin, size):
    _, path = hf_swin
    # a fresh oracle: transformers' blocks keep the shift they dropped for a small map
    hf = transformers.SwinForImageClassification.from_pretrained(str(path)).eval()
    ours = SwinForImageClassification.from_pretrain(str(path))
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    x, labels = _pixels(size=size), torch.tensor([0, 2])
    with torch.no_grad():
        ref = hf(pixel_values=x, labels=labels, output_hidden_states=True)
        out = ours(pixel_values=x, labels=labels, output_hidden_states=True)
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL
    assert len(out["all_hidden_states"]) == len(ref.hidden_states) == 4
    for mine, theirs in zip(out["all_hidden_states"], ref.hidden_states):
        assert max_diff(mine, theirs) <= TOL


def test_backbone_blocks_are_the_feature_entries(hf_swin):
    hf, path = hf_swin
    base = SwinModel.from_pretrain(str(path))  # head checkpoint → backbone
    assert base.load_report.discarded == ["classifier.bias", "classifier.weight"]
    assert isinstance(base, BigModel4DownstreamInterface)
    assert base.is_hierarchical_features() is True
    assert base.get_depth() == 6
    shapes = base.get_features_shapes_all_layers((3, 32, 32))
    assert shapes == [(16, 16, 8)] * 2 + [(8, 8, 16)] * 2 + [(4, 4, 32)] * 2
    layers = get_pyramid_feature_layer_indexes(shapes)
    assert layers == [1, 3, 5]  # the last block of each stage
    base.register_features_buffer_by_layer_indexes(layers)
    x = _pixels()
    with torch.no_grad():
        base(x)
        ref = hf.swin(pixel_values=x, output_hidden_states=True,
                      output_hidden_states_before_downsampling=True)
    feats = base.fetch_features()
    assert [tuple(f.shape[1:]) for f in feats] == [shapes[i] for i in layers]
    # the last block of a stage is the stage's output before patch merging
    for f, r in zip(feats, ref.reshaped_hidden_states[1:]):
        assert max_diff(f, r.permute(0, 2, 3, 1)) <= TOL
    with pytest.raises(FeatureShapeError):
        base.get_features_shape((1, 3, 32, 32), 0)


def test_autoloader_and_roundtrip(hf_swin, tmp_path):
    _, path = hf_swin
    loader = AutoLoader("image-classification", model_name=str(path))
    model = loader.get_model()
    assert isinstance(model, SwinForImageClassification)
    model.save_pretrained(tmp_path)
    again = BaseModel.from_pretrain(str(tmp_path))
    x = _pixels(batch=1)
    with torch.no_grad():
        assert torch.equal(again(x)["logits"], model(x)["logits"])


def test_swin_tiny_card_shapes():
    """The card's 224 px layout: 12 blocks, pyramid at [1, 3, 9, 11] (built on meta, no weights)."""
    from hubloader.catalogue.cards import model_info
    from hubloader.models import SwinConfig

    assert model_info("swin-tiny-patch4-window7-224").architecture == "swin"
    with torch.device("meta"):
        model = SwinModel(SwinConfig())
    shapes = model.get_features_shapes_all_layers((3, 224, 224))
    assert shapes[0] == (56, 56, 96) and shapes[-1] == (7, 7, 768)
    assert get_pyramid_feature_layer_indexes(shapes) == [1, 3, 9, 11]


@pytest.fixture(scope="module")
def tiny_swin():
    from hubloader.models import SwinConfig

    torch.manual_seed(0)
    return SwinModel.from_config(SwinConfig.from_dict(dict(
        image_size=16, patch_size=3, embed_dim=8, depths=[1, 1, 1], num_heads=[2, 2, 2],
        window_size=2))).eval()


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40))
def test_declared_shapes_hold_for_any_image_size(tiny_swin, h, w):
    """Patches, windows and merges pad odd sizes; the declared shapes follow them exactly."""
    declared = tiny_swin.get_features_shapes_all_layers((3, h, w))
    tiny_swin.register_features_buffer_by_layer_indexes(range(tiny_swin.get_depth()))
    with torch.no_grad():
        tiny_swin(torch.randn(1, 3, h, w))
    assert [tuple(f.shape[1:]) for f in tiny_swin.fetch_features()] == declared


@given(shape=st.lists(st.integers(-2, 40), min_size=0, max_size=5))
def test_any_wrong_sample_shape_is_a_feature_shape_error(tiny_swin, shape):
    shape = tuple(shape)
    if len(shape) == 3 and shape[0] == 3 and min(shape) > 0:
        assert len(tiny_swin.get_features_shapes_all_layers(shape)) == 3
    else:
        with pytest.raises(FeatureShapeError):
            tiny_swin.get_features_shape(shape, 0)
