"""The model-index catalogue, get_model(pretrained=True) through the verified cache from a
loopback HTTP server and then offline with sockets refused, inference_model, the CLI
(ls, info, flops, convert) and their bad inputs."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import socket
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from hubloader import get_model, inference_model, list_models, model_info
from hubloader.cli import main
from hubloader.errors import CardError, InputError, IntegrityError, LocalEntryNotFoundError, \
    ModelNotFoundError
from hubloader.mm import save_mm_checkpoint
from hubloader.catalogue.model_index import ModelIndexEntry, read_model_index

TINY = """
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8, num_stages=2,
                  out_indices=(1, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=16))
data_preprocessor = dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=40, edge='short'),
                 dict(type='CenterCrop', crop_size=32), dict(type='PackInputs')]
"""


@contextlib.contextmanager
def http_server(folder: Path):
    """A plain HTTP file server on 127.0.0.1 (stopped on exit); yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A model-index in a HUBLOADER_CARDS_PATH directory; its weights are served over HTTP."""
    cards = tmp_path / "cards"
    (cards / "configs" / "tiny").mkdir(parents=True)
    (cards / "configs" / "tiny" / "tiny-resnet_in3.py").write_text(TINY)
    model = get_model(cards / "configs" / "tiny" / "tiny-resnet_in3.py")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t))
    www = tmp_path / "www" / "weights"
    www.mkdir(parents=True)
    raw = save_mm_checkpoint(model, tmp_path / "raw.pth",
                             meta={"dataset_meta": {"classes": ["cat", "dog", "fish"]}})
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    good = f"tiny-resnet_in3_20240101-{digest}.pth"
    (www / good).write_bytes(raw.read_bytes())
    (www / "tiny-resnet_in3_20240101-00000000.pth").write_bytes(raw.read_bytes())
    with http_server(tmp_path / "www") as base:
        (cards / "configs" / "tiny" / "metafile.yml").write_text(textwrap.dedent(f"""
            Collections:
              - Name: TinyResNet
                Paper: {{Title: A tiny ResNet, URL: https://example.org/tiny}}
            Models:
              - Name: tiny-resnet_in3
                In Collection: TinyResNet
                Metadata: {{FLOPs: 1000, Parameters: 10}}
                Results:
                  - {{Dataset: Tiny, Task: Image Classification, Metrics: {{Top 1 Accuracy: 50.0}}}}
                Weights: {base}/weights/{good}
                Config: configs/tiny/tiny-resnet_in3.py
                Converted From: {{Weights: https://example.org/orig.pth, Code: https://example.org}}
              - Name: tiny-resnet_in3_corrupt
                In Collection: TinyResNet
                Weights: {base}/weights/tiny-resnet_in3_20240101-00000000.pth
                Config: configs/tiny/tiny-resnet_in3.py
            """))
        (cards / "model-index.yml").write_text("Import:\n  - configs/tiny/metafile.yml\n")
        monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(cards))
        yield model, base


def test_pretrained_from_http_then_offline(zoo, monkeypatch):
    reference, base = zoo
    x = torch.randn(2, 3, 32, 32)
    model = get_model("tiny-resnet_in3", pretrained=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x))
    assert model.dataset_meta["classes"] == ["cat", "dog", "fish"]
    assert not model.training

    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    result = inference_model(model, image)
    assert result["pred_class"] == ["cat", "dog", "fish"][result["pred_label"]]
    assert abs(sum(result["pred_scores"]) - 1) < 1e-5
    assert result["pred_score"] == max(result["pred_scores"])

    # offline: no socket may even be created; the digest-named file is served from the cache
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    again = get_model("tiny-resnet_in3", pretrained=True)
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    third = get_model("tiny-resnet_in3", pretrained=True, head=dict(num_classes=3))
    assert calls == []
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
        torch.testing.assert_close(third(x), model(x))
    # offline and never fetched: typed
    with pytest.raises(LocalEntryNotFoundError):
        get_model("tiny-resnet_in3_corrupt", pretrained=True)


def test_digest_in_the_file_name_is_checked(zoo):
    with pytest.raises(IntegrityError, match="00000000"):
        get_model("tiny-resnet_in3_corrupt", pretrained=True)


def test_pretrained_path_and_bad_inputs(zoo, tmp_path):
    reference, _ = zoo
    path = save_mm_checkpoint(reference, tmp_path / "local.pth")
    model = get_model("tiny-resnet_in3", pretrained=path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x))
    # a file:// URL goes through the verified cache too, its name's digest checked
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    named = path.rename(tmp_path / f"tiny-{digest}.pth")
    via_url = get_model("tiny-resnet_in3", pretrained=named.as_uri())
    with torch.no_grad():
        torch.testing.assert_close(via_url(x), model(x))
    wrong = tmp_path / "tiny-abcdef12.pth"
    wrong.write_bytes(named.read_bytes())
    with pytest.raises(IntegrityError):
        get_model("tiny-resnet_in3", pretrained=wrong.as_uri())
    with pytest.raises(ModelNotFoundError, match="tiny-resnet_in3"):
        get_model("tiny-resnet_in4")
    with pytest.raises(InputError):
        get_model(12)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        get_model("tiny-resnet_in3", pretrained=3.5)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        inference_model(model, "not an image at all")
    with pytest.raises(InputError):
        inference_model(model, np.zeros((4, 4), dtype=np.uint8))


def test_catalogue_lists_and_describes_entries(zoo, capsys):
    names = list_models()
    assert "tiny-resnet_in3" in names and "resnet50_8xb32_in1k" in names
    assert "swin-tiny_16xb64_in1k" in list_models(pattern="swin-*", task="image-classification")
    info = model_info("resnet18_8xb32_in1k")
    assert isinstance(info, ModelIndexEntry)
    assert info.weights.endswith("resnet18_8xb32_in1k_20210831-fbbb1da6.pth")
    assert info.results[0]["Metrics"]["Top 1 Accuracy"] == 69.9
    assert info.paper["Title"] == "Deep Residual Learning for Image Recognition"
    vit = model_info("vit-base-p16_in21k-pre_3rdparty_in1k-384px")
    assert vit.converted_from["Weights"].endswith(".npz")

    assert main(["info", "tiny-resnet_in3"]) == 0
    out = capsys.readouterr().out
    assert "TinyResNet" in out and "Top 1 Accuracy 50.0" in out and "example.org/orig.pth" in out
    assert main(["ls", "--pattern", "tiny-*"]) == 0
    assert "tiny-resnet_in3" in capsys.readouterr().out
    assert main(["flops", "tiny-resnet_in3", "--shape", "3", "32", "32", "--json"]) == 0
    assert '"params"' in capsys.readouterr().out
    assert main(["flops", "tiny-resnet_in3", "--shape", "3", "0", "32"]) == 1
    assert "input_shape" in capsys.readouterr().err
    assert main(["info", "tiny-resnet_in9"]) == 1
    assert "tiny-resnet_in3" in capsys.readouterr().err  # the close name


def test_every_shipped_entry_builds_from_its_config():
    entries = [model_info(n) for n in list_models(task="image-classification")
               if isinstance(model_info(n), ModelIndexEntry)]
    assert len(entries) >= 14
    for entry in entries:
        if "large" in entry.name or "152" in entry.name or "101" in entry.name:
            continue  # the same code paths as the smaller ones, ten times the memory
        model = get_model(entry.name)
        assert model.head.num_classes in (10, 1000), entry.name


def test_bad_model_index(tmp_path):
    (tmp_path / "model-index.yml").write_text("Import:\n  - ../outside/metafile.yml\n")
    with pytest.raises(CardError, match="leaves"):
        read_model_index(tmp_path / "model-index.yml")
    (tmp_path / "model-index.yml").write_text("Models:\n  - Name: x\n")
    with pytest.raises(CardError, match="Config"):
        read_model_index(tmp_path / "model-index.yml")
    (tmp_path / "model-index.yml").write_text("Models: [\n")
    with pytest.raises(CardError):
        read_model_index(tmp_path / "model-index.yml")


def test_convert_cli_between_mmpretrain_and_hugging_face(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = tmp_path / "r.py"
    config.write_text(TINY.replace("num_stages=2,", "num_stages=4,").replace(
        "out_indices=(1, )", "out_indices=(3, )").replace("in_channels=16", "in_channels=64"))
    model = get_model(config)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t))
    save_mm_checkpoint(model, tmp_path / "mm.pth")
    assert main(["convert", str(tmp_path / "mm.pth"), str(tmp_path / "hf"),
                 "--mm-config", str(config)]) == 0
    hf = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "hf").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model.eval()(x)
        torch.testing.assert_close(hf(pixel_values=x).logits, want, atol=1e-5, rtol=1e-5)
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "back.pth"),
                 "--mm-config", str(config), "--to-mmpretrain"]) == 0
    back = get_model(config, pretrained=tmp_path / "back.pth")
    with torch.no_grad():
        torch.testing.assert_close(back(x), want)
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "x.pth"),
                 "--to-mmpretrain"]) == 1


@pytest.mark.parametrize("backbone, head, size", [
    (dict(type="VisionTransformer", arch=dict(embed_dims=32, num_layers=2, num_heads=4,
                                              feedforward_channels=64), img_size=32,
          patch_size=8), dict(type="VisionTransformerClsHead", in_channels=32), 32),
    (dict(type="SwinTransformer", arch="tiny", img_size=224),
     dict(type="LinearClsHead", in_channels=768), 224),
])
def test_convert_vit_and_swin_match_transformers(tmp_path, backbone, head, size):
    transformers = pytest.importorskip("transformers")
    from hubloader.mm.convert import hf_to_mm, mm_to_hf

    cfg = dict(model=dict(type="ImageClassifier", backbone=backbone,
                          neck=dict(type="GlobalAveragePooling") if "Swin" in backbone["type"]
                          else None, head=dict(head, num_classes=4)))
    model = get_model(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn_like(t) * 0.05)
    save_mm_checkpoint(model, tmp_path / "mm.pth")
    hf_dir = mm_to_hf(cfg, tmp_path / "mm.pth", tmp_path / "hf")
    hf = transformers.AutoModelForImageClassification.from_pretrained(hf_dir).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        want = model.eval()(x)
        torch.testing.assert_close(hf(pixel_values=x).logits, want, atol=1e-4, rtol=1e-4)
    back = get_model(cfg, pretrained=hf_to_mm(hf_dir, cfg, tmp_path / "back.pth"))
    with torch.no_grad():
        torch.testing.assert_close(back(x), want)
