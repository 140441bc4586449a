"""T5 (ReLU and gated-GELU) against transformers (random-init, HF format): logits, loss, KV
cache, greedy generation; AutoLoader tasks; bad input."""

from __future__ import annotations

import pytest
import torch

from _families import TOL, max_diff, save_hf
from hubloader import AutoLoader
from hubloader.errors import GenerationArgumentError, InputError, UnknownTaskError
from hubloader.models import T5ForConditionalGeneration, T5Model

import transformers  # noqa: E402  (test-only oracle)

VOCAB = 80


def _hf(tmp_path_factory, name, **kw):
    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2,
                                num_heads=4, dropout_rate=0.0,
                                relative_attention_num_buckets=8,
                                relative_attention_max_distance=16, decoder_start_token_id=0,
                                initializer_factor=2.0,
                                **kw)
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    return hf, save_hf(hf, tmp_path_factory.mktemp(name))


@pytest.fixture(scope="module", params=["relu", "gated-gelu"])
def hf_t5(request, tmp_path_factory):
    return _hf(tmp_path_factory, request.param, feed_forward_proj=request.param)


def _ids(batch=2, seq=11, seed=1):
    return torch.randint(2, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def test_forward_and_loss_match_transformers(hf_t5):
    hf, path = hf_t5
    ours = T5ForConditionalGeneration.from_pretrain(str(path))
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    src, labels = _ids(), _ids(seq=7, seed=2)
    mask = torch.ones_like(src)
    mask[1, 8:] = 0  # a padded source row
    labels[0, 5:] = -100
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask, labels=labels)
        out = ours(input_ids=src, attention_mask=mask, labels=labels)
    assert max_diff(out["logits"], ref.logits) <= TOL
    assert max_diff(out["encoder_hidden_states"], ref.encoder_last_hidden_state) <= TOL
    assert abs(out["loss"].item() - ref.loss.item()) <= TOL


def test_base_model_matches_transformers(hf_t5, tmp_path):
    hf, path = hf_t5
    base = T5Model.from_pretrain(str(path))  # head checkpoint → backbone, lm_head discarded
    src, tgt = _ids(seed=3), _ids(seq=5, seed=4)
    with torch.no_grad():
        ref_dec = hf(input_ids=src, decoder_input_ids=tgt, output_hidden_states=True)
        out = base(input_ids=src, decoder_input_ids=tgt)
    assert max_diff(out["hidden_states"], ref_dec.decoder_hidden_states[-1]) <= TOL


def test_kv_cache_matches_full_decoder(hf_t5):
    _, path = hf_t5
    ours = T5ForConditionalGeneration.from_pretrain(str(path))
    src, tgt = _ids(seed=5), _ids(seq=8, seed=6)
    with torch.no_grad():
        full = ours(input_ids=src, decoder_input_ids=tgt)["logits"]
        first = ours(input_ids=src, decoder_input_ids=tgt[:, :5], use_cache=True)
        rest = ours(encoder_hidden_states=first["encoder_hidden_states"],
                    decoder_input_ids=tgt[:, 5:], past_key_values=first["past_key_values"],
                    use_cache=True)
    assert max_diff(rest["logits"], full[:, 5:]) <= TOL


def test_greedy_generation_matches_transformers(hf_t5):
    hf, path = hf_t5
    ours = T5ForConditionalGeneration.from_pretrain(str(path))
    src = _ids(seed=7)
    mask = torch.ones_like(src)
    mask[0, 9:] = 0
    ref = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=10, do_sample=False,
                      eos_token_id=None, num_beams=1)
    got = ours.generate(src, attention_mask=mask, max_new_tokens=10, eos_token_id=[])
    assert got.shape == ref.shape == (2, 11)
    assert torch.equal(got, ref)
    assert bool((got[:, 0] == 0).all())  # decoder start token first, as transformers returns


def test_autoloader_tasks(hf_t5):
    _, path = hf_t5
    for task in ("seq2seq", "title-generation", "text2text-generation", "summarization"):
        assert isinstance(AutoLoader(task, model_name=str(path)).get_model(),
                          T5ForConditionalGeneration)
    with pytest.raises(UnknownTaskError, match="cannot serve"):
        AutoLoader("image-classification", model_name=str(path))


def test_bad_inputs(hf_t5):
    _, path = hf_t5
    ours = T5ForConditionalGeneration.from_pretrain(str(path))
    with pytest.raises(InputError, match="decoder_input_ids is required"):
        ours(input_ids=_ids())
    with pytest.raises(InputError, match="input_ids is required"):
        ours(decoder_input_ids=_ids())
    with pytest.raises(InputError, match="torch.Tensor"):
        ours(input_ids="a sentence", decoder_input_ids=_ids())
    with pytest.raises(InputError, match="batch"):
        ours(input_ids=_ids(batch=2), decoder_input_ids=_ids(batch=3))
    with pytest.raises(InputError, match="attention_mask shape"):
        ours(input_ids=_ids(), attention_mask=torch.ones(2, 3), decoder_input_ids=_ids())
    with pytest.raises(GenerationArgumentError):
        ours.generate(_ids(), max_new_tokens=0)
    with pytest.raises(GenerationArgumentError):
        ours.generate(_ids(), max_new_tokens=3, do_sample=True, top_p=1.01)


def test_unequal_encoder_and_decoder_depth_matches_transformers(tmp_path_factory):
    """num_decoder_layers != num_layers (as in t5-v1_1 variants): logits, loss and our greedy
    ids against transformers' forward (its generate is not used for this config)."""
    hf, path = _hf(tmp_path_factory, "deep-decoder", num_decoder_layers=3)
    ours = T5ForConditionalGeneration.from_pretrain(str(path))
    assert len(ours.backbone.decoder.blocks) == 3 and len(ours.backbone.encoder.blocks) == 2
    src, labels = _ids(seed=7), _ids(seq=6, seed=8)
    with torch.no_grad():
        ref = hf(input_ids=src, labels=labels)
        out = ours(input_ids=src, labels=labels)
        assert max_diff(out["logits"], ref.logits) <= TOL
        assert abs(out["loss"].item() - ref.loss.item()) <= TOL
        # greedy decoding, step by step with transformers' full forward as the oracle
        got = ours.generate(src, max_new_tokens=5)
        dec = torch.zeros(src.shape[0], 1, dtype=torch.long)  # decoder_start_token_id
        for _ in range(5):
            nxt = hf(input_ids=src, decoder_input_ids=dec).logits[:, -1].argmax(-1, keepdim=True)
            dec = torch.cat([dec, nxt], dim=1)
    assert torch.equal(got, dec)
