"""FlagAI's README examples (GLM title generation, RoBERTa NER with the CRF and GlobalPointer
heads, semantic matching) run with only their imports changed to hubloader, offline, from
``./checkpoints/`` laid out as FlagAI lays it out (tiny random weights); and the Predictor's
decoding against FlagAI's own functions on the same weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _flagai import (TINY_GLM, bert_checkpoint, flagai_bert, flagai_config, perturb,
                     save_flagai, write_sentencepiece)
from hubloader import AutoLoader, Predictor
from hubloader.errors import ConfigError

import flagai.model.glm_model as fg  # test-only oracle (see pyproject's test extra)
from flagai.model.predictor import utils as futils

EXAMPLES = Path(__file__).parent / "flagai_examples"
NER_TEXT = "6月15日，河南省文物考古研究所曹操高陵文物队公开发表声明承认：“从来没有说过出土的珠子是墓主人的"
PAIRS = "后悔了吗你有没有打开自动横屏开启移动数据我觉得很聪明是这么"


@pytest.fixture(scope="module")
def flagai_dir(tmp_path_factory):
    """A working directory holding ./checkpoints/ as FlagAI lays it out."""
    work = tmp_path_factory.mktemp("flagai-user")
    root = work / "checkpoints"
    torch.manual_seed(0)
    glm = perturb(fg.GLMForSeq2Seq(flagai_config(TINY_GLM)))
    write_sentencepiece(save_flagai(glm, TINY_GLM, root, "GLM-large-ch") / "cog-pretrain.model")
    bert_checkpoint(root, extra_text=NER_TEXT + PAIRS)
    return work


def _hubloader_version(script: Path) -> str:
    """The FlagAI script with only its imports changed."""
    text = script.read_text(encoding="utf-8")
    changed = (text.replace("from flagai.auto_model.auto_loader import AutoLoader",
                            "from hubloader import AutoLoader")
                   .replace("from flagai.model.predictor.predictor import Predictor",
                            "from hubloader import Predictor"))
    assert changed.count("hubloader") == 2 and "flagai" not in changed.replace("FlagAI", "")
    return changed


def test_flagai_readme_examples_run_with_only_the_import_changed(flagai_dir, tmp_path):
    runs = [("glm_title_generation.py", []), ("roberta_ner.py", ["ner"]),
            ("roberta_ner.py", ["ner-crf"]), ("roberta_ner.py", ["ner-gp"]),
            ("semantic_matching.py", [])]
    lines = []
    for i, (name, args) in enumerate(runs):
        script = tmp_path / f"{i}_{name}"
        script.write_text(_hubloader_version(EXAMPLES / name), encoding="utf-8")
        header = f">>> {name} {args}"
        lines.append(f"sys.argv = [{str(script)!r}] + {args!r}; print({header!r}); "
                     f"runpy.run_path({str(script)!r}, run_name='__main__')")
    env = {**os.environ, "HUBLOADER_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", "import runpy, sys\n" + "\n".join(lines)],
                          cwd=flagai_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.split(">>> ")[1:]
    assert [o.splitlines()[0] for o in out] == [f"{n} {a}" for n, a in runs]
    glm, ner, crf, gp, matching = (o.splitlines()[1:] for o in out)
    assert len(glm) == 2 and all(isinstance(s, str) for s in glm)
    for result in (ner, crf, gp):
        assert len(result) == 1 and result[0].startswith("result is {")
    assert len(matching) == 3 and set(matching) <= {"0", "1"}


def test_autoloader_takes_flagai_arguments(flagai_dir, monkeypatch):
    monkeypatch.chdir(flagai_dir)
    monkeypatch.setenv("HUBLOADER_OFFLINE", "1")
    crf = AutoLoader("sequence-labeling-crf", model_name="roberta-base-ch", target_size=7)
    model = crf.get_model()
    assert type(model).__name__ == "BertForSequenceLabelingCRF" and model.config.num_labels == 7
    gp = AutoLoader("ner-gp", "RoBERTa-base-ch", "./checkpoints/", class_num=3, inner_dim=16)
    assert gp.get_model().global_pointer.inner_dim == 16
    lm = AutoLoader("lm", model_name="RoBERTa-base-ch")
    assert type(lm.get_model()).__name__ == "BertModel"
    title = AutoLoader("title-generation", model_name="RoBERTa-base-ch", use_cache=True,
                       low_cpu_mem_usage=False)
    assert type(title.get_model()).__name__ == "BertForSeq2seq"
    assert title.get_model().load_report.newly_initialized == []  # the MLM head is reused
    fresh = AutoLoader("cls", model_name="RoBERTa-base-ch", load_pretrain_params=False,
                       class_num=4)
    assert fresh.get_model().load_report is None and fresh.get_model().config.num_labels == 4
    loaded = AutoLoader("cls", model_name="RoBERTa-base-ch", class_num=4).get_model()
    emb = "backbone.embeddings.word_embeddings.weight"
    assert not torch.equal(fresh.get_model().state_dict()[emb], loaded.state_dict()[emb])
    glm = AutoLoader("poetry", model_name="GLM-large-ch", inference_mode=False,
                     model_max_length=64)
    assert glm.get_model().training and glm.get_tokenizer().model_max_length == 64
    # a fine-tuned folder named <model>-<task>, config.json without model_type
    import shutil

    shutil.copytree(flagai_dir / "checkpoints/GLM-large-ch",
                    flagai_dir / "checkpoints/GLM-large-ch-title-generation", dirs_exist_ok=True)
    tuned = AutoLoader("title-generation", model_name="GLM-large-ch-title-generation",
                       model_dir="./checkpoints/")
    assert type(tuned.get_model()).__name__ == "GLMForSeq2Seq"
    assert tuned.model_dir.name == "GLM-large-ch-title-generation"
    for bad, name in ((dict(lora_dir="./lora"), "lora_dir"), (dict(all_devices=True), "all_devices"),
                      (dict(fp16=True), "fp16"), (dict(class_num=2, target_size=3), "target_size"),
                      (dict(use_cache="yes"), "use_cache")):
        with pytest.raises(ConfigError, match=name):
            AutoLoader("lm", model_name="GLM-large-ch", **bad)


def test_from_pretrain_takes_flagai_arguments_too(flagai_dir):
    """FlagAI's seed: ``Class.from_pretrain(download_path=..., model_name=..., **kwargs)``."""
    from hubloader.models import BertForSequenceLabelingCRF, GLMForSeq2Seq

    root = str(flagai_dir / "checkpoints")
    crf = BertForSequenceLabelingCRF.from_pretrain(download_path=root, model_name="RoBERTa-base-ch",
                                                   class_num=7)
    assert crf.config.num_labels == 7 and crf.load_report.newly_initialized
    loaded = GLMForSeq2Seq.from_pretrain(download_path=root, model_name="GLM-large-ch")
    fresh = GLMForSeq2Seq.from_pretrain(download_path=root, model_name="GLM-large-ch",
                                        only_download_config=True)
    assert fresh.load_report is None and not fresh.training
    assert not torch.equal(fresh.word_embeddings.weight, loaded.word_embeddings.weight)
    with pytest.raises(ConfigError, match="model_max_length"):
        GLMForSeq2Seq.from_pretrain(download_path=root, model_name="GLM-large-ch",
                                    model_max_length=10)


@pytest.mark.parametrize("flag", [dict(only_download_config=True), dict(load_pretrain_params=False)])
def test_without_weights_only_config_and_tokenizer_are_fetched(tmp_path, monkeypatch, flag):
    """Against a served model: config.json and tokenizer files arrive, the weights do not."""
    src = tmp_path / "served" / "GLM-large-ch"
    torch.manual_seed(0)
    glm = perturb(fg.GLMModel(flagai_config(TINY_GLM)))
    save_flagai(glm, TINY_GLM, src.parent, src.name)
    write_sentencepiece(src / "cog-pretrain.model")
    monkeypatch.setenv("HUBLOADER_ENDPOINT", (tmp_path / "served").as_uri())
    loader = AutoLoader("lm", model_name="GLM-large-ch", model_dir=str(tmp_path / "ckpt"), **flag)
    got = sorted(p.name for p in loader.model_dir.iterdir())
    assert "config.json" in got and "cog-pretrain.model" in got and "pytorch_model.bin" not in got
    assert loader.get_model().config.gmask_token_id == loader.get_tokenizer().get_command_id("gMASK")


def test_glm_beam_search_equals_flagai(flagai_dir, monkeypatch):
    """FlagAI's glm_beam_search and the Predictor's, on the same weights and prompt ids."""
    monkeypatch.chdir(flagai_dir)
    loader = AutoLoader("title-generation", model_name="GLM-large-ch")
    model, tok = loader.get_model(), loader.get_tokenizer()
    ref = fg.GLMForSeq2Seq(flagai_config(TINY_GLM)).eval()
    ref.load_state_dict(torch.load(flagai_dir / "checkpoints/GLM-large-ch/pytorch_model.bin")["module"])

    class _Commands:  # what glm_beam_search reads from FlagAI's tokenizer
        command_name_map = tok.command_name_map
        CommandTokenIds = staticmethod(tok.CommandTokenIds)

    for text in ("北京是中国的首都", "深度学习模型需要大量的数据"):
        sample = tok.encode_plus(text)
        want = futils.glm_beam_search(ref, _Commands(), torch.tensor([sample["input_ids"]]),
                                      torch.tensor([sample["position_ids"]]), torch.tensor([0]),
                                      beam_size=3, out_max_length=10)
        got = Predictor(model, tok).predict_generate_beamsearch(text, out_max_length=10, beam_size=3)
        assert got == tok.DecodeIds(list(want))


def test_bert_seq2seq_beam_search_equals_flagai(tmp_path):
    ref, cfg = flagai_bert("BertForSeq2seq", seed=11)
    path = save_flagai(ref, cfg, tmp_path, "m")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from hubloader.models import BertForSeq2seq
    from hubloader.text.tokenizer import load_tokenizer

    model, tok = BertForSeq2seq.from_pretrain(str(path)), load_tokenizer(path, model_type="bert")
    text = "w3 w17 w4 w9 w30"
    ids = np.array(tok.encode(text)).reshape(1, -1)
    want = futils.bert_beam_search(ref, ids, word2ix={"[SEP]": 3}, beam_size=3, out_max_length=8)
    got = Predictor(model, tok).predict_generate_beamsearch(text, out_max_length=8, beam_size=3)
    assert got == tok.decode(list(want))
