"""FlagAI's BERT task heads (BertForSeq2seq, BertForSequenceLabelingCRF,
BertForSequenceLabelingGP) against flagai.model.bert_model on the same weights, saved as
FlagAI's trainer saves them (model.-prefixed, fused query_key_value): logits, loss, the CRF's
Viterbi path, generated ids."""

from __future__ import annotations

import pytest
import torch

from _flagai import TOL, flagai_bert, max_diff, save_flagai
from hubloader.models import (BertForSeq2seq, BertForSequenceClassification,
                              BertForSequenceLabelingCRF, BertForSequenceLabelingGP,
                              BertForTokenClassification)

from flagai.model.predictor.utils import viterbi_decode as flagai_viterbi  # test-only oracle


def _ids(batch=2, seq=9, seed=1, pad_from=(9, 6)):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (batch, seq), generator=g)
    for row, start in enumerate(pad_from[:batch]):
        ids[row, start:] = 0
    return ids


def test_crf_head_logits_loss_and_viterbi_equal_flagai(tmp_path):
    ref, cfg = flagai_bert("BertForSequenceLabelingCRF", class_num=5)
    ours = BertForSequenceLabelingCRF.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")),
                                                    strict=True)
    assert ours.config.num_labels == 5
    ids = _ids()
    seg = torch.zeros_like(ids)
    labels = torch.randint(0, 5, ids.shape)
    with torch.no_grad():
        a = ref(input_ids=ids, segment_ids=seg, labels=labels)
        b = ours(input_ids=ids, segment_ids=seg, labels=labels)
    assert max_diff(a["logits"], b["logits"]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < TOL
    paths = ours.decode(b["logits"], (ids > 0).long())
    for row, n, path in zip(a["logits"], (ids > 0).sum(1).tolist(), paths):
        assert path == flagai_viterbi(row[:n].clone(), ref.crf_layer.trans).tolist()
    assert len(paths[1]) == 6


def test_global_pointer_head_equals_flagai(tmp_path):
    ref, cfg = flagai_bert("BertForSequenceLabelingGP", seed=3, class_num=3, inner_dim=8)
    ours = BertForSequenceLabelingGP.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")),
                                                   strict=True)
    assert ours.config.inner_dim == 8
    ids = _ids(seed=4)
    labels = (torch.rand(2, 3, 9, 9) > 0.9).long()
    with torch.no_grad():
        a = ref(input_ids=ids, segment_ids=torch.zeros_like(ids), labels=labels)
        b = ours(input_ids=ids, segment_ids=torch.zeros_like(ids), labels=labels)
    assert b["logits"].shape == (2, 3, 9, 9)
    assert max_diff(a["logits"] / 1e12, b["logits"] / 1e12) < TOL  # masked spans sit at -1e12
    keep = a["logits"] > -1e6
    assert torch.equal(keep, b["logits"] > -1e6)
    assert max_diff(a["logits"][keep], b["logits"][keep]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < 1e-4 * max(1.0, abs(a["loss"].item()))


def _unilm_batch(seed=5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (2, 10), generator=g)
    seg = torch.tensor([[0] * 5 + [1] * 5, [0] * 4 + [1] * 4 + [0, 0]])
    ids[1, 8:] = 0
    return ids, seg


def test_seq2seq_unilm_logits_and_loss_equal_flagai(tmp_path):
    ref, cfg = flagai_bert("BertForSeq2seq", seed=6)
    ours = BertForSeq2seq.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")), strict=True)
    ids, seg = _unilm_batch()
    labels = ids[:, 1:].contiguous()
    with torch.no_grad():
        a = ref(input_ids=ids, segment_ids=seg, labels=labels)
        b = ours(input_ids=ids, segment_ids=seg, labels=labels)
    assert max_diff(a["logits"], b["logits"]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < TOL
    # the source never sees the target: changing a target token leaves source logits alone
    changed = ids.clone()
    changed[0, 7] = (changed[0, 7] % 59) + 1
    with torch.no_grad():
        c = ours(input_ids=changed, segment_ids=seg)
    assert max_diff(c["logits"][0, :5], b["logits"][0, :5]) < TOL
    assert max_diff(c["logits"][0, 7:], b["logits"][0, 7:]) > 1e-3


def test_seq2seq_greedy_generation_equals_flagai_loop(tmp_path):
    """FlagAI's bert generation loop: append the arg-max with segment 1 until [SEP]."""
    ref, cfg = flagai_bert("BertForSeq2seq", seed=7)
    ours = BertForSeq2seq.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")))
    src = torch.tensor([[2, 11, 12, 13, 14, 3]])
    ids, seg = src.clone(), torch.zeros_like(src)
    with torch.no_grad():
        for _ in range(6):
            nxt = ref(input_ids=ids, segment_ids=seg)["logits"][:, -1].argmax(-1, keepdim=True)
            ids, seg = torch.cat([ids, nxt], 1), torch.cat([seg, torch.ones_like(nxt)], 1)
            if nxt.item() == 3:
                break
        got = ours.generate(src, max_new_tokens=6, eos_token_id=3)
    assert got.tolist() == ids.tolist()


@pytest.mark.parametrize("cls_name,ours_cls", [("BertForSequenceLabeling", BertForTokenClassification),
                                               ("BertForClsClassifier", BertForSequenceClassification)])
def test_flagai_trainer_checkpoints_of_the_plain_heads_load_strictly(tmp_path, cls_name, ours_cls):
    ref, cfg = flagai_bert(cls_name, seed=8, class_num=4)
    ours = ours_cls.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")), strict=True)
    ids = _ids(seed=9, pad_from=(9, 9))
    with torch.no_grad():
        a = ref(input_ids=ids, segment_ids=torch.zeros_like(ids))
        b = ours(input_ids=ids, segment_ids=torch.zeros_like(ids))
    assert max_diff(a["logits"], b["logits"]) < TOL


# FlagAI's class for a (family, task) -> hubloader's
_OURS = {"BertModel": "BertModel", "BertForSeq2seq": "BertForSeq2seq",
         "BertForMaskLM": "BertForMaskedLM", "BertForSequenceLabeling": "BertForTokenClassification",
         "BertForSequenceLabelingCRF": "BertForSequenceLabelingCRF",
         "BertForSequenceLabelingGP": "BertForSequenceLabelingGP",
         "BertForEmbedding": "BertForSentenceEmbedding",
         "BertForClsClassifier": "BertForSequenceClassification",
         "GPT2Model": "GPT2LMHeadModel", "T5Model": "T5ForConditionalGeneration",
         "GLMModel": "GLMModel", "GLMForSeq2Seq": "GLMForSeq2Seq",
         "GLMForSequenceClassification": "GLMForSequenceClassification",
         "VisionTransformer": "ViTForImageClassification", "AQUILAModel": "AquilaForCausalLM"}
# the brief's reading where FlagAI's table differs: -crf and -gp always mean those heads
_CRF_GP = {"sequence-labeling-crf": "BertForSequenceLabelingCRF",
           "sequence-labeling-gp": "BertForSequenceLabelingGP"}


def test_every_flagai_task_of_hubloader_families_resolves():
    from flagai.auto_model.auto_loader import ALL_TASK

    from hubloader.load.flagai_rules import flagai_task
    from hubloader.load.registry import get_model_class, resolve_task

    checked = 0
    for key, (_, flagai_cls) in ALL_TASK.items():
        family, _, task = key.partition("_")
        if family not in ("bert", "gpt2", "t5", "glm", "vit", "aquila"):
            continue
        canonical = resolve_task(flagai_task(task, family), family)
        want = _CRF_GP.get(task, _OURS[flagai_cls])
        assert get_model_class(family, canonical).__name__ == want, key
        checked += 1
    assert checked == 25
    for family in ("bert", "roberta", "glm"):  # FlagAI's docs also say cls
        assert "Classification" in get_model_class(family, resolve_task("cls", family)).__name__


@pytest.mark.parametrize("cls_name,ours_cls,extra", [
    ("BertForSequenceLabelingCRF", BertForSequenceLabelingCRF, dict(class_num=5)),
    ("BertForSequenceLabelingGP", BertForSequenceLabelingGP, dict(class_num=3, inner_dim=8)),
    ("BertForSeq2seq", BertForSeq2seq, {})])
def test_flagai_heads_save_and_load_back(tmp_path, cls_name, ours_cls, extra):
    ref, cfg = flagai_bert(cls_name, seed=14, **extra)
    ours = ours_cls.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")))
    back = ours_cls.from_pretrain(str(ours.save_pretrained(tmp_path / "saved")), strict=True)
    ids, seg = _unilm_batch(seed=15)
    with torch.no_grad():
        assert max_diff(ours(input_ids=ids, segment_ids=seg)["logits"],
                        back(input_ids=ids, segment_ids=seg)["logits"]) < TOL
