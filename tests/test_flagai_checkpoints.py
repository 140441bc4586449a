"""FlagAI-format checkpoints of the GPT-2 and T5 families (FlagAI's model classes' own state
dicts under "module", FlagAI's config.json without model_type) load strictly and give FlagAI's
logits. GLM's and BERT's are in test_glm.py and test_flagai_heads.py."""

from __future__ import annotations

import torch

from _flagai import TOL, flagai_config, max_diff, perturb, save_flagai
from hubloader import BaseModel
from hubloader.models import GPT2LMHeadModel, T5ForConditionalGeneration

import flagai.model.gpt2_model as fgpt  # test-only oracle (see pyproject's test extra)
import flagai.model.t5_model as ft5

GPT2 = dict(vocab_size=50, n_positions=32, n_ctx=32, n_embd=16, n_layer=2, n_head=2, n_inner=None,
            activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
            layer_norm_epsilon=1e-5, initializer_range=0.02, checkpoint_activations=False,
            use_cache=False, scale_attn_weights=True)
T5 = dict(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2,
          num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
          dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
          feed_forward_proj="relu", is_encoder_decoder=True, use_cache=False, pad_token_id=0,
          eos_token_id=1, decoder_start_token_id=0, checkpoint_activations=False,
          tie_word_embeddings=True)


def test_flagai_gpt2_checkpoint_loads_strictly_with_flagai_logits(tmp_path):
    torch.manual_seed(0)
    ref = fgpt.GPT2Model(flagai_config(GPT2))
    perturb(ref)
    with torch.no_grad():  # FlagAI ties the LM head to the embeddings
        ref.lm_head.weight = ref.transformer.wte.weight
    # GPT2-base-ch: the card's family decides, config.json has no model_type
    path = save_flagai(ref, GPT2, tmp_path, "GPT2-base-ch")
    ours = BaseModel.from_pretrain("GPT2-base-ch", download_path=str(tmp_path), strict=True)
    assert type(ours).__name__ == "GPT2Model" and ours.load_report.discarded == ["lm_head.weight"]
    ours = GPT2LMHeadModel.from_pretrain(str(path), strict=True)
    ids = torch.randint(1, 50, (2, 7))
    with torch.no_grad():
        want = ref(input_ids=ids)["logits"]
        got = ours(ids)["logits"]
    assert max_diff(want, got) < TOL


def test_flagai_t5_checkpoint_loads_strictly_with_flagai_logits(tmp_path):
    torch.manual_seed(0)
    ref = perturb(ft5.T5Model(flagai_config(T5)))
    path = save_flagai(ref, T5, tmp_path, "T5-base-ch")
    ours = T5ForConditionalGeneration.from_pretrain(str(path), strict=True)
    ids = torch.randint(2, 50, (2, 6))
    dec = torch.randint(2, 50, (2, 4))
    with torch.no_grad():
        want = ref(input_ids=ids, decoder_input_ids=dec)["logits"]
        got = ours(input_ids=ids, decoder_input_ids=dec)["logits"]
    assert max_diff(want, got) < TOL
