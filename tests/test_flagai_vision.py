"""FlagAI's vision and multimodal zoo through hubloader: ViT, Swin V1 and Swin V2 against
FlagAI 1.8.4's own classes (timm's and Microsoft's key layouts, FlagAI's config keys), Swin V2
against transformers' ``Swinv2ForImageClassification``, and FlagAI's ``ALL_TASK`` entries for
CLIP, AltCLIP, EVA-CLIP, ViT, Swin V1 and Swin V2 through hubloader's ``AutoLoader`` with
FlagAI's arguments, each from a ``./checkpoints/<name>/`` folder its oracle class wrote.

FlagAI's ``swinv2`` module imports ``timm`` (which pulls torchvision); the test puts a minimal
``timm.models.layers`` in ``sys.modules`` offering the three helpers it uses, taken from
FlagAI's own ``flagai.model.vision.layers``. FlagAI's ``AltCLIP`` module does not import under
transformers 5 (it star-imports names transformers no longer exports); FlagAI's AltCLIP
checkpoints are transformers' ``AltCLIPModel`` layout (FlagAI's ``from_pretrain`` calls
``from_pretrained`` on them), so transformers' class writes that folder.
"""

from __future__ import annotations

import json
import os
import sys
import types

import pytest
import torch

from _clip import write_clip_vocab, write_image, write_xlmr_vocab
from _flagai import flagai_config, perturb, save_flagai
from hubloader import AutoLoader
from hubloader.errors import ConfigError
from hubloader.models.swinv2 import Swinv2ForImageClassification

import transformers as tf  # noqa: E402  (test-only oracle)

os.environ.setdefault("ENV_TYPE", "pytorch")
TOL = 1e-4

VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5,
           checkpoint_activations=False)
SWIN = dict(img_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
            window_size=4, num_classes=5, checkpoint_activations=False)
CLIP = dict(embed_dim=16, vision_cfg=dict(image_size=32, patch_size=8, width=32, layers=2,
                                          head_width=8),
            text_cfg=dict(context_length=24, vocab_size=None, width=32, heads=4, layers=2))


def _timm_stub() -> None:
    """``timm.models.layers`` with what FlagAI's swinv2 imports from it."""
    if "timm.models.layers" in sys.modules:
        return
    import flagai.model.vision.layers as fl

    timm, models, layers = (types.ModuleType(n) for n in ("timm", "timm.models",
                                                          "timm.models.layers"))
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = fl.DropPath, fl.to_2tuple, \
        fl.trunc_normal_
    timm.models, models.layers = models, layers  # type: ignore[attr-defined]
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def _flagai_class(entry: str):
    """The class FlagAI's ALL_TASK names for ``entry``."""
    import importlib

    from flagai.auto_model.auto_loader import ALL_TASK

    module, name = ALL_TASK[entry]
    if module.endswith("swinv2"):
        _timm_stub()
    return getattr(importlib.import_module(module), name)


def _vision_oracle(entry: str, cfg: dict):
    cls = _flagai_class(entry)
    torch.manual_seed(0)
    config = dict(cfg) if entry == "swinv1_classification" else flagai_config(cfg)
    return perturb(cls(config, num_classes=cfg["num_classes"]))


@pytest.mark.parametrize("entry,cfg,version", [
    ("vit_classification", VIT, 0),
    ("swinv1_classification", SWIN, 1),
    ("swinv2_classification", {**SWIN, "pretrained_window_sizes": [0, 0]}, 2),
    ("swinv2_classification", {**SWIN, "img_size": 64, "pretrained_window_sizes": [3, 0]}, 2)])
def test_flagai_vision_models_equal_flagai(entry, cfg, version, tmp_path):
    ref = _vision_oracle(entry, cfg)
    save_flagai(ref, cfg, tmp_path, "model", under_module=False)
    from hubloader.models import SwinForImageClassification, ViTForImageClassification

    cls = [ViTForImageClassification, SwinForImageClassification,
           Swinv2ForImageClassification][version]
    ours = cls.from_pretrain(str(tmp_path / "model"))
    x = torch.randn(2, 3, cfg["img_size"], cfg["img_size"])
    with torch.no_grad():
        assert (ref(images=x)["logits"] - ours(x)["logits"]).abs().max() < TOL


@pytest.mark.parametrize("image_size,window,pretrained", [(32, 4, [0, 0]), (40, 4, [3, 0]),
                                                          (32, 8, [0, 0])])
def test_swinv2_equals_transformers(image_size, window, pretrained, tmp_path):
    torch.manual_seed(0)
    cfg = tf.Swinv2Config(image_size=image_size, patch_size=4, embed_dim=16, depths=[2, 2],
                          num_heads=[2, 4], window_size=window,
                          pretrained_window_sizes=pretrained, num_labels=5)
    ref = tf.Swinv2ForImageClassification(cfg).eval()
    perturb(ref)
    ref.save_pretrained(str(tmp_path / "hf"))
    ours = Swinv2ForImageClassification.from_pretrain(str(tmp_path / "hf"))
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        out = ref(pixel_values=x, output_hidden_states=True)
        mine = ours(x, output_hidden_states=True)
        assert (out.logits - mine["logits"]).abs().max() < TOL
        for a, b in zip(out.hidden_states, mine["all_hidden_states"]):
            assert (a - b).abs().max() < TOL
    # the saved folder is transformers' layout again
    ours.save_pretrained(tmp_path / "back")
    again = tf.Swinv2ForImageClassification.from_pretrained(str(tmp_path / "back")).eval()
    with torch.no_grad():
        assert (again(pixel_values=x).logits - out.logits).abs().max() < TOL


def test_flagai_options_hubloader_cannot_honour_are_refused(tmp_path):
    ref = _vision_oracle("vit_classification", VIT)
    save_flagai(ref, {**VIT, "global_pool": "avg"}, tmp_path, "vit-base-p16-224",
                under_module=False)
    with pytest.raises(ConfigError, match="global_pool"):
        AutoLoader("classification", model_name="vit-base-p16-224", model_dir=str(tmp_path))


# -- FlagAI's ALL_TASK entries through AutoLoader -------------------------------------------
def _write_clip(root, name: str, eva: bool):
    folder = root / name
    n = write_clip_vocab(folder, transformers_files=False)
    cfg = json.loads(json.dumps(CLIP))
    cfg["text_cfg"]["vocab_size"] = n
    cls = _flagai_class("evaclip_txt_img_matching" if eva else "clip_txt_img_matching")
    torch.manual_seed(0)
    ref = perturb(cls(cfg))
    save_flagai(ref, cfg, root, name, under_module=False)
    return ref


def _write_altclip(root, name: str):
    from _clip import CLIP_PREPROCESSOR

    folder = root / name
    write_xlmr_vocab(folder)
    from hubloader.text.tokenizer import load_tokenizer

    text = dict(vocab_size=len(load_tokenizer(folder)), hidden_size=32, intermediate_size=37,
                num_hidden_layers=2, num_attention_heads=4, project_dim=24,
                max_position_embeddings=40)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4, image_size=32, patch_size=8)
    torch.manual_seed(0)
    ref = perturb(tf.AltCLIPModel(tf.AltCLIPConfig(text_config=text, vision_config=vision,
                                                   projection_dim=16)))
    ref.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(CLIP_PREPROCESSOR))
    return ref


@pytest.mark.parametrize("entry,task,name", [
    ("clip_txt_img_matching", "txt_img_matching", "clip-base-p32-224"),
    ("evaclip_txt_img_matching", "txt_img_matching", "eva-clip"),
    ("altclip_txt_img_matching", "txt_img_matching", "altclip-xlmr-l"),
    ("vit_classification", "classification", "vit-base-p16-224"),
    ("vit_classification", "classification", "vit-large-p32-384"),
    ("swinv1_classification", "classification", "swinv1-base-patch4-window7-224"),
    ("swinv2_classification", "classification", "swinv2-base-patch4-window16-256"),
    ("swinv2_classification", "classification", "swinv2-small-patch4-window16-256")])
def test_flagai_all_task_entries_load_and_run(entry, task, name, tmp_path, monkeypatch):
    """FlagAI's call, with only the import changed: ``AutoLoader(task, model_name=..., model_dir=
    ..., num_classes=...)``, then its examples' ``get_model/get_tokenizer/get_transform``."""
    from flagai.auto_model.auto_loader import ALL_TASK, MODEL_DICT

    assert entry in ALL_TASK and name.lower() in MODEL_DICT  # FlagAI's own tables
    root = tmp_path / "checkpoints"
    image = write_image(tmp_path / "x.png", 0)
    if entry.startswith(("clip", "evaclip")):
        ref = _write_clip(root, name, eva=entry.startswith("eva"))
        loader = AutoLoader(task, model_name=name, model_dir=str(root))
        model, tok, transform = loader.get_model(), loader.get_tokenizer(), loader.get_transform()
        from flagai.data.tokenizer.clip.tokenizer import ClipTokenizer

        flagai_tok = ClipTokenizer(bpe_path=str(root / name / "bpe_simple_vocab_16e6.txt.gz"))
        text = tok.tokenize_as_tensor(["a diagram", "a dog", "北京 🍕"], context_length=24)
        assert torch.equal(text, flagai_tok.tokenize_as_tensor(["a diagram", "a dog", "北京 🍕"],
                                                               context_length=24))
        from PIL import Image

        pixels = transform(Image.open(image)).unsqueeze(0)
        assert pixels.shape == (1, 3, 32, 32)
        with torch.no_grad():
            ours = model.encode_image(pixels) @ model.encode_text(text).T
            theirs = ref.encode_image(pixels) @ ref.encode_text(text).T
        assert (ours - theirs).abs().max() < TOL
        return
    if entry.startswith("altclip"):
        ref = _write_altclip(root, name)
        loader = AutoLoader(task, model_name=name, model_dir=str(root))
        model, tok, transform = loader.get_model(), loader.get_tokenizer(), loader.get_transform()
        from PIL import Image

        pixels = torch.as_tensor(transform(Image.open(image))["pixel_values"])
        enc = tok(["一只猫", "a dog"], padding=True, truncation=True, max_length=38,
                  return_tensors="pt")
        with torch.no_grad():
            ours = model.get_image_features(pixels) @ model.get_text_features(
                enc["input_ids"], attention_mask=enc["attention_mask"]).T
            theirs = ref.get_image_features(pixel_values=pixels)
            theirs = getattr(theirs, "pooler_output", theirs) @ getattr(
                ref.get_text_features(**enc), "pooler_output",
                ref.get_text_features(**enc)).T
        assert (ours - theirs).abs().max() < TOL
        return
    cfg = {"vit_classification": VIT, "swinv1_classification": SWIN}.get(
        entry, {**SWIN, "pretrained_window_sizes": [0, 0]})
    ref = _vision_oracle(entry, cfg)
    save_flagai(ref, {k: v for k, v in cfg.items() if k != "num_classes"}, root, name,
                under_module=False)
    loader = AutoLoader(task, model_name=name, model_dir=str(root), num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ref(images=x)["logits"] - loader.get_model()(x)["logits"]).abs().max() < TOL


def test_swinv2_oblong_images_equal_transformers_or_are_refused(tmp_path):
    torch.manual_seed(0)
    cfg = tf.Swinv2Config(image_size=[32, 64], patch_size=4, embed_dim=16, depths=[2, 2],
                          num_heads=[2, 4], window_size=4, num_labels=3)
    ref = perturb(tf.Swinv2ForImageClassification(cfg))
    ref.save_pretrained(str(tmp_path / "hf"))
    ours = Swinv2ForImageClassification.from_pretrain(str(tmp_path / "hf"))
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert (ref(pixel_values=x).logits - ours(x)["logits"]).abs().max() < TOL
    with pytest.raises(ConfigError, match="oblong"):
        Swinv2ForImageClassification.from_pretrain(str(tmp_path / "hf"), image_size=[16, 64])
