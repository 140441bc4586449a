"""Saved checkpoints in transformers' layout, both ways, for every family and head.

hubloader saves a random-init model; transformers' ``AutoModel...from_pretrained`` loads it
with no missing, unexpected or mismatched keys and the same outputs; transformers saves it back
and hubloader loads that with the same outputs. The same after ``convert`` and after a push to
SeaweedFS and a download back.
"""

from __future__ import annotations

import json

import pytest
import torch


transformers = pytest.importorskip("transformers")

TOL = 1e-5
_TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=37, max_position_embeddings=64)
# (transformers config class, kwargs, [(hubloader class, transformers auto class)])
FAMILIES = {
    "bert": ("BertConfig", dict(_TEXT, num_labels=3), [
        ("BertModel", "AutoModel"),
        ("BertForSequenceClassification", "AutoModelForSequenceClassification"),
        ("BertForTokenClassification", "AutoModelForTokenClassification"),
        ("BertForMaskedLM", "AutoModelForMaskedLM")]),
    "bert-untied": ("BertConfig", dict(_TEXT, tie_word_embeddings=False), [
        ("BertForMaskedLM", "AutoModelForMaskedLM")]),
    "roberta": ("RobertaConfig", dict(_TEXT, max_position_embeddings=66, num_labels=3), [
        ("RobertaModel", "AutoModel"),
        ("RobertaForSequenceClassification", "AutoModelForSequenceClassification"),
        ("RobertaForTokenClassification", "AutoModelForTokenClassification"),
        ("RobertaForMaskedLM", "AutoModelForMaskedLM")]),
    "gpt2": ("GPT2Config", dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                bos_token_id=0, eos_token_id=0), [
        ("GPT2Model", "AutoModel"), ("GPT2LMHeadModel", "AutoModelForCausalLM")]),
    "t5": ("T5Config", dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                            num_heads=4, decoder_start_token_id=0), [
        ("T5Model", "AutoModel"), ("T5ForConditionalGeneration", "AutoModelForSeq2SeqLM")]),
    "t5-gated": ("T5Config", dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                  num_heads=4, decoder_start_token_id=0,
                                  feed_forward_proj="gated-gelu", tie_word_embeddings=False), [
        ("T5ForConditionalGeneration", "AutoModelForSeq2SeqLM")]),
    "vit": ("ViTConfig", dict(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=37, num_labels=3), [
        ("ViTModel", "AutoModel"), ("ViTForImageClassification", "AutoModelForImageClassification")]),
    "resnet": ("ResNetConfig", dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2],
                                    num_labels=3), [
        ("ResNetModel", "AutoModel"),
        ("ResNetForImageClassification", "AutoModelForImageClassification")]),
    "swin": ("SwinConfig", dict(image_size=32, patch_size=2, embed_dim=8, depths=[2, 2],
                                num_heads=[2, 4], window_size=4, num_labels=3), [
        ("SwinModel", "AutoModel"),
        ("SwinForImageClassification", "AutoModelForImageClassification")]),
}
CASES = [(fam, ours, auto) for fam, (_, _, heads) in FAMILIES.items() for ours, auto in heads]


def _hubloader_model(family: str, name: str, seed: int = 0):
    import hubloader.models as H

    cfg_name, kwargs, _ = FAMILIES[family]
    hf_config = getattr(transformers, cfg_name)(**kwargs)
    cls = getattr(H, name)
    config = cls.config_class.from_dict(hf_config.to_dict())
    torch.manual_seed(seed)
    model = cls.from_config(config).eval()
    with torch.no_grad():  # non-trivial norms and batch statistics, not just ones and zeros
        for key, tensor in model.state_dict().items():
            if key.endswith(("norm.weight", "norm.bias", "running_mean")) or "final_norm" in key:
                tensor.add_(torch.randn_like(tensor) * 0.1)
            elif key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
    return model


def _inputs(family: str):
    g = torch.Generator().manual_seed(1)
    if family in ("vit", "resnet", "swin"):
        side = 16 if family == "vit" else 32
        return {"pixel_values": torch.randn(2, 3, side, side, generator=g)}
    ids = torch.randint(3, 99, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if family.startswith("t5"):
        out["decoder_input_ids"] = torch.randint(3, 99, (2, 5), generator=g)
    return out


def _real_tokens(out: torch.Tensor, inputs) -> torch.Tensor:
    """Padded positions zeroed: what a model computes there is nobody's output."""
    mask = inputs.get("attention_mask")
    if mask is None or "decoder_input_ids" in inputs or out.shape[:2] != mask.shape:
        return out
    return out * mask.view(*mask.shape, *([1] * (out.dim() - 2)))


def _ours(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return _real_tokens(out["logits"] if "logits" in out else out["hidden_states"], inputs)


def _theirs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return _real_tokens(out.logits if getattr(out, "logits", None) is not None
                        else out.last_hidden_state, inputs)


def _load_with_transformers(auto: str, folder):
    model, info = getattr(transformers, auto).from_pretrained(str(folder), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {})
    assert not problems, problems
    return model.eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


@pytest.mark.parametrize("family,name,auto", CASES, ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_hubloader_save_loads_in_transformers_and_back(family, name, auto, tmp_path):
    import hubloader.models as H

    model = _hubloader_model(family, name)
    inputs = _inputs(family)
    expected = _ours(model, inputs)
    model.save_pretrained(tmp_path / "ours")
    cfg = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert cfg["architectures"] == [name] and cfg["dtype"] == "float32" and "torch_dtype" not in cfg

    theirs = _load_with_transformers(auto, tmp_path / "ours")
    assert type(theirs).__name__ == name
    assert _max_diff(_theirs(theirs, inputs), expected) <= TOL
    if name == "BertModel":  # the pooler too
        with torch.no_grad():
            assert _max_diff(theirs(**inputs).pooler_output, model(**inputs)["pooled"]) <= TOL

    # the reverse: transformers saves, hubloader loads (strictly)
    theirs.save_pretrained(tmp_path / "theirs")
    back = getattr(H, name).from_pretrain(tmp_path / "theirs")
    assert not back.load_report.missing and not back.load_report.unexpected
    assert _max_diff(_ours(back, inputs), expected) <= TOL


@pytest.mark.parametrize("family,name,auto", CASES, ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_convert_of_a_transformers_checkpoint_loads_in_both(family, name, auto, tmp_path):
    """``convert`` of what transformers saved, as a pickle (``pytorch_model.bin``): the result
    is in transformers' layout, and both libraries load it with the same outputs."""
    from safetensors.torch import load_file

    import hubloader.models as H
    from hubloader.tools.convert import convert

    model = _hubloader_model(family, name)
    inputs = _inputs(family)
    expected = _ours(model, inputs)
    model.save_pretrained(tmp_path / "ours")
    theirs = _load_with_transformers(auto, tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    src = tmp_path / "theirs-bin"  # the same checkpoint as transformers 4 pickled it
    src.mkdir()
    (src / "config.json").write_bytes((tmp_path / "theirs" / "config.json").read_bytes())
    torch.save(load_file(tmp_path / "theirs" / "model.safetensors"), src / "pytorch_model.bin")
    result = convert(src, tmp_path / "conv")
    assert result.model_class == name
    again = _load_with_transformers(auto, tmp_path / "conv")
    assert _max_diff(_theirs(again, inputs), expected) <= TOL
    ours = getattr(H, name).from_pretrain(tmp_path / "conv")
    assert _max_diff(_ours(ours, inputs), expected) <= TOL


NATIVE = [  # configs built by hubloader alone, without transformers' extra fields
    ("BertForMaskedLM", "AutoModelForMaskedLM", "bert",
     dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
          intermediate_size=37)),
    ("RobertaForSequenceClassification", "AutoModelForSequenceClassification", "roberta",
     dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
          intermediate_size=37, num_labels=3)),
    ("GPT2LMHeadModel", "AutoModelForCausalLM", "gpt2",
     dict(vocab_size=99, n_embd=32, n_layer=1, n_head=4, n_positions=64)),
    ("T5ForConditionalGeneration", "AutoModelForSeq2SeqLM", "t5",
     dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4)),
    ("ViTForImageClassification", "AutoModelForImageClassification", "vit",
     dict(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1,
          num_attention_heads=4, intermediate_size=37, num_labels=3)),
    ("ResNetForImageClassification", "AutoModelForImageClassification", "resnet",
     dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)),
]


@pytest.mark.parametrize("name,auto,family,kwargs", NATIVE, ids=[n[0] for n in NATIVE])
def test_hubloader_native_config_means_the_same_to_transformers(name, auto, family, kwargs,
                                                                tmp_path):
    """config.json written from hubloader's own config classes: transformers builds the same
    model from it (a field it reads differently would change the outputs)."""
    import hubloader.models as H

    cls = getattr(H, name)
    torch.manual_seed(0)
    model = cls.from_config(cls.config_class(**kwargs)).eval()
    model.save_pretrained(tmp_path)
    theirs = _load_with_transformers(auto, tmp_path)
    inputs = _inputs(family)
    assert _max_diff(_theirs(theirs, inputs), _ours(model, inputs)) <= TOL


def test_bf16_checkpoint_keeps_its_dtype_both_ways(tmp_path):
    """transformers 5 writes ``dtype``; a bf16 checkpoint loads as bf16 in both libraries, and
    an older ``torch_dtype`` file still loads as bf16."""
    import hubloader.models as H
    from hubloader.tools.convert import convert

    model = _hubloader_model("bert", "BertForMaskedLM")
    model.save_pretrained(tmp_path / "fp32")
    convert(tmp_path / "fp32", tmp_path / "bf16", dtype="bfloat16")
    cfg = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16" and "torch_dtype" not in cfg
    ours = H.BertForMaskedLM.from_pretrain(tmp_path / "bf16")
    assert ours.dtype == torch.bfloat16
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "bf16"))
    assert theirs.dtype == torch.bfloat16

    theirs.save_pretrained(tmp_path / "hf-bf16")  # transformers' own file: "dtype"
    assert json.loads((tmp_path / "hf-bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    assert H.BertForMaskedLM.from_pretrain(tmp_path / "hf-bf16").dtype == torch.bfloat16

    cfg["torch_dtype"] = cfg.pop("dtype")  # a transformers 4 file
    (tmp_path / "bf16" / "config.json").write_text(json.dumps(cfg))
    assert H.BertForMaskedLM.from_pretrain(tmp_path / "bf16").dtype == torch.bfloat16


def test_push_to_seaweedfs_and_download_back_loads_in_transformers(weed, hub_env, tmp_path,
                                                                   monkeypatch):
    """Every family and head, pushed to a real SeaweedFS and fetched back through hubloader's
    cache: transformers loads the downloaded directory with no key problems, same outputs."""
    import hubloader
    from hubloader.load.resolve import resolve_model_dir

    weed.ensure_bucket("hflayout")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", weed.endpoint)
    for family, name, auto in CASES:
        model = _hubloader_model(family, name, seed=3)
        inputs = _inputs(family)
        model.save_pretrained(tmp_path / name / family)
        hubloader.push(tmp_path / name / family, f"s3://hflayout/{family}/{name}/",
                       progress=False, endpoint_url=weed.endpoint)
        fetched = resolve_model_dir(f"s3://hflayout/{family}/{name}")
        assert fetched != tmp_path / name / family and (fetched / "model.safetensors").is_file()
        theirs = _load_with_transformers(auto, fetched)
        assert _max_diff(_theirs(theirs, inputs), _ours(model, inputs)) <= TOL, name


def test_key_rules_invert_and_refuse_what_cannot_be():
    from hubloader.load.checkpoint_keys import invert_key_rules, rename_keys
    from hubloader.errors import WeightsError

    rules = ((r"^bert\.", "backbone."),
             (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.",
              r"blocks.\1.attention.\2."))
    theirs = {"bert.encoder.layer.11.attention.self.key.bias": 1, "bert.pooler.dense.weight": 2}
    ours = rename_keys(theirs, rules)
    assert ours == {"backbone.blocks.11.attention.key.bias": 1, "backbone.pooler.dense.weight": 2}
    assert rename_keys(ours, invert_key_rules(rules)) == theirs
    for rule in ((r"^(bert|roberta)\.", "backbone."),  # which prefix to write back?
                 (r"\.gam+a$", ".weight"), (r"(a(b))", r"\1")):
        with pytest.raises(WeightsError):
            invert_key_rules([rule])
