"""Llama-architecture decoders (Llama, Mistral, Qwen2, Aquila) against transformers on the same
random small checkpoints: logits, KV cache, greedy and batched generation, repetition penalty,
EOS lists; FlagAI's own Aquila layout; dtypes; bad configs."""

from __future__ import annotations

import json

import pytest
import torch

from _families import TOL, max_diff, save_hf
from hubloader import AutoLoader, BaseModel
from hubloader.errors import ConfigError, GenerationArgumentError
from hubloader.models import (AquilaForCausalLM, LlamaForCausalLM, LlamaModel, MistralForCausalLM,
                              Qwen2ForCausalLM)

import transformers  # noqa: E402  (test-only oracle)

VOCAB = 97
TINY = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2,
            bos_token_id=1, eos_token_id=2, pad_token_id=0)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8}

# id -> (transformers class prefix, config overrides, our class)
CASES = {
    "llama": ("Llama", {}, LlamaForCausalLM),
    # Llama 3.1's rope scaling, a head_dim the hidden size does not imply, biases, a tied head
    "llama3": ("Llama", dict(rope_theta=500000.0, rope_scaling=LLAMA3_ROPE, head_dim=16,
                             attention_bias=True, tie_word_embeddings=True), LlamaForCausalLM),
    "llama-linear": ("Llama", dict(rope_scaling={"rope_type": "linear", "factor": 2.0},
                                   num_key_value_heads=1), LlamaForCausalLM),
    "qwen2": ("Qwen2", {}, Qwen2ForCausalLM),
    "mistral": ("Mistral", dict(sliding_window=4), MistralForCausalLM),  # window < prompt
}


def _randomize_biases(model) -> None:
    for name, p in model.named_parameters():  # transformers zero-inits them: make them count
        if name.endswith(".bias"):
            torch.nn.init.normal_(p, 0.0, 0.5)


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    prefix, overrides, ours_cls = CASES[request.param]
    torch.manual_seed(0)
    cfg = getattr(transformers, f"{prefix}Config")(**{**TINY, **overrides})
    hf = getattr(transformers, f"{prefix}ForCausalLM")(cfg).eval()
    _randomize_biases(hf)
    path = save_hf(hf, tmp_path_factory.mktemp(request.param))
    return hf, path, ours_cls


def _ids(batch=2, seq=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, seq), generator=g)


def test_logits_and_loss_match_transformers(pair):
    hf, path, ours_cls = pair
    ours = BaseModel.from_pretrain(str(path))
    assert type(ours) is ours_cls
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids = _ids()
    with torch.no_grad():
        ref = hf(ids, labels=ids)
        out = ours(ids, labels=ids)
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL
    if hf.config.tie_word_embeddings:
        assert ours.lm_head.weight is ours.backbone.embed_tokens.weight


def test_kv_cache_matches_full_forward(pair):
    _, path, _ = pair
    ours = BaseModel.from_pretrain(str(path))
    ids = _ids(seq=10, seed=4)
    with torch.no_grad():
        full = ours(ids)["logits"]
        first = ours(ids[:, :6], use_cache=True)
        step = ours(ids[:, 6:], past_key_values=first["past_key_values"], use_cache=True)
    assert max_diff(step["logits"], full[:, 6:]) <= TOL


def test_greedy_generation_matches_transformers(pair):
    hf, path, _ = pair
    ours = BaseModel.from_pretrain(str(path))
    ids = _ids(seq=5, seed=5)
    ref = hf.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0,
                      attention_mask=torch.ones_like(ids))
    assert torch.equal(ours.generate(ids, max_new_tokens=10, eos_token_id=[]), ref)


def test_left_padded_batch_eos_list_and_penalty_match_transformers(pair):
    hf, path, _ = pair
    ours = BaseModel.from_pretrain(str(path))
    ids = _ids(seq=7, seed=6)
    mask = torch.ones_like(ids)
    ids[1, :3], mask[1, :3] = 0, 0  # the second prompt is 3 tokens shorter, padded left
    free = ours.generate(ids, attention_mask=mask, max_new_tokens=8, eos_token_id=[],
                         repetition_penalty=1.5)
    plain = ours.generate(ids, attention_mask=mask, max_new_tokens=8, eos_token_id=[])
    assert not torch.equal(plain, free)  # the penalty changes the choices
    eos = [int(free[0, 9]), int(free[1, 8])]  # each row meets one of these mid-way
    kw = dict(attention_mask=mask, max_new_tokens=8, eos_token_id=eos, pad_token_id=0,
              repetition_penalty=1.5)
    ref = hf.generate(ids, do_sample=False, **kw)
    got = ours.generate(ids, **kw)
    assert torch.equal(got, ref)
    stopped = [next(j for j in range(7, got.shape[1]) if int(got[r, j]) in eos) for r in (0, 1)]
    for r, j in enumerate(stopped):  # after its EOS a row holds only padding
        assert bool((got[r, j + 1:] == 0).all())


def test_bf16_checkpoint_loads_in_bf16_unless_overridden(pair, tmp_path):
    hf, _, _ = pair
    path = tmp_path / "bf16"
    hf.to(torch.bfloat16).save_pretrained(str(path))
    hf.float()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"
    ours = BaseModel.from_pretrain(str(path))
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}
    ids = _ids(seq=6, seed=8)
    with torch.no_grad():
        ref = hf.to(torch.bfloat16)(ids).logits.float()
        hf.float()
        logits = ours(ids)["logits"]
    assert logits.dtype == torch.bfloat16
    assert max_diff(logits, ref) <= 0.1  # bf16 rounding, same kernels
    as_f32 = BaseModel.from_pretrain(str(path), torch_dtype=torch.float32)
    assert {p.dtype for p in as_f32.parameters()} == {torch.float32}


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    torch.manual_seed(3)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).eval()
    return hf, save_hf(hf, tmp_path_factory.mktemp("llama"))


def test_aquila_hf_layout_loads_through_autoloader(hf_llama, tmp_path):
    """Aquila on the hub is Llama in Hugging Face's layout under model_type 'aquila'."""
    hf, path = hf_llama
    aquila = tmp_path / "aquila"
    aquila.mkdir()
    for f in path.iterdir():
        (aquila / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(model_type="aquila", architectures=["AquilaModel"])
    (aquila / "config.json").write_text(json.dumps(cfg))
    model = AutoLoader("lm", model_name=str(aquila)).get_model()
    assert isinstance(model, AquilaForCausalLM)
    ids = _ids(seed=9)
    with torch.no_grad():
        assert max_diff(model(ids)["logits"], hf(ids).logits) <= TOL


def _to_flagai_layout(hf) -> dict[str, torch.Tensor]:
    """The checkpoint as FlagAI's Aquila code stores it: Meta's key names and interleaved
    rotary rows (the inverse of the permutation transformers' conversion script applies)."""
    c = hf.config
    heads = {"q_proj": c.num_attention_heads, "k_proj": c.num_key_value_heads}

    def interleave(w, n):
        rows, cols = w.shape
        return w.reshape(n, 2, rows // n // 2, cols).transpose(1, 2).reshape(rows, cols)

    names = {"self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
             "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
             "mlp.gate_proj": "feed_forward.w1", "mlp.up_proj": "feed_forward.w3",
             "mlp.down_proj": "feed_forward.w2", "input_layernorm": "attention_norm",
             "post_attention_layernorm": "ffn_norm"}
    out = {}
    for key, value in hf.state_dict().items():
        key = key.replace("model.embed_tokens", "tok_embeddings").replace("lm_head", "output")
        key = key.replace("model.norm", "norm").replace("model.layers", "layers")
        for proj, n in heads.items():
            if f".{proj}." in key:
                value = interleave(value, n)
        for a, b in names.items():
            key = key.replace(a, b)
        out[key] = value.contiguous()
    return out


def test_flagai_aquila_layout_matches_transformers_llama(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(4)
    # FlagAI derives the MLP width from dim and multiple_of: 2/3 * 4 * 32 -> 85 -> 96
    cfg = transformers.LlamaConfig(**{**TINY, "intermediate_size": 96, "num_key_value_heads": 4})
    hf = transformers.LlamaForCausalLM(cfg).eval()
    save_file(_to_flagai_layout(hf), str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "aquila", "dim": 32, "n_layers": 2, "n_heads": 4, "multiple_of": 32,
        "norm_eps": TINY.get("rms_norm_eps", 1e-6), "vocab_size": VOCAB, "max_seq_len": 64}))
    ours = AquilaForCausalLM.from_pretrain(str(tmp_path))
    assert ours.config.intermediate_size == 96
    ids = _ids(seed=10)
    with torch.no_grad():
        assert max_diff(ours(ids)["logits"], hf(ids).logits) <= TOL
    ref = hf.generate(ids[:1, :4], max_new_tokens=6, do_sample=False, eos_token_id=None,
                      pad_token_id=0, attention_mask=torch.ones_like(ids[:1, :4]))
    assert torch.equal(ours.generate(ids[:1, :4], max_new_tokens=6, eos_token_id=[]), ref)


def test_generation_config_eos_list_stops_chat_models(hf_llama, tmp_path):
    """Chat models list their end-of-turn ids in generation_config.json, not config.json."""
    hf, path = hf_llama
    for f in path.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    ids = _ids(batch=1, seq=4, seed=14)
    free = LlamaForCausalLM.from_pretrain(str(path)).generate(ids, max_new_tokens=8,
                                                              eos_token_id=[])
    stop = int(free[0, 7])  # the 4th new token becomes the second end-of-turn id
    first = next(i for i in range(VOCAB) if i not in free[0].tolist())  # never emitted
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [first, stop], "pad_token_id": 0}))
    ours = LlamaForCausalLM.from_pretrain(str(tmp_path))
    got = ours.generate(ids, max_new_tokens=8)
    k = free[0, 4:].tolist().index(stop)  # its first appearance
    assert torch.equal(got[0], free[0, :4 + k + 1])
    ref = hf.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=[first, stop],
                      pad_token_id=0, attention_mask=torch.ones_like(ids))
    assert torch.equal(got, ref)
    # an explicit argument still wins
    assert torch.equal(ours.generate(ids, max_new_tokens=8, eos_token_id=[]), free)
    (tmp_path / "generation_config.json").write_text("{not json")
    unreadable = LlamaForCausalLM.from_pretrain(str(tmp_path))  # ignored: config.json's eos
    assert torch.equal(unreadable.generate(ids, max_new_tokens=8),
                       ours.generate(ids, max_new_tokens=8, eos_token_id=TINY["eos_token_id"]))


def test_backbone_loads_causal_lm_checkpoint(hf_llama):
    hf, path = hf_llama
    base = LlamaModel.from_pretrain(str(path))
    ids = _ids(seed=11)
    with torch.no_grad():
        assert max_diff(base(ids)["hidden_states"], hf.model(ids).last_hidden_state) <= TOL


def test_streamer_sees_the_prompt_then_each_token(hf_llama):
    _, path = hf_llama
    ours = LlamaForCausalLM.from_pretrain(str(path))
    seen: list[torch.Tensor] = []

    class Collect:
        ended = False

        def put(self, value):
            seen.append(value)

        def end(self):
            Collect.ended = True

    ids = _ids(batch=1, seq=4, seed=12)
    out = ours.generate(ids, max_new_tokens=5, eos_token_id=[], streamer=Collect())
    assert torch.equal(seen[0], ids) and Collect.ended
    assert torch.equal(torch.stack(seen[1:], dim=1), out[:, 4:])


@pytest.mark.parametrize("bad", [0, -1.0, "2", True])
def test_bad_repetition_penalty_is_refused(hf_llama, bad):
    _, path = hf_llama
    ours = LlamaForCausalLM.from_pretrain(str(path))
    with pytest.raises(GenerationArgumentError, match="repetition_penalty"):
        ours.generate(_ids(seed=13), max_new_tokens=2, repetition_penalty=bad)


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "yarn"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 2.0}}, "low_freq_factor"),
    ({"num_key_value_heads": 3}, "num_key_value_heads"),
    ({"hidden_size": 30, "head_dim": None}, "head_dim"),
])
def test_bad_config_is_a_config_error(hf_llama, tmp_path, change, message):
    _, path = hf_llama
    cfg = json.loads((path / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    cfg.update(change)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message):
        LlamaForCausalLM.init_from_json(tmp_path / "config.json")
