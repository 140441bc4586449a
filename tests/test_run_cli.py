"""``hubloader run TASK MODEL INPUT`` on small local models (text generation, seq2seq, image
classification), the task table, and bad input through the command."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hubloader.commands import run as run_cmd
from hubloader.errors import InputError, UnknownTaskError
from hubloader.load.registry import get_model_class, resolve_task
from hubloader.text.tokenizer import load_tokenizer

import transformers  # noqa: E402  (test-only oracle)

CORPUS = ["once upon a time there was a model", "the model loaded by name and ran fast",
          "time after time the tokens flowed"] * 10


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hubloader")
    run_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer

    d = tmp_path_factory.mktemp("gpt2")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    bpe.save_model(str(d))
    n = bpe.get_vocab_size()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=n, n_positions=64, n_embd=16, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    d = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=24, image_size=16, patch_size=8,
                                 id2label={0: "cat", 1: "dog", 2: "bird"},
                                 label2id={"cat": 0, "dog": 1, "bird": 2})
    transformers.ViTForImageClassification(cfg).save_pretrained(str(d))
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(str(d))
    img = d / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(img)
    return d


def test_run_text_generation_prints_the_greedy_continuation(gpt2_dir, capsys):
    from hubloader.models import GPT2LMHeadModel

    prompt = "once upon a"
    assert _cli(["run", "lm", str(gpt2_dir), prompt, "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    tok, model = load_tokenizer(gpt2_dir), GPT2LMHeadModel.from_pretrain(str(gpt2_dir))
    ids = torch.tensor([tok.encode(prompt)])
    expected = tok.decode(model.generate(ids, max_new_tokens=6)[0, ids.shape[1]:],
                          skip_special_tokens=True)
    assert printed == expected


def test_run_json_sampling_is_seeded(gpt2_dir, capsys):
    argv = ["run", "poetry-generation", str(gpt2_dir), "the model", "--sample", "--top-p", "0.9",
            "--seed", "3", "--max-new-tokens", "5", "--json"]
    _cli(argv)
    first = json.loads(capsys.readouterr().out)
    _cli(argv)
    second = json.loads(capsys.readouterr().out)
    assert first == second
    assert first["task"] == "text-generation" and first["model"] == "GPT2LMHeadModel"
    assert len(first["token_ids"]) <= len(load_tokenizer(gpt2_dir).encode("the model")) + 5


def test_run_image_classification(vit_dir, capsys):
    from hubloader.models import ViTForImageClassification
    from hubloader.vision.preprocessing import load_image_processor

    assert _cli(["run", "classification", str(vit_dir), str(vit_dir / "photo.png"),
                 "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    model = ViTForImageClassification.from_pretrain(str(vit_dir))
    with torch.no_grad():
        probs = model(**load_image_processor(vit_dir)(vit_dir / "photo.png"))["logits"][0].softmax(-1)
    best = int(probs.argmax())
    assert len(lines) == 2
    label, score = lines[0].split("\t")
    assert label == ["cat", "dog", "bird"][best]
    assert abs(float(score) - float(probs[best])) < 1e-4


def test_run_bad_input(vit_dir, gpt2_dir, tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("plain text")
    with pytest.raises(InputError, match="not an image"):
        _cli(["run", "image-classification", str(vit_dir), str(not_image)])
    with pytest.raises(InputError, match="no image file"):
        _cli(["run", "classification", str(vit_dir), "a sentence, not a path"])
    with pytest.raises(UnknownTaskError, match="cannot serve"):
        _cli(["run", "ner", str(gpt2_dir), "some text"])
    with pytest.raises(UnknownTaskError, match="unknown task"):
        _cli(["run", "poetry-writing", str(gpt2_dir), "some text"])


# FlagAI's task names and the Hugging Face pipeline names, with the family serving them
TASK_TABLE = [
    ("title-generation", "t5", "T5ForConditionalGeneration"),
    ("seq2seq", "t5", "T5ForConditionalGeneration"),
    ("text2text-generation", "t5", "T5ForConditionalGeneration"),
    ("summarization", "t5", "T5ForConditionalGeneration"),
    ("poetry-generation", "gpt2", "GPT2LMHeadModel"),
    ("lm", "gpt2", "GPT2LMHeadModel"),
    ("text-generation", "gpt2", "GPT2LMHeadModel"),
    ("ner", "bert", "BertForTokenClassification"),
    ("semantic-matching", "bert", "BertForSequenceClassification"),
    ("classification", "bert", "BertForSequenceClassification"),
    ("classification", "vit", "ViTForImageClassification"),
    ("classification", "resnet", "ResNetForImageClassification"),
    ("image-classification", "vit", "ViTForImageClassification"),
    ("embedding", "bert", "BertForSentenceEmbedding"),
    ("masklm", "bert", "BertForMaskedLM"),
    ("image-feature-extraction", "resnet", "ResNetModel"),
    ("image-feature-extraction", "vit", "ViTModel"),
]


@pytest.mark.parametrize("task,model_type,cls_name", TASK_TABLE)
def test_task_table(task, model_type, cls_name):
    assert get_model_class(model_type, task).__name__ == cls_name


def test_families_refuse_tasks_they_cannot_serve():
    for task, model_type in [("lm", "bert"), ("seq2seq", "gpt2"), ("ner", "vit"),
                             ("masklm", "t5"), ("text-generation", "resnet")]:
        with pytest.raises(UnknownTaskError, match="cannot serve"):
            resolve_task(task, model_type)


REPO_CARDS = __import__("pathlib").Path(__file__).resolve().parents[1] / "model_cards"


@pytest.fixture
def repo_cards(monkeypatch):
    """This checkout's cards first (an editable install may map the package elsewhere)."""
    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(REPO_CARDS))


FAMILY_CARDS = ["gpt2", "t5-small", "vit-base-patch16-224", "resnet-50", "GPT2-base-ch",
                "T5-base-ch", "T5-base-en"]


def test_family_cards_parse_and_are_served(repo_cards):
    from hubloader.catalogue.cards import model_info
    from hubloader.load.registry import model_types

    for name in FAMILY_CARDS:
        card = model_info(name)
        assert card.path is not None and card.path.parent == REPO_CARDS
        assert card.architecture in model_types(), name
        assert card.source and card.source.startswith("hf://"), name
        for task in card.tasks:  # every task a card claims, its family serves
            resolve_task(task, card.architecture)


def test_ls_by_task_lists_the_families(repo_cards, capsys):
    from hubloader.commands import models as models_cmd

    parser = argparse.ArgumentParser(prog="hubloader")
    models_cmd.register(parser.add_subparsers(dest="command"))
    for task, expected in [("lm", {"gpt2", "GPT2-base-ch"}),
                           ("title-generation", {"t5-small", "T5-base-ch", "T5-base-en"}),
                           ("image-classification", {"vit-base-patch16-224", "resnet-50"})]:
        args = parser.parse_args(["ls", "--task", task])
        assert args.func(args) == 0
        listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
        assert expected <= listed, (task, listed)
        assert "gpt2" not in listed or task == "lm"
