"""The Predictor beyond FlagAI's README examples: GPT-2 beam search against FlagAI's
gpt_beam_search, T5 beam search against generate(), sampling (reproducible, top_k=1 is greedy,
the repetition penalty works), GLM blank filling, masked LM and embeddings; bad arguments."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _flagai import (EN_VOCAB, TINY_GLM, bert_checkpoint, flagai_config, perturb, save_flagai,
                     write_sentencepiece)
from hubloader import AutoLoader, Predictor
from hubloader.errors import GenerationArgumentError, InputError

import flagai.model.glm_model as fg  # test-only oracle (see pyproject's test extra)
import flagai.model.gpt2_model as fgpt
from flagai.model.predictor.utils import gpt_beam_search

GPT2 = dict(vocab_size=len(EN_VOCAB), n_positions=64, n_ctx=64, n_embd=16, n_layer=2, n_head=2,
            n_inner=None, activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1,
            attn_pdrop=0.1, layer_norm_epsilon=1e-5, initializer_range=0.02,
            checkpoint_activations=False, use_cache=False, scale_attn_weights=True)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """FlagAI's GPT2-base-ch layout: FlagAI's GPT-2 weights, WordPiece vocab.txt."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(3)
    ref = perturb(fgpt.GPT2Model(flagai_config(GPT2)), seed=3)
    ref.lm_head.weight = ref.transformer.wte.weight
    out = save_flagai(ref, GPT2, root, "GPT2-base-ch")
    (out / "vocab.txt").write_text("\n".join(EN_VOCAB) + "\n")
    loader = AutoLoader("lm", model_name="GPT2-base-ch", model_dir=str(root))
    return ref, Predictor(loader.get_model(), loader.get_tokenizer())


def test_gpt2_beam_search_equals_flagai(gpt2):
    ref, pred = gpt2
    tok = pred.tokenizer
    sep = tok.token_to_id("[SEP]")

    class _Sep:  # gpt_beam_search asks FlagAI's tokenizer for the [SEP] id only
        def get_command_id(self, name):
            return {"sep": sep}[name]

    # one beam: FlagAI's gpt_beam_search appends each step's tokens to the contexts without
    # following the beams' parents, so with several beams it scores other sequences than it keeps
    for text in ("the quick brown fox", "hello world"):
        prompt = np.array(tok.encode(text)[:-1]).reshape(1, -1)  # FlagAI drops the end token
        want = gpt_beam_search(ref, prompt, _Sep(), beam_size=1, out_max_length=8)
        got = pred.predict_generate_beamsearch(text, out_max_length=8, beam_size=1)
        assert got == tok.decode(list(want)) and got


def test_sampling_is_reproducible_top1_is_greedy_and_penalty_stops_repeats(gpt2):
    _, pred = gpt2
    draw = [pred.predict_generate_randomsample("the quick", out_max_length=10, top_k=5,
                                               generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    assert draw[0] == draw[1]
    greedy = pred.predict_generate_beamsearch("the quick", out_max_length=10, beam_size=1)
    assert pred.predict_generate_randomsample("the quick", out_max_length=10, top_k=1) == greedy
    from hubloader.flagai.predictor import sample

    favourite = torch.zeros(1, 30).index_fill_(1, torch.tensor([4, 9]), 5.0)
    ids = sample(lambda out: favourite, max_length=6, end_id=-1, top_k=1, repetition_penalty=10.0)
    assert ids[:2] in ([4, 9], [9, 4]) and len(set(ids)) == 6  # drawn once, then penalized
    ids = sample(lambda out: favourite, max_length=3, end_id=-1, top_k=1, repetition_penalty=10.0,
                 context=[4, 9])
    assert 4 not in ids and 9 not in ids  # the prompt's tokens count as drawn
    with pytest.raises(GenerationArgumentError, match="repetition_penalty"):
        pred.predict_generate_randomsample("the", repetition_penalty=0)


def test_t5_beam_search_of_one_is_greedy_generate(tmp_path):
    import flagai.model.t5_model as ft5

    from test_flagai_checkpoints import T5

    torch.manual_seed(0)
    ref = perturb(ft5.T5Model(flagai_config({**T5, "vocab_size": 120})))
    path = save_flagai(ref, {**T5, "vocab_size": 120}, tmp_path, "T5-base-ch")
    write_sentencepiece(path / "spiece.model")
    loader = AutoLoader("title-generation", model_name="T5-base-ch", model_dir=str(tmp_path))
    model, tok = loader.get_model(), loader.get_tokenizer()
    text = "北京是中国的首都"
    ids = model.generate(torch.tensor([tok.encode(text)]), max_new_tokens=6, eos_token_id=1)
    want = [i for i in ids[0, 1:].tolist()]
    want = want[:want.index(1)] if 1 in want else want
    got = Predictor(model, tok).predict_generate_beamsearch(text, out_max_length=6, beam_size=1)
    assert got == tok.decode(want)


def test_glm_blank_filling_sample_with_top1_is_greedy(tmp_path):
    torch.manual_seed(0)
    ref = perturb(fg.GLMModel(flagai_config(TINY_GLM)))
    path = save_flagai(ref, TINY_GLM, tmp_path, "GLM-large-ch")
    write_sentencepiece(path / "cog-pretrain.model")
    loader = AutoLoader("lm", model_name="GLM-large-ch", model_dir=str(tmp_path))
    model, tok = loader.get_model(), loader.get_tokenizer()
    text = "北京是[MASK]的首都"
    ids = [tok.get_command_id("cls")] + tok.EncodeAsIds(text) + [tok.get_command_id("eos")]
    greedy = model.generate(torch.tensor([ids]), max_new_tokens=5)  # ids from the tokenizer
    got = Predictor(model, tok).predict_generate_randomsample(text, out_max_length=5, top_k=1)
    assert got == tok.DecodeIds(greedy[0].tolist()) and "<|startofpiece|>" in got
    assert Predictor(model, tok).predict_generate_randomsample("今天天气", out_max_length=4)


def test_masked_lm_and_embedding(tmp_path):
    bert_checkpoint(tmp_path)
    mlm = AutoLoader("masklm", model_name="RoBERTa-base-ch", model_dir=str(tmp_path))
    pred = Predictor(mlm.get_model(), mlm.get_tokenizer())
    text = "北京是[MASK]首都"
    batch = mlm.get_tokenizer()(text, return_tensors="pt")
    with torch.no_grad():
        want = mlm.get_model()(**batch)["logits"][0].argmax(-1)
    assert pred.predict_masklm(text) == mlm.get_tokenizer().decode(want)
    emb = AutoLoader("embedding", model_name="RoBERTa-base-ch", model_dir=str(tmp_path))
    vec = Predictor(emb.get_model(), emb.get_tokenizer()).predict_embedding("北京是中国的首都")
    assert vec.shape == (32,) and abs(vec.norm().item() - 1) < 1e-5


def test_unsupported_models_and_input_raise_typed_errors(tmp_path):
    bert_checkpoint(tmp_path)
    loader = AutoLoader("ner", model_name="RoBERTa-base-ch", model_dir=str(tmp_path), class_num=3)
    pred = Predictor(loader.get_model(), loader.get_tokenizer())
    with pytest.raises(InputError, match="BertForTokenClassification"):
        pred.predict_generate_beamsearch("北京")
    with pytest.raises(InputError, match="pair"):
        pred.predict_cls_classifier(["a", "b", "c"])
    assert json.loads(json.dumps(pred.predict_ner("北京是中国的首都", ["O", "B-LOC", "I-LOC"])))\
        is not None


def test_glm_classification_through_the_predictor(tmp_path):
    torch.manual_seed(0)
    ref = perturb(fg.GLMModel(flagai_config(TINY_GLM)))
    path = save_flagai(ref, TINY_GLM, tmp_path, "GLM-large-ch")
    write_sentencepiece(path / "cog-pretrain.model")
    loader = AutoLoader("cls", model_name="GLM-large-ch", model_dir=str(tmp_path), class_num=3)
    model, tok = loader.get_model(), loader.get_tokenizer()
    with torch.no_grad():
        want = int(model(**tok("北京是中国的首都"))["logits"][0].argmax())
    assert Predictor(model, tok).predict_cls_classifier("北京是中国的首都") == want
