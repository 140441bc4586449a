"""Every entry of FlagAI 1.8.4's own ``ALL_TASK`` table, tried as a FlagAI user tries it: a
checkpoint built by the class FlagAI's table names (tiny random config, saved as FlagAI's hub
lays it out: ``<model_dir>/<name>/config.json`` without ``model_type``), loaded through
hubloader's ``AutoLoader`` with FlagAI's arguments (positional ``model_dir``, ``class_num``...),
and a forward whose output equals the FlagAI class's on the same input.

The entries hubloader deliberately leaves out (the AltDiffusion pipelines, CPM-3) must raise
:class:`UnsupportedModelError` saying why.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from _flagai import TINY_FLAGAI_BERT, TINY_GLM, flagai_config, max_diff, perturb, save_flagai
from hubloader import AutoLoader
from hubloader.catalogue.cards import find_card
from hubloader.errors import UnsupportedModelError

from flagai.auto_model.auto_loader import ALL_TASK, MODEL_DICT  # test-only oracle

# the entries hubloader refuses, by design (see hubloader.flagai.refuse_out_of_scope)
STATED_OUT = {"cpm3_lm", "cpm3_train", "diffusion_text2img", "diffusion_m18_text2img"}
# the vision and multimodal entries take images (and CLIP's tokenizer files): their FlagAI call
# and comparison live with those families' tests, and run from here as part of the table
VISION = {"vit_classification", "swinv1_classification", "swinv2_classification",
          "clip_txt_img_matching", "altclip_txt_img_matching", "evaclip_txt_img_matching"}

GPT2 = dict(vocab_size=50, n_positions=32, n_ctx=32, n_embd=16, n_layer=2, n_head=2, n_inner=None,
            activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
            layer_norm_epsilon=1e-5, initializer_range=0.02, checkpoint_activations=False,
            use_cache=False, scale_attn_weights=True)
T5 = dict(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=2,
          num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=128,
          dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0,
          feed_forward_proj="relu", is_encoder_decoder=True, use_cache=False, pad_token_id=0,
          eos_token_id=1, decoder_start_token_id=0, checkpoint_activations=False,
          tie_word_embeddings=True)
OPT = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, ffn_dim=32,
           max_position_embeddings=32, num_attention_heads=2, activation_function="relu",
           word_embed_proj_dim=16, do_layer_norm_before=True, checkpoint_activations=False)
AQUILA = dict(dim=32, n_layers=2, n_heads=4, multiple_of=32, norm_eps=1e-6, vocab_size=50,
              max_seq_len=64, use_cache=False, flash_atten=False, initializer_range=0.02)

# per FlagAI family: its config, the extra AutoLoader arguments a task needs
CONFIGS = {"bert": TINY_FLAGAI_BERT, "gpt2": GPT2, "cpm": GPT2, "t5": T5, "glm": TINY_GLM,
           "alm": TINY_GLM, "opt": OPT, "galactica": OPT, "aquila": AQUILA}
HEAD_ARGS = {"bert_ner-crf": dict(class_num=5), "bert_sequence-labeling-crf": dict(class_num=5),
             "bert_ner-gp": dict(class_num=3, inner_dim=8),
             "bert_sequence-labeling-gp": dict(class_num=3, inner_dim=8),
             "bert_sequence-labeling": dict(class_num=4), "bert_ner": dict(class_num=4),
             "bert_classification": dict(class_num=3), "bert_semantic-matching": dict(class_num=2),
             "glm_classification": dict(class_num=3)}
# FlagAI's table names the plain labelling head for these; the task means CRF / GlobalPointer.
# FlagAI 1.8.4's GalacticaModel cannot be built (it turns its config into a plain dict, then
# reads the dict's json_config), so its checkpoint comes from FlagAI's OPTModel, whose modules
# and key names GalacticaModel copies.
ORACLE_CLASS = {"bert_sequence-labeling-crf": ("flagai.model.bert_model", "BertForSequenceLabelingCRF"),
                "bert_sequence-labeling-gp": ("flagai.model.bert_model", "BertForSequenceLabelingGP"),
                "galactica_lm": ("flagai.model.opt_model", "OPTModel")}


def _model_name(family: str) -> str:
    """The FlagAI model name of ``family`` that hubloader has a card for, as the card spells it."""
    for name, row in MODEL_DICT.items():
        card = find_card(name)
        if row[2] == family and card is not None:
            return card.name
    raise AssertionError(f"no card for any FlagAI {family} model")


def _inputs(family: str, key: str) -> tuple[dict, dict]:
    """(FlagAI's forward kwargs, hubloader's) for one batch."""
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 45, (2, 8), generator=g)  # FlagAI's GPT-2/OPT take 0 for padding
    if family == "bert":
        seg = torch.zeros_like(ids)
        return dict(input_ids=ids, segment_ids=seg), dict(input_ids=ids, segment_ids=seg)
    if family == "t5":
        dec = torch.randint(3, 45, (2, 5), generator=g)
        both = dict(input_ids=ids, decoder_input_ids=dec)
        return both, both
    if family in ("glm", "alm"):
        pos = torch.stack([torch.arange(8).expand(2, 8), torch.zeros(2, 8, dtype=torch.long)], 1)
        sep = torch.tensor([8, 8])
        both = dict(input_ids=ids, position_ids=pos, attention_mask=sep)
        return both, both
    return dict(input_ids=ids), dict(input_ids=ids)


def _oracle(key: str):
    family, _, _ = key.partition("_")
    module, cls_name = ORACLE_CLASS.get(key, ALL_TASK[key][:2])
    cls = getattr(importlib.import_module(module), cls_name)
    cfg = {**CONFIGS[family], **HEAD_ARGS.get(key, {})}
    torch.manual_seed(0)
    ref = perturb(cls(flagai_config(cfg)))
    if family in ("gpt2", "cpm", "opt", "galactica"):  # FlagAI ties the LM head when it loads
        ref.lm_head.weight = ref.transformer.wte.weight
    if key == "bert_masklm":  # as in every BERT checkpoint FlagAI serves (Hugging Face's)
        ref.cls.predictions.decoder.weight = ref.model.embeddings.word_embeddings.weight
    return ref, cfg


def _compared(key: str, theirs, ours) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(FlagAI's output, hubloader's) pairs, where the two name them differently."""
    if key == "bert_lm":  # FlagAI's BertModel: (every layer's states, pooled)
        return [(theirs[0][-1], ours["logits"]), (theirs[1], ours["pooled"])]
    if key == "bert_embedding":  # FlagAI's "logits" are the token states
        return [(theirs["logits"], ours["hidden_states"])]
    if key == "aquila_lm":  # FlagAI's Aquila returns the last position's logits only
        return [(theirs["logits"], ours["logits"][:, -1])]
    return [(theirs["logits"], ours["logits"])]


LOADABLE = sorted(set(ALL_TASK) - STATED_OUT)


def test_the_table_is_flagai_1_8_4s():
    assert len(ALL_TASK) == 40
    assert STATED_OUT | VISION <= set(ALL_TASK)
    assert len(LOADABLE) == 36  # every entry but the four stated out


@pytest.mark.parametrize("key", LOADABLE)
def test_flagai_entry_loads_through_autoloader_and_runs(tmp_path, monkeypatch, key):
    family, _, task = key.partition("_")
    if key in VISION:
        from test_flagai_vision import test_flagai_all_task_entries_load_and_run as run_vision

        run_vision(key, task, _model_name(family), tmp_path, monkeypatch)
        return
    ref, cfg = _oracle(key)
    name = _model_name(family)
    save_flagai(ref, {k: v for k, v in cfg.items() if k not in ("class_num", "inner_dim")},
                tmp_path, name)
    # FlagAI's call: task, model name, model_dir by position, the head's arguments by keyword
    loader = AutoLoader(task, name, str(tmp_path), **HEAD_ARGS.get(key, {}))
    model = loader.get_model()
    theirs, ours = _inputs(family, key)
    with torch.no_grad():
        pairs = _compared(key, ref(**theirs), model(**ours))
    for want, got in pairs:
        assert max_diff(want, got) < 1e-4, key


@pytest.mark.parametrize("key", sorted(STATED_OUT))
def test_stated_out_entries_say_why(tmp_path, key):
    names = {"cpm3_lm": ("lm", "cpm3"), "cpm3_train": ("train", "cpm3-train"),
             "diffusion_text2img": ("text2img", "AltDiffusion"),
             "diffusion_m18_text2img": ("text2img", "AltDiffusion-m18")}
    task, name = names[key]
    with pytest.raises(UnsupportedModelError, match="bmtrain|diffusers") as err:
        AutoLoader(task, name, str(tmp_path))
    assert isinstance(err.value, NotImplementedError)


def test_flagai_galactica_class_cannot_be_built_so_opt_stands_in():
    from flagai.model.galactica_model import GalacticaModel

    with pytest.raises(AttributeError):
        GalacticaModel(flagai_config(OPT))


# -- the other FlagAI habits ----------------------------------------------------------------
def test_flagai_positional_arguments(tmp_path):
    ref, cfg = _oracle("opt_lm")
    save_flagai(ref, cfg, tmp_path, "opt-125m-en")
    # FlagAI's order: task_name, model_name, model_dir, only_download_config, device, torch_dtype
    loader = AutoLoader("lm", "opt-125m-en", str(tmp_path), False, "cpu", torch.float64)
    model = loader.get_model()
    assert next(model.parameters()).dtype == torch.float64 and model.load_report.num_tensors > 0
    fresh = AutoLoader("lm", "opt-125m-en", str(tmp_path), True).get_model()  # config only
    assert fresh.load_report is None or fresh.load_report.num_tensors == 0
    from hubloader.errors import ConfigError

    with pytest.raises(ConfigError, match="both by position and by keyword"):
        AutoLoader("lm", "opt-125m-en", str(tmp_path), False, only_download_config=True)
    with pytest.raises(ConfigError, match="at most 12 positional"):
        AutoLoader("lm", "opt-125m-en", str(tmp_path), *([None] * 10))


def test_from_pretrain_looks_in_flagai_checkpoints_first(tmp_path, monkeypatch):
    """``GLMForSeq2Seq.from_pretrain(model_name='GLM-large-ch')`` as FlagAI's examples call it:
    the model in ./checkpoints/GLM-large-ch/, offline, nothing fetched."""
    from hubloader.models import GLMForSeq2Seq

    ref, cfg = _oracle("glm_seq2seq")
    save_flagai(ref, cfg, tmp_path / "checkpoints", "GLM-large-ch")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "empty-cache"))
    model = GLMForSeq2Seq.from_pretrain(model_name="GLM-large-ch")
    assert model.model_dir.resolve() == (tmp_path / "checkpoints" / "GLM-large-ch").resolve()
    theirs, ours = _inputs("glm", "glm_seq2seq")
    with torch.no_grad():
        assert max_diff(ref(**theirs)["logits"], model(**ours)["logits"]) < 1e-4


def test_cpm_from_its_public_layout_gets_cpm_class_and_tokenizer(tmp_path):
    """CPM-Generate on the hub: transformers' GPT-2 files (``model_type: gpt2``) plus
    ``spiece.model``; the card makes it CPM, so the tokenizer is CPM's."""
    import transformers

    from hubloader.models import CPMLMHeadModel
    from test_flagai_text_tokenizers import _train

    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=200, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()
    d = tmp_path / "CPM-large-ch"
    hf.save_pretrained(d)
    _train(d / "spiece.model", ["北京是中国的首都", "今天天气很好 我们去公园散步吧"], 60)
    loader = AutoLoader("lm", "CPM-large-ch", str(tmp_path))
    assert type(loader.get_model()) is CPMLMHeadModel
    tok = loader.get_tokenizer()
    ids = tok("今天 天气", return_tensors="pt")["input_ids"]
    assert "\u2582" in tok.convert_ids_to_tokens(ids[0].tolist())  # CPM's space piece
    assert tok.decode(ids[0]) == "今天 天气"
    with torch.no_grad():
        assert max_diff(hf(ids).logits, loader.get_model()(ids)["logits"]) < 1e-5
