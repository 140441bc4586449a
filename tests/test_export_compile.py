"""Models that export and compile cleanly: ``torch.export.export`` of every family's base and
head classes, ``torch.compile(fullgraph=True)`` of BERT, GPT-2, Llama and ViT forwards (no graph
break), the same outputs as eager, and eager errors on bad ids unchanged."""

from __future__ import annotations

import pytest
import torch

from hubloader.errors import InputError
from hubloader.load.registry import _REGISTRY, import_families

VOCAB = 50
TINY = {
    "bert": dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=32, num_labels=3),
    "gpt2": dict(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=32),
    "llama": dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2),
    "t5": dict(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2),
    "vit": dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                image_size=16, patch_size=8, num_labels=3),
    "resnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                   num_labels=3),
    "swin": dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
                 window_size=4, num_labels=3),
    "glm": dict(vocab_size=VOCAB, hidden_size=16, num_layers=1, num_attention_heads=2,
                max_sequence_length=32),
    "opt": dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                max_position_embeddings=48, num_attention_heads=2, pad_token_id=1),
    "clip": dict(text_config=dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                                  num_hidden_layers=1, num_attention_heads=2,
                                  max_position_embeddings=24, bos_token_id=VOCAB - 2,
                                  eos_token_id=VOCAB - 1, pad_token_id=VOCAB - 1),
                 vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, image_size=16, patch_size=8),
                 projection_dim=8),
    "altclip": dict(text_config=dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=1, num_attention_heads=2, project_dim=8,
                                     max_position_embeddings=40),
                    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=16, patch_size=8),
                    projection_dim=8),
}
FAMILY = {"roberta": "bert", "mistral": "llama", "qwen2": "llama", "aquila": "llama", "mt5": "t5",
          "galactica": "opt", "cpm": "gpt2", "alm": "glm", "swinv2": "swin", "eva_clip": "clip"}


def _classes():
    import_families()
    out = []
    for model_type, table in sorted(_REGISTRY.items()):
        for task, cls in sorted(table.items()):
            if (model_type, cls) not in [(m, c) for m, _, c in out]:
                out.append((model_type, task, cls))
    return out


def _build(model_type, cls):
    fam = FAMILY.get(model_type, model_type)
    torch.manual_seed(0)
    extra = {"type_vocab_size": 2} if "Seq2seq" in cls.__name__ else {}  # two segments
    model = cls.from_config(cls.config_class(**TINY[fam], **extra)).eval()
    g = torch.Generator().manual_seed(1)
    if fam in ("clip", "altclip"):
        size = model.config.vision_config["image_size"]
        return model, {"input_ids": torch.randint(3, VOCAB - 2, (2, 5), generator=g),
                       "pixel_values": torch.randn(2, 3, size, size, generator=g)}
    if fam in ("vit", "resnet", "swin"):
        size = getattr(model.config, "image_size", 32)
        return model, {"pixel_values": torch.randn(2, 3, size, size, generator=g)}
    ids = torch.randint(0, VOCAB, (2, 5), generator=g)
    if fam == "t5":
        return model, {"input_ids": ids, "decoder_input_ids": ids[:, :3]}
    if "Seq2seq" in cls.__name__:  # FlagAI's BERT seq2seq: source then target segments
        return model, {"input_ids": ids, "segment_ids": torch.tensor([[0, 0, 0, 1, 1]] * 2)}
    if fam == "glm":
        return model, {"input_ids": ids}
    return model, {"input_ids": ids, "attention_mask": torch.tensor([[1] * 5, [0, 1, 1, 1, 1]])}


def _tensors(out):
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def _check_export(model_type, cls):
    model, inputs = _build(model_type, cls)
    program = torch.export.export(model, (), inputs)
    with torch.no_grad():
        want, got = _tensors(model(**inputs)), _tensors(program.module()(**inputs))
    assert want and want.keys() == got.keys()
    for key in want:
        assert torch.allclose(want[key], got[key], atol=1e-5), (cls.__name__, key)


@pytest.mark.parametrize("name", ["BertModel", "GPT2LMHeadModel", "LlamaForCausalLM"])
def test_export_core_classes(name):
    model_type, _, cls = next(c for c in _classes() if c[2].__name__ == name)
    _check_export(model_type, cls)


@pytest.mark.slow
@pytest.mark.parametrize("model_type,task,cls", _classes(),
                         ids=[f"{m}-{c.__name__}" for m, _, c in _classes()])
def test_export_every_family_class(model_type, task, cls):
    _check_export(model_type, cls)


@pytest.mark.parametrize("name", ["BertForSequenceClassification", "GPT2LMHeadModel",
                                  "LlamaForCausalLM", "ViTForImageClassification"])
def test_compile_fullgraph(name):
    """fullgraph=True fails on any graph break; the aot_eager backend traces forward as
    inductor would, without its slow code generation on a CPU."""
    torch._dynamo.reset()
    model_type, _, cls = next(c for c in _classes() if c[2].__name__ == name)
    model, inputs = _build(model_type, cls)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        want, got = _tensors(model(**inputs)), _tensors(compiled(**inputs))
    for key in want:
        assert torch.allclose(want[key], got[key], atol=1e-5), (name, key)


@pytest.mark.slow
def test_compile_inductor_bert():
    torch._dynamo.reset()
    model_type, _, cls = next(c for c in _classes() if c[2].__name__ == "BertModel")
    model, inputs = _build(model_type, cls)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert torch.allclose(model(**inputs)["hidden_states"],
                              compiled(**inputs)["hidden_states"], atol=1e-4)


@pytest.mark.parametrize("name", ["BertModel", "GPT2LMHeadModel", "LlamaForCausalLM"])
def test_eager_errors_on_bad_ids_unchanged(name):
    model_type, _, cls = next(c for c in _classes() if c[2].__name__ == name)
    model, inputs = _build(model_type, cls)
    for bad in (VOCAB, -1):
        ids = inputs["input_ids"].clone()
        ids[0, 0] = bad
        with pytest.raises(InputError, match=rf"must lie in \[0, {VOCAB}\)"):
            model(**{**inputs, "input_ids": ids})


def test_causal_attention_through_is_causal_equals_the_masked_path():
    """is_causal=True (no mask built) and enable_gqa give what the explicit mask gives."""
    from hubloader.models.layers import MultiHeadAttention

    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, num_kv_heads=2, causal=True).eval()
    x = torch.randn(2, 6, 16)
    zero = torch.zeros(2, 1, 1, 6)  # a mask of zeros forces the explicit causal bias
    with torch.no_grad():
        assert torch.allclose(attn(x), attn(x, mask=zero), atol=1e-6)
        # decoding one token with a cache sees every key, as the full pass's last row does
        full, (k, v) = attn(x, use_cache=True)
        step = attn(x[:, -1:], past=(k[:, :, :-1], v[:, :, :-1]))
        assert torch.allclose(step, full[:, -1:], atol=1e-5)
