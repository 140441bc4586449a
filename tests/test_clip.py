"""CLIP, AltCLIP and EVA-CLIP against their references on the same weights (transformers'
``CLIPModel``/``AltCLIPModel``, FlagAI 1.8.4's ``CLIP``/``EVA_CLIP``), their tokenizers and
image processor against transformers' and FlagAI's, and zero-shot classification through the
model, the command line and transformers' pipeline."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from _clip import (CLIP_PREPROCESSOR, TEXTS, write_clip_vocab, write_image, write_xlmr_vocab)
from _flagai import perturb, save_flagai
from hubloader.errors import InputError
from hubloader.load.modeling import BaseModel
from hubloader.models.altclip import AltCLIPModel
from hubloader.models.clip import CLIPModel, EVACLIPModel
from hubloader.vision.preprocessing import load_image_processor
from hubloader.text.tokenizer import load_tokenizer

import transformers as tf  # noqa: E402  (test-only oracle)

TOL = 1e-4
LABELS = ["a photo of a cat", "a photo of a dog", "北京", "🍕"]
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              image_size=32, patch_size=8)


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny transformers CLIP with a real (tiny) CLIP vocabulary and image processor."""
    d = tmp_path_factory.mktemp("clip")
    n = write_clip_vocab(d, openai_file=False)
    torch.manual_seed(0)
    text = dict(vocab_size=n, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=24, bos_token_id=n - 2,
                eos_token_id=n - 1, pad_token_id=n - 1)
    ref = _perturbed(tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=VISION,
                                                projection_dim=16)))
    ref.save_pretrained(str(d))
    (d / "preprocessor_config.json").write_text(json.dumps(CLIP_PREPROCESSOR))
    return d


@pytest.fixture(scope="module")
def altclip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("altclip")
    write_xlmr_vocab(d)
    n = len(load_tokenizer(d))
    torch.manual_seed(0)
    text = dict(vocab_size=n, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, project_dim=24, max_position_embeddings=40)
    ref = _perturbed(tf.AltCLIPModel(tf.AltCLIPConfig(text_config=text, vision_config=VISION,
                                                      projection_dim=16)))
    ref.save_pretrained(str(d))
    (d / "preprocessor_config.json").write_text(json.dumps(CLIP_PREPROCESSOR))
    return d


def _compare(ours, ref, enc, pixels):
    with torch.no_grad():
        r = ref(**enc, pixel_values=pixels, return_loss=True)
        o = ours(**enc, pixel_values=pixels, return_loss=True)
        for key in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds", "loss"):
            assert (r[key] - o[key]).abs().max().item() < TOL, key
        text = ref.get_text_features(**enc)
        text = getattr(text, "pooler_output", text)
        image = ref.get_image_features(pixel_values=pixels)
        image = getattr(image, "pooler_output", image)
        assert (text - ours.get_text_features(**enc)).abs().max().item() < TOL
        assert (image - ours.get_image_features(pixels)).abs().max().item() < TOL
    assert o["logits"] is o["logits_per_image"]


@pytest.mark.parametrize("family", ["clip", "altclip"])
def test_embeddings_logits_and_loss_equal_transformers(family, clip_dir, altclip_dir):
    d = clip_dir if family == "clip" else altclip_dir
    ours = BaseModel.from_pretrain(str(d))
    assert type(ours) is (CLIPModel if family == "clip" else AltCLIPModel)
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ref = (tf.CLIPModel if family == "clip" else tf.AltCLIPModel).from_pretrained(str(d)).eval()
    enc = dict(load_tokenizer(d)(TEXTS[:4], padding=True, return_tensors="pt"))
    pixels = load_image_processor(d)([write_image(d / f"{i}.png", i) for i in range(4)])
    _compare(ours, ref, enc, pixels["pixel_values"])
    with pytest.raises(InputError, match="as many texts as images"):
        ours(**enc, pixel_values=pixels["pixel_values"][:3], return_loss=True)


@pytest.mark.parametrize("family", ["clip", "altclip"])
def test_saved_directory_reloads_in_transformers(family, clip_dir, altclip_dir, tmp_path):
    d = clip_dir if family == "clip" else altclip_dir
    ours = BaseModel.from_pretrain(str(d))
    ours.save_pretrained(tmp_path / "out")
    ref = (tf.CLIPModel if family == "clip" else tf.AltCLIPModel).from_pretrained(
        str(tmp_path / "out")).eval()
    enc = dict(load_tokenizer(d)(TEXTS[:2], padding=True, return_tensors="pt"))
    pixels = torch.randn(2, 3, 32, 32)
    _compare(ours, ref, enc, pixels)


def test_zero_shot_picks_transformers_labels(clip_dir, tmp_path, capsys):
    """The model's zero_shot, `hubloader run zero-shot-image-classification` and transformers'
    pipeline rank the labels alike, with the same scores."""
    from hubloader.commands import run as run_cmd

    pipe = tf.pipeline("zero-shot-image-classification", model=str(clip_dir))
    parser = argparse.ArgumentParser(prog="hubloader")
    run_cmd.register(parser.add_subparsers(dest="command"))
    model = CLIPModel.from_pretrain(str(clip_dir))
    tok, proc = load_tokenizer(clip_dir), load_image_processor(clip_dir)
    for seed in range(3):
        image = write_image(tmp_path / f"x{seed}.png", seed + 10)
        ref = pipe(str(image), candidate_labels=LABELS)
        probs = model.zero_shot(proc(image)["pixel_values"], LABELS, tok)[0]
        ours = sorted(zip(LABELS, probs.tolist()), key=lambda x: -x[1])
        assert [r["label"] for r in ref] == [label for label, _ in ours]
        assert max(abs(r["score"] - s) for r, (_, s) in zip(ref, ours)) < TOL
        args = parser.parse_args(["run", "zero-shot-image-classification", str(clip_dir),
                                  "--image", str(image), "--labels", ",".join(LABELS), "--json"])
        assert args.func(args) == 0
        printed = json.loads(capsys.readouterr().out)
        assert [x["label"] for x in printed["labels"]] == [r["label"] for r in ref]
    with pytest.raises(InputError, match="--labels"):
        run_cmd.run_task("zero-shot-image-classification", str(clip_dir), str(image))
    with pytest.raises(InputError, match="template"):
        model.zero_shot(proc(image)["pixel_values"], LABELS, tok, template="no slot")


@pytest.mark.parametrize("oracle,quick,layer_scale", [
    ("CLIP", False, False), ("CLIP", True, False),
    ("EVA_CLIP", False, False), ("EVA_CLIP", True, True)])
def test_flagai_layout_equals_flagai(oracle, quick, layer_scale, tmp_path):
    """FlagAI's CLIP and EVA-CLIP (OpenAI's key names, FlagAI's config keys) load and give
    FlagAI's embeddings."""
    os.environ.setdefault("ENV_TYPE", "pytorch")
    from flagai.model.mm.clip_model import CLIP
    from flagai.model.mm.eva_clip_model import EVA_CLIP

    vision = dict(image_size=32, patch_size=8, width=32, layers=2, head_width=8)
    if layer_scale:
        vision["layer_scale_init_value"] = 0.1
    cfg = dict(embed_dim=16, quick_gelu=quick, vision_cfg=vision,
               text_cfg=dict(context_length=12, vocab_size=100, width=32, heads=4, layers=2))
    torch.manual_seed(0)
    ref = perturb({"CLIP": CLIP, "EVA_CLIP": EVA_CLIP}[oracle](cfg))
    save_flagai(ref, cfg, tmp_path, "m", under_module=False)
    ours = (CLIPModel if oracle == "CLIP" else EVACLIPModel).from_pretrain(str(tmp_path / "m"))
    text = torch.randint(1, 90, (3, 12))
    text[0, 5], text[0, 6:] = 99, 0  # the end-of-text token has the top id; 0-padded after
    text[1, -1] = 99
    text[2, 3], text[2, 4:] = 99, 0
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ref.encode_text(text) - ours.encode_text(text)).abs().max() < TOL
        assert (ref.encode_image(image) - ours.encode_image(image)).abs().max() < TOL
        both = ref(image=image, text=text[:2])
        mine = ours(image=image, text=text[:2])
        scale = ours.logit_scale.exp()
        assert (torch.cat([mine["image_embeds"], mine["text_embeds"]], 1)
                - both["logits"]).abs().max() < TOL
        if "loss" in both:
            assert abs(both["loss"].item() - ours(image=image, text=text[:2], return_loss=True)[
                "loss"].item()) < TOL
        assert torch.allclose(mine["logits_per_text"],
                              mine["text_embeds"] @ mine["image_embeds"].t() * scale)
    if oracle == "CLIP":  # FlagAI's CLIP, saved, is transformers' CLIPModel
        ours.save_pretrained(tmp_path / "hf")
        hf = tf.CLIPModel.from_pretrained(str(tmp_path / "hf")).eval()
        with torch.no_grad():
            out = hf(input_ids=text, pixel_values=image)
            mine = ours(input_ids=text, pixel_values=image)
            assert (out.logits_per_image - mine["logits_per_image"]).abs().max() < TOL


def test_bad_input_and_configs_raise_typed_errors(clip_dir, tmp_path):
    from hubloader.errors import ConfigError

    model = CLIPModel.from_pretrain(str(clip_dir))
    ids = load_tokenizer(clip_dir)(["a cat"], return_tensors="pt")["input_ids"]
    with pytest.raises(InputError, match="pixel_values"):
        model(input_ids=ids, pixel_values=torch.randn(1, 3, 16, 16))
    with pytest.raises(InputError, match="at most 24"):
        model.get_text_features(torch.zeros(1, 30, dtype=torch.long))
    with pytest.raises(InputError, match="unexpected"):
        model(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32), labels=ids)
    with pytest.raises(InputError, match="label"):
        model.zero_shot(torch.randn(1, 3, 32, 32), [], load_tokenizer(clip_dir))
    folder = tmp_path / "clip-base-p32-224"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"embed_dim": 16, "vision_cfg": {"timm_model_name": "resnet50"}, "text_cfg": {}}))
    with pytest.raises(ConfigError, match="timm"):
        CLIPModel.init_from_json(folder / "config.json")
    (folder / "config.json").write_text(json.dumps(
        {"embed_dim": 16, "vision_cfg": {"width": "wide"}, "text_cfg": {}}))
    with pytest.raises(ConfigError, match="width"):
        CLIPModel.init_from_json(folder / "config.json")


def test_clip_tokenizers_equal_transformers_and_flagai(tmp_path):
    from flagai.data.tokenizer.clip.tokenizer import ClipTokenizer

    write_clip_vocab(tmp_path / "hf", openai_file=False)
    write_clip_vocab(tmp_path / "flagai", transformers_files=False)
    ref = tf.CLIPTokenizer.from_pretrained(str(tmp_path / "hf"))
    ours = load_tokenizer(tmp_path / "hf")
    from_openai = load_tokenizer(tmp_path / "flagai", model_type="clip")
    flagai = ClipTokenizer(bpe_path=str(tmp_path / "flagai" / "bpe_simple_vocab_16e6.txt.gz"))
    for text in TEXTS:
        ids = ref(text)["input_ids"]
        assert ours(text)["input_ids"] == ids, text
        assert from_openai(text)["input_ids"] == ids, text
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
    assert torch.equal(from_openai.tokenize_as_tensor(TEXTS, context_length=20),
                       flagai.tokenize_as_tensor(TEXTS, context_length=20))
    batch_ref = ref(TEXTS, padding=True, return_tensors="pt")
    batch = ours(TEXTS, padding=True, return_tensors="pt")
    assert sorted(batch) == sorted(batch_ref)
    assert all(torch.equal(batch[k], batch_ref[k]) for k in batch_ref)
    assert (ours.bos_token, ours.eos_token, ours.pad_token) == (ref.bos_token, ref.eos_token,
                                                               ref.pad_token)


def test_xlmr_tokenizer_equals_transformers(tmp_path):
    write_xlmr_vocab(tmp_path)
    ref = tf.XLMRobertaTokenizer.from_pretrained(str(tmp_path))
    ours = load_tokenizer(tmp_path)
    for text in TEXTS + ["unseen wörds 𝔘"]:
        assert ours(text)["input_ids"] == ref(text)["input_ids"], text
        assert ours.decode(ours(text)["input_ids"]) == ref.decode(ref(text)["input_ids"])
    assert ours("a b", "c d")["input_ids"] == ref("a b", "c d")["input_ids"]
    assert (len(ours), ours.mask_token_id, ours.pad_token_id) == (len(ref), ref.mask_token_id,
                                                                  ref.pad_token_id)


_FUZZ_TOKENIZERS: dict = {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_clip_tokenizer_fuzz(tmp_path_factory, text):
    """Any text a user types gets transformers' ids."""
    if not _FUZZ_TOKENIZERS:
        d = tmp_path_factory.mktemp("fuzz")
        write_clip_vocab(d, openai_file=False)
        _FUZZ_TOKENIZERS.update(ref=tf.CLIPTokenizer.from_pretrained(str(d)),
                                ours=load_tokenizer(d))
    assert _FUZZ_TOKENIZERS["ours"](text)["input_ids"] == _FUZZ_TOKENIZERS["ref"](text)["input_ids"]


def test_clip_image_processor_equals_transformers(tmp_path):
    from PIL import Image

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(CLIP_PREPROCESSOR))
    ref = tf.CLIPImageProcessor.from_pretrained(str(tmp_path))
    ours = load_image_processor(tmp_path)
    images = [write_image(tmp_path / f"{i}.png", i, size) for i, size in
              enumerate([(50, 70), (64, 40), (32, 32)])]
    images.append(Image.open(images[0]).convert("L"))
    for image in images:
        expected = ref(Image.open(image) if not isinstance(image, Image.Image) else image,
                       return_tensors="pt")["pixel_values"]
        assert (ours(image)["pixel_values"] - expected).abs().max() < 1e-5
