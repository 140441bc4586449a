"""OPT and Galactica against transformers' OPTForCausalLM on the same weights (logits, greedy
ids, padded batches, save → transformers loads it back), FlagAI's OPT layout against FlagAI's
OPTModel, and contrastive search against a step-by-step reference run on transformers' model.

transformers 5 serves contrastive search only from the hub (``custom_generate``
``transformers-community/contrastive-search``), which a test cannot fetch; the reference here
is that algorithm written out without a cache: at every step, every candidate's full sequence
goes through transformers' model, and the candidate with the best
``(1 - alpha) * p - alpha * max cos(h_candidate, h_context)`` is kept.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
import torch
import transformers

from _flagai import flagai_config, max_diff, perturb, save_flagai
from hubloader import AutoLoader
from hubloader.errors import GenerationArgumentError
from hubloader.models import GalacticaForCausalLM, OPTForCausalLM, OPTModel

TINY = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, ffn_dim=32,
            max_position_embeddings=48, num_attention_heads=2, pad_token_id=1, bos_token_id=2,
            eos_token_id=2, init_std=0.3)


def _hf_opt(tmp_path, seed=0, **extra):
    torch.manual_seed(seed)
    ref = transformers.OPTForCausalLM(transformers.OPTConfig(**{**TINY, **extra})).eval()
    ref.save_pretrained(tmp_path / "hf")
    return ref, tmp_path / "hf"


@pytest.mark.parametrize("extra", [{}, {"word_embed_proj_dim": 8}, {"do_layer_norm_before": False},
                                   {"enable_bias": False, "layer_norm_elementwise_affine": False}],
                         ids=["opt", "projected", "post-norm", "galactica-no-bias"])
def test_opt_logits_and_greedy_ids_equal_transformers(tmp_path, extra):
    ref, path = _hf_opt(tmp_path, **extra)
    cls = GalacticaForCausalLM if "enable_bias" in extra else OPTForCausalLM
    ours = cls.from_pretrain(str(path), strict=True)
    ids = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    with torch.no_grad():
        assert max_diff(ref(ids).logits, ours(ids)["logits"]) < 1e-5
        assert max_diff(ref(ids, attention_mask=mask).logits[mask.bool()],
                        ours(ids, attention_mask=mask)["logits"][mask.bool()]) < 1e-5
    for m in (None, mask):
        want = ref.generate(ids, attention_mask=m, max_new_tokens=12, do_sample=False,
                            eos_token_id=None, pad_token_id=1)
        assert ours.generate(ids, attention_mask=m, max_new_tokens=12, eos_token_id=[]).tolist() \
            == want.tolist()
    back = transformers.AutoModelForCausalLM.from_pretrained(ours.save_pretrained(tmp_path / "ours")).eval()
    assert type(back) is transformers.OPTForCausalLM
    with torch.no_grad():
        assert max_diff(back(ids).logits, ref(ids).logits) == 0
    base = OPTModel.from_pretrain(str(path), strict=True)  # the head's checkpoint, backbone only
    with torch.no_grad():
        assert max_diff(base(ids)["hidden_states"], ref.model(ids).last_hidden_state) < 1e-5
    bare = transformers.OPTModel.from_pretrained(base.save_pretrained(tmp_path / "bare")).eval()
    with torch.no_grad():  # a bare decoder is saved under transformers' decoder.* names
        assert max_diff(bare(ids).last_hidden_state, ref.model(ids).last_hidden_state) == 0


def test_flagai_opt_layout_equals_flagai_opt_model(tmp_path):
    """FlagAI's OPTModel (its GPT-2 stack, fused c_attn) saved as FlagAI's trainer does."""
    from flagai.model.opt_model import OPTModel as FlagAIOPT  # test-only oracle

    cfg = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, ffn_dim=32,
               max_position_embeddings=32, num_attention_heads=2, activation_function="relu",
               word_embed_proj_dim=16, do_layer_norm_before=True, checkpoint_activations=False)
    torch.manual_seed(0)
    ref = perturb(FlagAIOPT(flagai_config(cfg)))
    ref.lm_head.weight = ref.transformer.wte.weight  # FlagAI ties the head when it loads
    save_flagai(ref, cfg, tmp_path, "opt-125m-en")
    loader = AutoLoader("lm", "opt-125m-en", str(tmp_path))
    ours = loader.get_model()
    assert type(ours) is OPTForCausalLM and ours.load_report.discarded == []
    ids = torch.randint(3, 60, (2, 9))  # FlagAI takes id 0 for padding
    with torch.no_grad():
        assert max_diff(ref(input_ids=ids)["logits"], ours(ids)["logits"]) < 1e-5


# -- contrastive search ---------------------------------------------------------------------
def _reference_contrastive(model, ids, *, alpha, k, steps, mask=None):
    """transformers' contrastive search, step by step without a cache (see the module doc)."""
    ids = ids.clone()
    mask = torch.ones_like(ids) if mask is None else mask.clone()
    for _ in range(steps):
        out = model(ids, attention_mask=mask, output_hidden_states=True)
        probs = out.logits[:, -1].float().softmax(-1)
        top_p, top_ids = probs.topk(k, dim=-1)
        chosen = []
        for row in range(ids.shape[0]):
            cand = torch.cat([ids[row].expand(k, -1), top_ids[row][:, None]], 1)
            cmask = torch.cat([mask[row], mask.new_ones(1)]).expand(k, -1)
            h = model(cand, attention_mask=cmask, output_hidden_states=True).hidden_states[-1]
            ctx, nxt = h[:, :-1], h[:, -1:]
            cos = torch.nn.functional.cosine_similarity(ctx, nxt, dim=-1, eps=0.0)
            cos = cos.masked_fill(cmask[:, :-1] == 0, -2.0)
            score = (1 - alpha) * top_p[row] - alpha * cos.max(-1).values
            chosen.append(top_ids[row, score.argmax()])
        ids = torch.cat([ids, torch.stack(chosen)[:, None]], 1)
        mask = torch.cat([mask, mask.new_ones(ids.shape[0], 1)], 1)
    return ids


@pytest.mark.parametrize("alpha,k", [(0.6, 4), (0.3, 6)])
def test_contrastive_search_ids_equal_the_reference_on_transformers_model(tmp_path, alpha, k):
    ref, path = _hf_opt(tmp_path, seed=3, vocab_size=40)
    ours = OPTForCausalLM.from_pretrain(str(path), strict=True)
    ids = torch.randint(3, 40, (2, 5), generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([[0, 1, 1, 1, 1], [1] * 5])
    with torch.no_grad():
        for m in (None, mask):
            want = _reference_contrastive(ref, ids, alpha=alpha, k=k, steps=10, mask=m)
            got = ours.generate(ids, attention_mask=m, max_new_tokens=10, penalty_alpha=alpha,
                                top_k=k, eos_token_id=[])
            assert got.tolist() == want.tolist()
            greedy = ours.generate(ids, attention_mask=m, max_new_tokens=10, eos_token_id=[])
    assert got.tolist() != greedy.tolist()  # the penalty changes the choice on this model


def test_contrastive_search_on_gpt2_and_its_arguments(tmp_path):
    from hubloader.models import GPT2LMHeadModel

    torch.manual_seed(4)
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=40, n_embd=16, n_layer=2, n_head=2,
                                  initializer_range=0.3)
    ref = transformers.GPT2LMHeadModel(cfg).eval()
    ref.save_pretrained(tmp_path / "g")
    ours = GPT2LMHeadModel.from_pretrain(str(tmp_path / "g"), strict=True)
    ids = torch.randint(0, 40, (1, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = _reference_contrastive(ref, ids, alpha=0.6, k=3, steps=8)
    assert ours.generate(ids, max_new_tokens=8, penalty_alpha=0.6, top_k=3,
                         eos_token_id=[]).tolist() == want.tolist()
    for bad in (dict(penalty_alpha=1.5, top_k=3), dict(penalty_alpha=0.5),
                dict(penalty_alpha=0.5, top_k=3, do_sample=True)):
        with pytest.raises(GenerationArgumentError):
            ours.generate(ids, max_new_tokens=2, **bad)


def test_predictor_contrastive_search_with_flagai_arguments(tmp_path):
    """FlagAI's ``predict_generate_contrastive_search(text, input_max_length, out_max_length,
    beam_size)`` on OPT: the new text of the reference's contrastive search (alpha 0.6, as
    FlagAI fixes it)."""
    import json

    from hubloader import Predictor
    from test_flagai_text_tokenizers import _byte_level_files

    (tmp_path / "opt").mkdir()
    d = _byte_level_files(tmp_path / "opt")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "bos_token": "</s>",
         "eos_token": "</s>", "unk_token": "</s>", "pad_token": "<pad>"}))
    vocab = len(json.loads((d / "vocab.json").read_text()))
    torch.manual_seed(6)
    ref = transformers.OPTForCausalLM(transformers.OPTConfig(**{**TINY, "vocab_size": vocab})).eval()
    ref.save_pretrained(d)
    loader = AutoLoader("lm", str(d))
    tok = loader.get_tokenizer()
    text = "the quick brown fox"
    prompt = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        want = _reference_contrastive(ref, prompt, alpha=0.6, k=3, steps=6)
    got = Predictor(loader.get_model(), tok).predict_generate_contrastive_search(
        text, 256, 6, 3)
    new = want[0, prompt.shape[1]:].tolist()
    if ref.config.eos_token_id in new:
        new = new[:new.index(ref.config.eos_token_id)]
    assert got == tok.decode(new)
    assert len(new) > 0


def test_contrastive_search_refuses_encoder_decoders():
    from hubloader.models import T5Config, T5ForConditionalGeneration

    t5 = T5ForConditionalGeneration(T5Config(vocab_size=30, d_model=8, d_kv=4, d_ff=16,
                                             num_layers=1, num_heads=2)).eval()
    with pytest.raises(GenerationArgumentError, match="decoder-only"):
        t5.generate(torch.tensor([[3, 4]]), max_new_tokens=2, penalty_alpha=0.5, top_k=2)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 70), rows=st.integers(1, 3), pad=st.integers(0, 3),
       alpha=st.sampled_from([0.0, 0.25, 1.0]))
def test_contrastive_search_properties(opt_tiny, k, rows, pad, alpha):
    """Any top_k (beyond the vocabulary too), batches with left padding: the prompt is kept,
    new ids lie in the vocabulary, alpha 0 is greedy, and a padded row decodes as it does
    alone."""
    g = torch.Generator().manual_seed(k * 7 + rows)
    ids = torch.randint(3, 40, (rows, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :pad] = 0
    out = opt_tiny.generate(ids, attention_mask=mask, max_new_tokens=4, penalty_alpha=alpha,
                            top_k=k, eos_token_id=[])
    assert out.shape == (rows, 10) and torch.equal(out[:, :6], ids)
    assert int(out.min()) >= 0 and int(out.max()) < 40
    if alpha == 0.0:
        assert torch.equal(out, opt_tiny.generate(ids, attention_mask=mask, max_new_tokens=4,
                                                  eos_token_id=[]))
    alone = opt_tiny.generate(ids[:1, pad:], max_new_tokens=4, penalty_alpha=alpha, top_k=k,
                              eos_token_id=[])
    assert torch.equal(out[0, 6:], alone[0, 6 - pad:])


@pytest.fixture(scope="module")
def opt_tiny(tmp_path_factory):
    _, path = _hf_opt(tmp_path_factory.mktemp("opt"), seed=9, vocab_size=40)
    return OPTForCausalLM.from_pretrain(str(path), strict=True)
