"""Fine-tuning with hubloader.Trainer: a tiny BertForSequenceClassification learns a separable
task; best/ and last/ reload through AutoLoader with their tokenizer; a run resumes from last/
to the same weights as an uninterrupted one; torchrun with two gloo ranks ends with identical
weights on both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hubloader import AutoLoader, BaseModel, ConfigError, InputError
from hubloader.training.trainer import Trainer, accuracy_metric
from trainer_helpers import collate_with, sentences, weights_digest, write_base_model

TRAIN, VALID = sentences(160, seed=1), sentences(64, seed=2)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_base_model(tmp_path_factory.mktemp("trainer") / "tiny-bert")


def _load(base):
    torch.manual_seed(0)  # the new classifier head starts the same in every run
    loader = AutoLoader("text-classification", model_name=str(base), num_labels=2)
    return loader.get_model(), loader.get_tokenizer()


def _trainer(save_dir, **kw):
    opts = dict(epochs=2, batch_size=8, lr=1e-2, warm_up=0.0, save_dir=save_dir, seed=0,
                log_interval=5, progress=False)
    opts.update(kw)
    return Trainer(**opts)


def test_fine_tune_learns_and_best_reloads(base, tmp_path):
    model, tok = _load(base)
    collate = collate_with(tok)
    trainer = _trainer(tmp_path / "out")
    valid = torch.utils.data.DataLoader(VALID, batch_size=16, collate_fn=collate)
    before = trainer.evaluate(model, valid, metric_methods=[("acc", accuracy_metric)])
    state = trainer.train(model, train_dataset=TRAIN, valid_dataset=VALID, collate_fn=collate,
                          metric_methods=[["acc", accuracy_metric]], tokenizer=tok)
    after = trainer.evaluate(model, valid, metric_methods=[("acc", accuracy_metric)])
    assert after["loss"] < before["loss"] / 3
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    assert after["acc"] > 0.9 and state.best_score > 0.9
    assert state.global_step == 2 * 20 and state.epoch == 2

    best = tmp_path / "out" / "best"
    loader = AutoLoader("text-classification", model_name=str(best))
    reloaded, tok2 = loader.get_model(), loader.get_tokenizer()
    assert type(reloaded).__name__ == "BertForSequenceClassification"
    texts = [s for s, _ in VALID]
    assert torch.equal(tok2(texts, padding=True, return_tensors="pt")["input_ids"],
                       tok(texts, padding=True, return_tensors="pt")["input_ids"])
    batch = collate(VALID)
    with torch.no_grad():
        logits = reloaded(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
        again = BaseModel.from_pretrain(str(best))(**{k: v for k, v in batch.items()
                                                       if k != "labels"})["logits"]
    assert torch.equal(logits, again)
    assert (logits.argmax(-1) == batch["labels"]).float().mean() > 0.9
    assert (best / "trainer_state.json").is_file() and (best / "trainer_state.pt").is_file()

    last = AutoLoader("text-classification", model_name=str(tmp_path / "out" / "last"))
    with torch.no_grad():  # last/ is the model as training left it
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        assert torch.equal(last.get_model()(**inputs)["logits"], model(**inputs)["logits"])
    assert not list((tmp_path / "out").glob(".*"))  # no temporary folders left


class _Crash(Exception):
    pass


def _crashing(collate, after):
    calls = [0]

    def crash_after(samples):
        calls[0] += 1
        if calls[0] > after:
            raise _Crash("the power went out")
        return collate(samples)
    return crash_after


def test_resume_from_last_matches_an_uninterrupted_run(base, tmp_path):
    model, tok = _load(base)
    collate = collate_with(tok)
    _trainer(tmp_path / "straight", save_interval=7).train(
        model, train_dataset=TRAIN, collate_fn=collate)
    first, _ = _load(base)  # dies in the first epoch, after last/ was saved at step 14...
    with pytest.raises(_Crash):
        _trainer(tmp_path / "resumed", save_interval=7).train(
            first, train_dataset=TRAIN, collate_fn=_crashing(collate, after=17))
    saved = json.loads((tmp_path / "resumed" / "last" / "trainer_state.json").read_text())
    assert (saved["global_step"], saved["epoch"], saved["batches_in_epoch"]) == (14, 0, 14)
    second, _ = _load(base)  # ...and a fresh model picks up from last/
    state = _trainer(tmp_path / "resumed", save_interval=7).train(
        second, train_dataset=TRAIN, collate_fn=collate)
    assert state.global_step == 40
    assert weights_digest(second) == weights_digest(model)
    # the tokenizer beside the model's own files travels with every checkpoint
    assert (tmp_path / "resumed" / "last" / "vocab.txt").is_file()


def test_bad_arguments():
    with pytest.raises(ConfigError, match="env_type"):
        Trainer(env_type="deepspeed")
    with pytest.raises(ConfigError, match="not both"):
        Trainer(fp16=True, bf16=True)
    with pytest.raises(ConfigError, match="batch_size"):
        Trainer(batch_size=0)
    with pytest.raises(ConfigError, match="torchrun"):
        Trainer(env_type="pytorchDDP", save_dir=None).train(torch.nn.Linear(2, 2),
                                                            train_dataset=[1])


def test_batches_must_be_dicts_with_a_loss(base, tmp_path):
    model, tok = _load(base)
    trainer = _trainer(None, epochs=1)
    with pytest.raises(InputError, match="dict"):
        trainer.train(model, train_dataset=TRAIN, collate_fn=lambda s: [x for x, _ in s])
    no_labels = lambda s: tok([x for x, _ in s], padding=True, return_tensors="pt")  # noqa: E731
    with pytest.raises(InputError, match="no 'loss'"):
        trainer.train(model, train_dataset=TRAIN, collate_fn=no_labels)


def test_epochs_zero_only_evaluates(base):
    model, tok = _load(base)
    before = weights_digest(model)
    state = _trainer(None, epochs=0).train(model, train_dataset=TRAIN, valid_dataset=VALID,
                                           collate_fn=collate_with(tok),
                                           metric_methods=[["acc", accuracy_metric]])
    assert state.global_step == 0 and weights_digest(model) == before
    assert len(state.history) == 1 and 0.0 <= state.history[0]["acc"] <= 1.0


def test_bf16_autocast_trains(base, tmp_path):
    model, tok = _load(base)
    state = _trainer(None, epochs=1, bf16=True).train(
        model, train_dataset=TRAIN[:32], valid_dataset=VALID[:16], collate_fn=collate_with(tok))
    assert state.global_step == 4 and torch.isfinite(torch.tensor(state.history[-1]["loss"]))


def test_torchrun_two_ranks_end_identical(base, tmp_path):
    script = Path(__file__).parent / "trainer_ddp_script.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HUBLOADER_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_port=0", "--rdzv_backend=c10d", "--rdzv_endpoint=127.0.0.1:0",
         str(script), str(base), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = (tmp_path / "rank0.txt").read_text().split()
    r1 = (tmp_path / "rank1.txt").read_text().split()
    assert r0[0] == r1[0]  # identical weights on both ranks
    assert r0[1] == r1[1] == "40"  # 160 samples / 2 ranks / batch 4 = 20 steps per epoch
    assert float(r0[2]) > 0.9
    ckpt = tmp_path / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best", "last"]
    written = json.loads((ckpt / "last" / "trainer_state.json").read_text())["trainer"]
    assert (written["rank"], written["world_size"]) == (0, 2)  # rank 0 wrote it
    reloaded = AutoLoader("text-classification", model_name=str(ckpt / "last")).get_model()
    assert weights_digest(reloaded) == r0[0]


def test_autoloader_save_pretrained_keeps_the_tokenizer(base, tmp_path):
    loader = AutoLoader("text-classification", model_name=str(base), num_labels=2)
    out = loader.save_pretrained(tmp_path / "saved")
    again = AutoLoader("text-classification", model_name=str(out))
    texts = [s for s, _ in VALID[:4]]
    batch = loader.get_tokenizer()(texts, padding=True, return_tensors="pt")
    assert torch.equal(again.get_tokenizer()(texts, padding=True, return_tensors="pt")["input_ids"],
                       batch["input_ids"])
    with torch.no_grad():
        assert torch.equal(again.get_model()(**batch)["logits"],
                           loader.get_model()(**batch)["logits"])
    from hubloader.packages.validation import validate

    assert not validate(out).warnings  # the card lists the tokenizer's files too
