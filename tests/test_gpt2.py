"""GPT-2 against transformers (random-init, saved in HF format): forward, loss, KV cache,
greedy generation; and bad input."""

from __future__ import annotations

import pytest
import torch

from _families import TOL, max_diff, save_hf
from hubloader import AutoLoader, BaseModel
from hubloader.errors import GenerationArgumentError, InputError, UnknownTaskError
from hubloader.models import GPT2LMHeadModel, GPT2Model

import transformers  # noqa: E402  (test-only oracle)

VOCAB = 97


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=3, n_head=4,
                                  bos_token_id=1, eos_token_id=2, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0,
                                  initializer_range=0.2)  # non-uniform attention: a sensitive test
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    return hf, save_hf(hf, tmp_path_factory.mktemp("gpt2"))


def _ids(batch=2, seq=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, seq), generator=g)


def test_lm_forward_and_loss_match_transformers(hf_gpt2):
    hf, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids = _ids()
    with torch.no_grad():
        ref = hf(ids, labels=ids)
        out = ours(ids, labels=ids)
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL
    # the head is tied to the token embedding, as in the checkpoint
    assert ours.lm_head.weight is ours.backbone.wte.weight


def test_base_model_loads_head_checkpoint(hf_gpt2):
    hf, path = hf_gpt2
    base = BaseModel.from_pretrain(str(path))  # architectures → the LM head class
    assert isinstance(base, GPT2LMHeadModel)
    backbone = GPT2Model.from_pretrain(str(path))
    ids = _ids(seed=3)
    with torch.no_grad():
        ref = hf.transformer(ids).last_hidden_state
        assert max_diff(backbone(ids)["hidden_states"], ref) <= TOL


def test_kv_cache_matches_full_forward(hf_gpt2):
    _, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    ids = _ids(seq=10, seed=4)
    with torch.no_grad():
        full = ours(ids)["logits"]
        first = ours(ids[:, :6], use_cache=True)
        step = ours(ids[:, 6:], past_key_values=first["past_key_values"], use_cache=True)
    assert max_diff(step["logits"], full[:, 6:]) <= TOL


def test_greedy_generation_matches_transformers(hf_gpt2):
    hf, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    ids = _ids(seq=5, seed=5)
    ref = hf.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None,
                      pad_token_id=0, attention_mask=torch.ones_like(ids))
    got = ours.generate(ids, max_new_tokens=12)
    assert got.shape == ref.shape
    assert torch.equal(got, ref)


def test_left_padded_batch_generates_like_unpadded_rows(hf_gpt2):
    _, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    long, short = _ids(1, 6, seed=6), _ids(1, 4, seed=7)
    batch = torch.cat([long, torch.cat([torch.zeros(1, 2, dtype=torch.long), short], 1)])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    got = ours.generate(batch, attention_mask=mask, max_new_tokens=6, eos_token_id=[])
    assert torch.equal(got[0, 6:], ours.generate(long, max_new_tokens=6, eos_token_id=[])[0, 6:])
    assert torch.equal(got[1, 6:], ours.generate(short, max_new_tokens=6, eos_token_id=[])[0, 4:])


def test_eos_stops_rows_and_pads(hf_gpt2):
    _, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    ids = _ids(seq=5, seed=8)
    def run(**kw):  # seeded sampling: varied tokens, the same draws in both runs
        return ours.generate(ids, max_new_tokens=8, do_sample=True,
                             generator=torch.Generator().manual_seed(5), **kw)

    free = run(eos_token_id=[])
    gen = free[0, 5:].tolist()
    # the first step whose token row 0 has not emitted before becomes "eos"
    j = next(j for j in range(1, len(gen)) if gen[j] not in gen[:j])
    got = run(eos_token_id=gen[j], pad_token_id=0)
    assert torch.equal(got[0, :5 + j + 1], free[0, :5 + j + 1])
    assert bool((got[0, 5 + j + 1:] == 0).all())
    assert got.shape[1] <= free.shape[1]


def test_sampling_is_reproducible_and_respects_top_k(hf_gpt2):
    _, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    ids = _ids(seq=4, seed=9)
    a = ours.generate(ids, max_new_tokens=6, do_sample=True, top_k=5, top_p=0.9, temperature=0.7,
                      eos_token_id=[], generator=torch.Generator().manual_seed(11))
    b = ours.generate(ids, max_new_tokens=6, do_sample=True, top_k=5, top_p=0.9, temperature=0.7,
                      eos_token_id=[], generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    # top_k=1 sampling is greedy decoding
    one = ours.generate(ids, max_new_tokens=6, do_sample=True, top_k=1, eos_token_id=[],
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(one, ours.generate(ids, max_new_tokens=6, eos_token_id=[]))


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 0}, {"max_new_tokens": -3}, {"max_new_tokens": 2.5},
    {"max_new_tokens": 3, "temperature": 0}, {"max_new_tokens": 3, "temperature": -1.0},
    {"max_new_tokens": 3, "top_p": 0.0}, {"max_new_tokens": 3, "top_p": 1.5},
    {"max_new_tokens": 3, "top_k": 0}, {"max_new_tokens": 3, "eos_token_id": -1},
])
def test_generation_arguments_out_of_range(hf_gpt2, kwargs):
    _, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    with pytest.raises(GenerationArgumentError) as info:
        ours.generate(_ids(), **kwargs)
    assert isinstance(info.value, ValueError)


def test_bad_forward_inputs(hf_gpt2):
    _, path = hf_gpt2
    ours = GPT2LMHeadModel.from_pretrain(str(path))
    with pytest.raises(InputError, match="torch.Tensor"):
        ours([[1, 2, 3]])
    with pytest.raises(InputError, match=r"\[batch, seq\]"):
        ours(torch.tensor([1, 2, 3]))
    with pytest.raises(InputError, match="integer"):
        ours(torch.rand(1, 4))
    with pytest.raises(InputError, match="must lie in"):
        ours(torch.tensor([[1, VOCAB]]))
    with pytest.raises(InputError, match="n_positions"):
        ours(torch.ones(1, 65, dtype=torch.long))
    with pytest.raises(InputError, match="attention_mask"):
        ours(_ids(), attention_mask=torch.ones(2, 3))
    with pytest.raises(InputError):
        ours.generate("hello", max_new_tokens=2)


def test_autoloader_serves_lm_and_refuses_other_tasks(hf_gpt2):
    _, path = hf_gpt2
    for task in ("lm", "text-generation", "poetry-generation"):
        loader = AutoLoader(task, model_name=str(path))
        assert isinstance(loader.get_model(), GPT2LMHeadModel)
    with pytest.raises(UnknownTaskError, match="cannot serve"):
        AutoLoader("ner", model_name=str(path))
