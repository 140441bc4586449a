"""mmpretrain's components: the MODELS registry, parity with mmpretrain 1.2.0 on the same
weights (both checkpoint directions, strict), losses, FLOPs against mmengine, bad inputs."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import _mm_oracle
from hubloader import MODELS, Config, get_flops
from hubloader.errors import ConfigError, InputError, UnsafeWeightsError, WeightsError, \
    WeightsMismatchError
from hubloader.mm import RegistryError, load_mm_checkpoint, save_mm_checkpoint


@pytest.fixture(scope="module")
def oracle():
    return _mm_oracle.load()


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Every float tensor random, BatchNorm statistics included, so that each one counts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)


def _config_model(name: str, head: dict | None = None, **backbone) -> dict:
    """``model`` of mmpretrain's own config ``name``, read by hubloader's reader."""
    root = _mm_oracle.configs_dir()
    model = Config.fromfile(root / name, root=root).to_dict()["model"]
    model["backbone"].update(backbone)
    model["head"].update(head or {})
    return model


CASES = {
    "resnet18": (lambda: _config_model("resnet/resnet18_8xb32_in1k.py"), 64),
    "resnet50": (lambda: _config_model("resnet/resnet50_8xb32_in1k.py"), 64),
    "resnet50-deep-caffe": (lambda: _config_model("resnet/resnet50_8xb32_in1k.py",
                                                  deep_stem=True, style="caffe",
                                                  out_indices=(2, 3)), 64),
    "resnet18-cifar": (lambda: _config_model("resnet/resnet18_8xb16_cifar10.py"), 32),
    "vit-arch-name": (lambda: _config_model("vision_transformer/vit-base-p16_64xb64_in1k-384px.py",
                                            arch="deit-tiny", img_size=64,
                                            head=dict(in_channels=192)), 64),
    "vit-custom-dict": (lambda: dict(
        type="ImageClassifier",
        backbone=dict(type="VisionTransformer", img_size=32, patch_size=8, out_type="avg_featmap",
                      arch=dict(embed_dims=64, num_layers=3, num_heads=4,
                                feedforward_channels=96)),
        head=dict(type="VisionTransformerClsHead", num_classes=7, in_channels=64,
                  hidden_dim=48)), 32),
    "swin-tiny": (lambda: _config_model("swin_transformer/swin-tiny_16xb64_in1k.py"), 224),
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_mmpretrain_both_ways(oracle, tmp_path, case):
    mm_models, _, mm_load, mm_save, _ = oracle
    make, size = CASES[case]
    cfg = make()
    ref = mm_models.build(copy.deepcopy(cfg))
    _randomize(ref)
    ref.eval()
    mm_save({"meta": {"dataset_meta": {"classes": ["a", "b"]}}, "state_dict": ref.state_dict()},
            str(tmp_path / "mm.pth"))

    ours = MODELS.build(copy.deepcopy(cfg)).eval()
    meta = load_mm_checkpoint(ours, tmp_path / "mm.pth")  # strict
    assert meta["dataset_meta"]["classes"] == ["a", "b"]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert want.std() > 1e-3  # the weights are not degenerate
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)

    # mmpretrain reads hubloader's save strictly and computes the same
    save_mm_checkpoint(ours, tmp_path / "ours.pth")
    back = mm_models.build(copy.deepcopy(cfg))
    mm_load(back, str(tmp_path / "ours.pth"), strict=True, logger="silent")
    back.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), want, atol=1e-4, rtol=1e-4)
    saved = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert set(saved) == {"meta", "state_dict"}
    assert set(saved["state_dict"]) == set(ref.state_dict())


def test_predict_and_loss_modes_match_mmpretrain(oracle):
    mm_models = oracle[0]
    cfg = _config_model("resnet/resnet18_8xb32_in1k.py")
    cfg["head"]["num_classes"] = 5
    cfg["head"]["loss"] = dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="original")
    ref = mm_models.build(copy.deepcopy(cfg))
    _randomize(ref)
    ours = MODELS.build(copy.deepcopy(cfg))
    ours.load_state_dict(__import__("hubloader.mm.checkpoint", fromlist=["x"])
                         .from_mm_state_dict(ours, ref.state_dict()))
    ref.eval()
    ours.eval()
    x = torch.randn(3, 3, 32, 32)
    labels = torch.tensor([0, 4, 2])
    from mmpretrain.structures import DataSample

    samples = [DataSample().set_gt_label(int(i)) for i in labels]
    with torch.no_grad():
        want_pred = ref(x, samples, mode="predict")
        got_pred = ours(x, mode="predict")
        want_loss = ref(x, samples, mode="loss")["loss"]
        got_loss = ours(x, labels, mode="loss")["loss"]
        feats = ours.extract_feat(x)
    assert [int(p.pred_label) for p in want_pred] == [int(p["pred_label"]) for p in got_pred]
    torch.testing.assert_close(torch.stack([p["pred_score"] for p in got_pred]),
                               torch.stack([p.pred_score for p in want_pred]))
    torch.testing.assert_close(got_loss, want_loss)
    assert feats[0].shape == (3, 512)
    with pytest.raises(InputError):
        ours(x, mode="train")
    with pytest.raises(InputError):
        ours(x, torch.tensor([1]), mode="loss")


@pytest.mark.parametrize("loss", [
    dict(type="CrossEntropyLoss"),
    dict(type="CrossEntropyLoss", loss_weight=0.5, class_weight=[1.0, 2.0, 0.5, 1.0]),
    dict(type="CrossEntropyLoss", use_sigmoid=True),
    dict(type="LabelSmoothLoss", label_smooth_val=0.2),
    dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="classy_vision", num_classes=4),
])
def test_losses_match_mmpretrain(oracle, loss):
    score = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    label = torch.tensor([0, 1, 2, 3, 1, 0])
    if loss.get("use_sigmoid"):  # mmpretrain's sigmoid loss takes one-hot targets
        label = torch.nn.functional.one_hot(label, 4)
    want = oracle[0].build(copy.deepcopy(loss))(score, label, avg_factor=6)
    got = MODELS.build(copy.deepcopy(loss))(score, label, avg_factor=6)
    torch.testing.assert_close(got, want)


def test_flops_match_mmengine_on_resnet18(oracle):
    mm_models, get_info = oracle[0], oracle[4]
    cfg = _config_model("resnet/resnet18_8xb32_in1k.py")
    want = get_info(mm_models.build(copy.deepcopy(cfg)), (3, 224, 224), show_table=False,
                    show_arch=False)
    got = get_flops(MODELS.build(copy.deepcopy(cfg)), (3, 224, 224))
    assert got["params"] == want["params"]
    assert abs(got["flops"] - want["flops"]) <= 0.02 * want["flops"]
    with pytest.raises(InputError):
        get_flops(MODELS.build(copy.deepcopy(cfg)), (3, -1, 224))
    with pytest.raises(InputError):
        get_flops("resnet18", (3, 224, 224))  # type: ignore[arg-type]


# -- the registry ----------------------------------------------------------------------------
def test_a_neck_registered_by_decorator_builds_into_a_classifier():
    name = "TestMaxPoolNeck"

    @MODELS.register_module()
    class TestMaxPoolNeck(nn.Module):
        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = scale

        def forward(self, feats):
            return tuple(f.amax(dim=(2, 3)) * self.scale for f in feats)

    try:
        assert name in MODELS and MODELS.get(name) is TestMaxPoolNeck
        model = MODELS.build(dict(
            type="ImageClassifier", backbone=dict(type="ResNet", depth=18, num_stages=2,
                                                  out_indices=(1,)),
            neck=dict(type=name, scale=2.0),
            head=dict(type="LinearClsHead", num_classes=3, in_channels=128)))
        assert isinstance(model.neck, TestMaxPoolNeck) and model.neck.scale == 2.0
        # build() is recursive: a nested dict naming a registered type arrives built
        nested = MODELS.build(dict(type="ClsHead", loss=dict(type="LabelSmoothLoss",
                                                             label_smooth_val=0.1)))
        assert type(nested.loss_module).__name__ == "LabelSmoothLoss"
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)

        with pytest.raises(RegistryError, match="already registered"):
            @MODELS.register_module(name=name)
            class Other(nn.Module):
                pass
        assert MODELS.get(name) is TestMaxPoolNeck

        class Replacement(nn.Module):
            pass

        MODELS.register_module(name=name, force=True, module=Replacement)
        assert MODELS.get(name) is Replacement
    finally:
        MODELS._modules.pop(name, None)


def test_build_errors_name_the_config_path():
    good = dict(type="ImageClassifier", backbone=dict(type="ResNet", depth=18),
                neck=dict(type="GlobalAveragePooling"),
                head=dict(type="LinearClsHead", num_classes=3, in_channels=512))

    def bad(**patch):
        cfg = copy.deepcopy(good)
        for path, value in patch.items():
            *parents, key = path.split("__")
            node = cfg
            for p in parents:
                node = node[p]
            if value is None:
                del node[key]
            else:
                node[key] = value
        with pytest.raises(ConfigError) as info:
            MODELS.build(cfg)
        return str(info.value)

    assert "model.backbone.depth" in bad(backbone__depth=19)
    assert "model.backbone.depth" in bad(backbone__depth=None)
    assert "model.backbone.dpeth" in bad(backbone__dpeth=18)
    assert "'depth'" in bad(backbone__dpeth=18)  # the close name
    assert "ResNet" in bad(backbone__type="ResNot")  # the close name
    assert "model.head.num_classes" in bad(head__num_classes="3")
    assert "model.backbone.out_indices" in bad(backbone__out_indices=(7,))
    assert "model.backbone.style" in bad(backbone__style="tf")
    assert "model.neck" in bad(neck=["GlobalAveragePooling"])
    assert "'type'" in bad(head__type=None)
    assert "model.head.loss.label_smooth_val" in bad(
        head__loss=dict(type="LabelSmoothLoss", label_smooth_val=2))
    with pytest.raises(ConfigError, match="model.backbone.arch"):
        MODELS.build(dict(type="VisionTransformer", arch="gigantic"), path="model.backbone")
    with pytest.raises(ConfigError, match="feedforward_channels"):
        MODELS.build(dict(type="VisionTransformer", arch=dict(embed_dims=8, num_layers=1,
                                                              num_heads=2)))
    with pytest.raises(RegistryError):
        MODELS.register_module(name=3)  # type: ignore[arg-type]


def test_frozen_stages_and_out_indices():
    backbone = MODELS.build(dict(type="ResNet", depth=18, frozen_stages=2, out_indices=(0, 3)))
    backbone.train()
    assert not backbone.stem.training and not backbone.stages[1].training
    assert backbone.stages[2].training
    assert not any(p.requires_grad for p in backbone.stages[1].parameters())
    assert all(p.requires_grad for p in backbone.stages[2].parameters())
    outs = backbone(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [64, 512]


# -- bad checkpoints -------------------------------------------------------------------------
def _model():
    return MODELS.build(dict(type="ImageClassifier", backbone=dict(type="ResNet", depth=18),
                             neck=dict(type="GlobalAveragePooling"),
                             head=dict(type="LinearClsHead", num_classes=3, in_channels=512)))


class _Evil:
    def __reduce__(self):
        return (open, ("/nonexistent/evil-ran", "w"))


def test_bad_checkpoints_are_typed(tmp_path):
    model = _model()
    save_mm_checkpoint(model, tmp_path / "ok.pth")
    state = torch.load(tmp_path / "ok.pth", weights_only=True)["state_dict"]

    missing = dict(state)
    missing.pop("backbone.layer1.0.conv1.weight")
    torch.save({"meta": {}, "state_dict": missing}, tmp_path / "missing.pth")
    with pytest.raises(WeightsMismatchError) as info:
        load_mm_checkpoint(_model(), tmp_path / "missing.pth")
    assert info.value.missing == ["backbone.layer1.0.conv1.weight"]

    wrong = dict(state)
    wrong["head.fc.weight"] = torch.zeros(4, 512)
    torch.save({"meta": {}, "state_dict": wrong}, tmp_path / "shape.pth")
    with pytest.raises(WeightsMismatchError, match="head.fc.weight"):
        load_mm_checkpoint(_model(), tmp_path / "shape.pth")

    extra = dict(state, **{"backbone.layer9.weight": torch.zeros(1)})
    torch.save({"meta": {}, "state_dict": extra}, tmp_path / "extra.pth")
    with pytest.raises(WeightsMismatchError, match="unexpected"):
        load_mm_checkpoint(_model(), tmp_path / "extra.pth")

    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"state_dict": {"a": _Evil()}}, fh)
    with pytest.raises(UnsafeWeightsError):
        load_mm_checkpoint(_model(), tmp_path / "evil.pth")
    whole = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "junk.pth").write_bytes(whole[:len(whole) // 2])  # truncated
    with pytest.raises(WeightsError):
        load_mm_checkpoint(_model(), tmp_path / "junk.pth")
    with pytest.raises(WeightsError):
        load_mm_checkpoint(_model(), tmp_path / "absent.pth")
    assert not list(tmp_path.glob(".*.tmp"))
