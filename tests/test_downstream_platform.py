"""The downstream platform's own flow (its usage.py) on a ViT and a Swin package written to its
spec: hubconf.py + a uniquely named package folder + weights/, no README. pack (a card is
written from get_description()) → validate --trust-remote-code (the interface run, a per-layer
table) → load_model → shapes → register → forward → fetch."""

from __future__ import annotations

import textwrap
import zipfile

import pytest
import torch

import model_downstream_interface
from hubloader import PackageError
from hubloader.catalogue.cards import parse_card
from hubloader.packages.packaging import extract_zip, pack
from model_downstream_interface.utils import get_pyramid_feature_layer_indexes
from publish_helpers import run_cli

import transformers  # noqa: E402  (test-only: the packages' weights in Hugging Face format)

INPUT = (3, 224, 224)  # usage.py's input_shape


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "home"))


def _write_package(root, *, folder, base, hf_model, description):
    """A package as the platform's tutorial writes one; the model class subclasses a
    hubloader family and the platform's interface."""
    (root / folder).mkdir(parents=True)
    (root / "hubconf.py").write_text(textwrap.dedent(f"""
        dependencies = ["torch", "hubloader"]

        from {folder} import ExportedModel

        BIG_PRETRAINED_MODEL = ExportedModel


        def classifier_free(load_weights=None):
            # a second, torch.hub-style entry point
            return ExportedModel.from_pretrained(load_weights)
    """))
    (root / folder / "__init__.py").write_text("from .exported_model import ExportedModel\n")
    (root / folder / "exported_model.py").write_text(textwrap.dedent(f"""
        import os

        from hubloader.models import {base}
        from model_downstream_interface import BigModel4DownstreamInterface


        class ExportedModel({base}, BigModel4DownstreamInterface):
            def get_description(self):
                return '''
                       {description}
                       '''

            @classmethod
            def from_pretrained(cls, load_weights=None, *args, **kwargs):
                load_weights = os.path.join(os.path.dirname(__file__), "..", "weights") \\
                    if load_weights is None else load_weights
                return cls.from_pretrain(load_weights, *args, **kwargs)
    """))
    hf_model.eval().save_pretrained(str(root / "weights"))
    return root


def _vit(root):
    torch.manual_seed(0)
    hf = transformers.ViTModel(transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=24,
        image_size=224, patch_size=32), add_pooling_layer=False)
    return _write_package(root / "vision-transformer", folder="vision_transformer_tiny_t16",
                          base="ViTModel", hf_model=hf,
                          description="A tiny ViT for the downstream-platform tests.")


def _swin(root):
    torch.manual_seed(0)
    hf = transformers.SwinModel(transformers.SwinConfig(
        image_size=224, patch_size=4, embed_dim=8, depths=[2, 2, 4, 2], num_heads=[1, 2, 2, 4],
        window_size=7))
    return _write_package(root / "swin-transformer", folder="swin_transformer_tiny_t16",
                          base="SwinModel", hf_model=hf,
                          description="A tiny Swin for the downstream-platform tests.")


def _pack_validate_extract(pkg, tmp_path, monkeypatch, capsys):
    z = tmp_path / f"{pkg.name}.zip"
    rc, out, err = run_cli(["pack", pkg, "-o", z, "--trust-remote-code"], monkeypatch, capsys)
    assert rc == 0, err
    assert not (pkg / "README.md").exists()  # the card goes into the zip only
    card = parse_card(zipfile.ZipFile(z).read("README.md").decode())
    listed = {f.path for f in card.files}
    assert {"hubconf.py", "weights/model.safetensors", "weights/config.json"} <= listed
    assert "downstream-platform tests" in card.description
    rc, out, err = run_cli(["validate", z, "--trust-remote-code"], monkeypatch, capsys)
    assert rc == 0, err
    assert "interface ok: ExportedModel" in out and out.strip().endswith("valid")
    table = [line for line in out.splitlines() if line.startswith("  ")]
    assert table[0].split()[:3] == ["layer", "declared", "fetched"]
    assert all(line.rstrip().endswith("ok") for line in table[1:])
    dest = tmp_path / f"{pkg.name}-extracted"
    extract_zip(z, dest)
    return dest, len(table) - 1


def test_usage_flow_vision_transformer(tmp_path, monkeypatch, capsys):
    pkg = _vit(tmp_path / "src")
    where, rows = _pack_validate_extract(pkg, tmp_path, monkeypatch, capsys)
    model: model_downstream_interface.BigModel4DownstreamInterface = \
        model_downstream_interface.load_model(str(where))
    assert isinstance(model, model_downstream_interface.BigModel4DownstreamInterface)
    assert "tiny ViT" in model.get_description()
    all_layer_indexed = list(range(model.get_depth()))
    assert len(all_layer_indexed) == rows == 6
    shapes = [model.get_features_shape(input_shape=INPUT, layer_index=i)
              for i in all_layer_indexed]
    assert shapes == [(50, 16)] * 6  # 7x7 patches + the class token
    assert model.is_hierarchical_features() is False
    model.register_features_buffer_by_layer_indexes(all_layer_indexed[-4:])
    x = torch.rand(1, *INPUT)
    model(x)
    features = model.fetch_features()
    assert [tuple(f.shape) for f in features] == [(1, *shapes[i]) for i in all_layer_indexed[-4:]]


def test_usage_flow_swin_transformer(tmp_path, monkeypatch, capsys):
    pkg = _swin(tmp_path / "src")
    where, rows = _pack_validate_extract(pkg, tmp_path, monkeypatch, capsys)
    model = model_downstream_interface.load_model(str(where))
    assert model.get_depth() == rows == 10
    shapes = [model.get_features_shape(input_shape=INPUT, layer_index=i)
              for i in range(model.get_depth())]
    assert shapes == model.get_features_shapes_all_layers(input_shape=INPUT)
    assert shapes[0] == (56, 56, 8) and shapes[-1] == (7, 7, 64)
    assert model.is_hierarchical_features() is True
    layers = get_pyramid_feature_layer_indexes(model.get_features_shapes_all_layers(INPUT))
    assert layers == [1, 3, 7, 9]  # the last block of each stage
    model.register_features_buffer_by_layer_indexes(layers)
    x = torch.rand(1, *INPUT)
    model(x)
    features = model.fetch_features()
    assert [tuple(f.shape[1:]) for f in features] == [shapes[i] for i in layers]
    with pytest.raises(model_downstream_interface.LayerIndexNotFoundException):
        model.register_features_buffer_by_layer_indexes([10])


def test_entry_by_name_and_bad_entries(tmp_path, monkeypatch, capsys):
    pkg = _vit(tmp_path / "src")
    model = model_downstream_interface.load_model(str(pkg), "classifier_free")
    assert type(model).__name__ == "ExportedModel" and model.get_depth() == 6
    from hubloader import BaseModel

    again = BaseModel.from_pretrain(str(pkg), trust_remote_code=True, entry="classifier_free")
    assert type(again).__name__ == "ExportedModel"
    rc, out, err = run_cli(["validate", pkg, "--trust-remote-code", "--entry",
                            "classifier_free", "--input-shape", "3,224,224"], monkeypatch, capsys)
    assert rc == 0 and "entry classifier_free" in out and "interface ok" in out, err
    with pytest.raises(PackageError, match="no callable 'nope'"):
        model_downstream_interface.load_model(str(pkg), "nope")
    with pytest.raises(PackageError, match="has no hubconf.py"):
        model_downstream_interface.load_model(str(tmp_path))
    # a declared input the model cannot take fails the interface run, naming the shape
    rc, out, err = run_cli(["validate", pkg, "--trust-remote-code", "--input-shape", "1,224,224"],
                           monkeypatch, capsys)
    assert rc == 1 and "1, 224, 224" in err


def test_interface_mismatch_is_reported(tmp_path):
    """A package whose declared shapes lie fails validation with the per-layer table."""
    from hubloader.packages.validation import validate

    pkg = _vit(tmp_path / "src")
    exported = pkg / "vision_transformer_tiny_t16" / "exported_model.py"
    exported.write_text(exported.read_text() + textwrap.dedent("""

        ExportedModel.is_hierarchical_features = lambda self: True
    """))
    with pytest.raises(PackageError, match="is_hierarchical_features"):
        validate(pkg, trust_remote_code=True)
    exported.write_text(exported.read_text() + textwrap.dedent("""
        ExportedModel.get_features_shape = lambda self, s, i: (i, 1)
    """))
    with pytest.raises(PackageError, match=r"MISMATCH"):
        validate(pkg, trust_remote_code=True)


def test_untrusted_pack_runs_nothing_and_the_card_shape_is_used(tmp_path):
    import sys

    from hubloader.packages.validation import validate

    pkg = _write_package(tmp_path / "src" / "vit-untrusted", folder="vit_untrusted_t16",
                         base="ViTModel", hf_model=transformers.ViTModel(transformers.ViTConfig(
                             hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=24, image_size=64, patch_size=32),
                             add_pooling_layer=False),
                         description="never read")
    z = pack(pkg, tmp_path / "u.zip")
    assert not any("vit_untrusted_t16" in name for name in sys.modules)  # nothing imported
    card = parse_card(zipfile.ZipFile(z).read("README.md").decode())
    assert "never read" not in card.description and card.tasks == ("base",)
    report = validate(z)  # a hubconf package needs no card of its own; its code did not run
    assert any("was not run" in w for w in report.warnings)
    # the card's input-shape is the shape validate's interface run feeds the model
    z2 = pack(pkg, tmp_path / "s.zip", trust_remote_code=True, card={"input-shape": [3, 96, 96]})
    assert parse_card(zipfile.ZipFile(z2).read("README.md").decode()).input_shape == (3, 96, 96)
    with pytest.raises(PackageError, match="96"):
        validate(z2, trust_remote_code=True)
    assert any(line.startswith("interface ok") for line in
               validate(z2, trust_remote_code=True, input_shape=(3, 64, 64)).lines())


def test_a_package_folder_named_like_an_installed_module_is_refused(tmp_path):
    from hubloader.packages.validation import validate

    pkg = tmp_path / "clash"
    (pkg / "json").mkdir(parents=True)  # the spec asks for a unique name; json is taken
    (pkg / "json" / "__init__.py").write_text("raise SystemExit('must not run')\n")
    (pkg / "hubconf.py").write_text("dependencies = ['torch']\nfrom json import X\n"
                                    "BIG_PRETRAINED_MODEL = X\n")
    with pytest.raises(PackageError, match="json are already installed modules"):
        validate(pkg)
    lines = validate(_vit(tmp_path / "src")).lines()
    assert "module names ok: vision_transformer_tiny_t16 (no installed module of that name)" \
        in lines
