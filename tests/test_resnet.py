"""ResNet (bottleneck and basic) against transformers (random-init with random batch-norm
statistics, HF format): logits, pooled features, stage outputs; AutoLoader; bad input."""

from __future__ import annotations

import pytest
import torch

from _families import TOL, max_diff, save_hf
from hubloader import AutoLoader
from hubloader.errors import InputError, UnknownTaskError
from hubloader.models import ResNetForImageClassification, ResNetModel

import transformers  # noqa: E402  (test-only oracle)


def _randomize_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


@pytest.fixture(scope="module", params=[
    {"layer_type": "bottleneck", "hidden_sizes": [16, 32, 48, 64], "depths": [2, 1, 1, 1]},
    {"layer_type": "basic", "hidden_sizes": [8, 16, 24], "depths": [1, 2, 1],
     "downsample_in_first_stage": True},
], ids=["bottleneck", "basic"])
def hf_resnet(request, tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.ResNetConfig(embedding_size=8, num_labels=4, **request.param)
    hf = transformers.ResNetForImageClassification(cfg).eval()
    with torch.no_grad():
        _randomize_bn(hf)
    return hf, save_hf(hf, tmp_path_factory.mktemp(request.param["layer_type"]))


def _pixels(batch=2, h=45, w=38, seed=0):
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_classification_matches_transformers(hf_resnet):
    hf, path = hf_resnet
    ours = ResNetForImageClassification.from_pretrain(str(path))
    r = ours.load_report
    assert r.missing == [] and r.unexpected == [] and r.num_tensors > 0
    x, labels = _pixels(), torch.tensor([0, 3])
    with torch.no_grad():
        ref = hf(pixel_values=x, labels=labels, output_hidden_states=True)
        out = ours(pixel_values=x, labels=labels)
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL
    assert max_diff(out["hidden_states"], ref.hidden_states[-1]) <= TOL


def test_backbone_and_stage_features_match_transformers(hf_resnet):
    hf, path = hf_resnet
    base = ResNetModel.from_pretrain(str(path))  # head checkpoint → backbone
    assert base.load_report.discarded == ["classifier.bias", "classifier.weight"]
    x = _pixels(seed=1)
    with torch.no_grad():
        ref = hf.resnet(pixel_values=x, output_hidden_states=True)
        base.register_features_buffer_by_layer_indexes(range(base.get_depth()))
        out = base(x)
    assert max_diff(out["pooled"], ref.pooler_output.flatten(1)) <= TOL
    feats = base.fetch_features()
    assert len(feats) == len(ref.hidden_states)  # stem + every stage, like transformers
    for ours_f, ref_f in zip(feats, ref.hidden_states):
        assert max_diff(ours_f, ref_f) <= TOL


def test_autoloader(hf_resnet):
    _, path = hf_resnet
    loader = AutoLoader("classification", model_name=str(path))
    assert isinstance(loader.get_model(), ResNetForImageClassification)
    assert isinstance(AutoLoader("image-feature-extraction", model_name=str(path)).get_model(),
                      ResNetModel)
    with pytest.raises(UnknownTaskError, match="cannot serve"):
        AutoLoader("seq2seq", model_name=str(path))


def test_bad_inputs(hf_resnet):
    _, path = hf_resnet
    ours = ResNetForImageClassification.from_pretrain(str(path))
    with pytest.raises(InputError, match="torch.Tensor"):
        ours(pixel_values=[[0.0]])
    with pytest.raises(InputError, match="channels"):
        ours(pixel_values=torch.zeros(1, 4, 32, 32))
    with pytest.raises(InputError, match=r"\[batch, channels, height, width\]"):
        ours(pixel_values=torch.zeros(32, 32))
    with pytest.raises(InputError, match="float"):
        ours(pixel_values=torch.zeros(1, 3, 32, 32, dtype=torch.long))
