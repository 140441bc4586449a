"""GLM against FlagAI's own classes (flagai.model.glm_model, tiny random configs, the same
weights saved as FlagAI's hub and THUDM's hub lay them out): every class's outputs and loss,
the memory, blank-infilling ids, strict loads; and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

import flagai.model.glm_model as fg  # test-only oracle (see pyproject's test extra)
from _flagai import GLM_VOCAB, TINY_GLM, TOL, flagai_config, max_diff, perturb, save_flagai
from hubloader import BaseModel
from hubloader.errors import ConfigError, GenerationArgumentError, InputError
from hubloader.models import (GLMForMultiTokenCloze, GLMForSeq2Seq, GLMForSequenceClassification,
                              GLMForSingleTokenCloze, GLMModel)


SOP, EOP, GMASK, MASK = 110, 111, 112, 113


def _ref(cls_name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    cfg = {**TINY_GLM, **extra}
    return perturb(getattr(fg, cls_name)(flagai_config(cfg)), seed), cfg


@pytest.fixture(scope="module")
def glm_dir(tmp_path_factory):
    """FlagAI's GLMModel, saved as FlagAI's hub serves GLM-large-ch."""
    ref, cfg = _ref("GLMModel")
    model_dir = tmp_path_factory.mktemp("checkpoints")
    return ref, save_flagai(ref, cfg, model_dir, "GLM-large-ch")


def _batch(batch=2, seq=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 100, (batch, seq), generator=g)
    pos = torch.stack([torch.arange(seq).expand(batch, seq),
                       torch.randint(0, 3, (batch, seq), generator=g)], dim=1)
    sep = torch.tensor([4, 7][:batch] + [seq] * max(0, batch - 2))
    return ids, pos, sep


def test_glm_model_matches_flagai_with_separation_index_and_memory(glm_dir):
    ref, path = glm_dir
    ours = GLMModel.from_pretrain(str(path))  # no model_type: the class asked for decides
    assert ours.load_report.missing == [] and ours.load_report.unexpected == []
    ids, pos, sep = _batch()
    with torch.no_grad():
        a = ref(input_ids=ids, position_ids=pos, attention_mask=sep, return_memory=True)
        b = ours(ids, pos, sep, return_memory=True)
        assert max_diff(a["logits"], b["logits"]) < TOL
        assert len(a["hidden_states"]) == len(b["hidden_states"]) == 3
        for x, y in zip(a["hidden_states"], b["hidden_states"]):
            assert max_diff(x, y) < TOL
        # three more tokens on top of the memory, causal among themselves
        ids2 = torch.randint(0, 100, (2, 3))
        pos2 = torch.stack([torch.full((2, 3), 11), torch.arange(1, 4).expand(2, 3)], dim=1)
        zero = torch.zeros(2, dtype=torch.long)
        a2 = ref(input_ids=ids2, position_ids=pos2, attention_mask=zero, mems=a["hidden_states"],
                 return_memory=True)
        b2 = ours(ids2, pos2, zero, mems=b["hidden_states"], return_memory=True)
        assert max_diff(a2["logits"], b2["logits"]) < TOL
        assert b2["hidden_states"][0].shape[1] == 13
        # the memory path is the full forward: the last 3 positions agree with one long call
        full = ours(torch.cat([ids, ids2], 1), torch.cat([pos, pos2], 2), _full_mask(sep, 10, 3))
        assert max_diff(full["logits"][:, -3:], b2["logits"]) < TOL


def _full_mask(sep: torch.Tensor, context: int, extra: int) -> torch.Tensor:
    n = context + extra
    m = torch.ones(n, n).tril().expand(len(sep), n, n).clone()
    for i, s in enumerate(sep.tolist()):
        m[i, :context, :s] = 1
        m[i, context:, :context] = 1
    return m[:, None]


@pytest.fixture(scope="module")
def loaded_glm(glm_dir):
    return GLMModel.from_pretrain(str(glm_dir[1]))


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_memory_continues_a_sequence_exactly(loaded_glm, data):
    """Any split of a sequence whose bidirectional part lies before the split: the second part
    on top of the first part's memory gives the logits of one call over the whole."""
    n = data.draw(st.integers(2, 12), label="length")
    split = data.draw(st.integers(1, n - 1), label="split")
    sep = data.draw(st.integers(0, split), label="separation index")
    g = torch.Generator().manual_seed(n * 100 + split * 10 + sep)
    ids = torch.randint(0, 100, (1, n), generator=g)
    pos = torch.stack([torch.arange(n), torch.randint(0, 3, (n,), generator=g)])[None]
    with torch.no_grad():
        full = loaded_glm(ids, pos, torch.tensor([sep]))["logits"]
        head = loaded_glm(ids[:, :split], pos[..., :split], torch.tensor([sep]))
        tail = loaded_glm(ids[:, split:], pos[..., split:], torch.tensor([0]),
                          mems=head["hidden_states"])
    assert max_diff(full[:, split:], tail["logits"]) < TOL
    assert max_diff(full[:, :split], head["logits"]) < TOL


def test_full_mask_and_scalar_separation_match_flagai(glm_dir):
    ref, path = glm_dir
    ours = GLMModel.from_pretrain(str(path))
    ids, pos, sep = _batch()
    mask = _full_mask(sep, 10, 0)
    with torch.no_grad():
        assert max_diff(ref(input_ids=ids, position_ids=pos, attention_mask=mask)["logits"],
                        ours(ids, pos, mask)["logits"]) < TOL
        scalar = torch.tensor(5)
        assert max_diff(ref(input_ids=ids, position_ids=pos, attention_mask=scalar)["logits"],
                        ours(ids, pos, scalar)["logits"]) < TOL
        # labels → FlagAI's loss
        labels = torch.randint(0, GLM_VOCAB, ids.shape)
        la = ref(input_ids=ids, position_ids=pos, attention_mask=sep, labels=labels)["loss"]
        lb = ours(ids, pos, sep, labels=labels)["loss"]
        assert abs(la.item() - lb.item()) < TOL


def test_seq2seq_matches_flagai_logits_and_masked_loss(tmp_path):
    ref, cfg = _ref("GLMForSeq2Seq", seed=2)
    path = save_flagai(ref, cfg, tmp_path, "GLM-large-ch-title-generation", under_module=False)
    ours = GLMForSeq2Seq.from_pretrain(str(path), strict=True)
    ids, pos, sep = _batch(seed=3)
    target = torch.randint(0, GLM_VOCAB, ids.shape)
    loss_mask = (torch.arange(10) >= sep[:, None]).long()
    with torch.no_grad():
        a = ref(input_ids=ids, position_ids=pos, attention_mask=sep, target_ids=target,
                loss_mask=loss_mask)
        b = ours(ids, pos, sep, target_ids=target, loss_mask=loss_mask)
    assert max_diff(a["logits"], b["logits"]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < TOL


def test_single_token_cloze_matches_flagai(tmp_path):
    ref, cfg = _ref("GLMForSingleTokenCloze", seed=4)
    ours = GLMForSingleTokenCloze.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")))
    ids, pos, _ = _batch(seed=5)
    blank = torch.tensor([3, 6])
    targets = torch.tensor([[5, 9, 17], [2, 40, 41]])
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        a = ref(input_ids=ids, position_ids=pos, attention_mask=blank, target_ids=targets,
                labels=labels, mems=None)
        b = ours(ids, pos, blank, target_ids=targets, labels=labels)
    assert max_diff(a["logits"], b["logits"]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < TOL


def test_multi_token_cloze_matches_flagai(tmp_path):
    ref, cfg = _ref("GLMForMultiTokenCloze", seed=6)
    ours = GLMForMultiTokenCloze.from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")))
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 100, (2, 3, 8), generator=g)
    pos = torch.stack([torch.arange(8).expand(2, 3, 8),
                       torch.randint(0, 3, (2, 3, 8), generator=g)], dim=2)
    sep = torch.tensor([[4, 5, 3], [6, 2, 4]])
    targets = torch.randint(0, GLM_VOCAB, (2, 3, 8), generator=g)
    logit_mask = (torch.rand(2, 3, 8, generator=g) > 0.5).long()
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        a = ref(input_ids=ids, position_ids=pos, attention_mask=sep, target_ids=targets,
                logit_mask=logit_mask, labels=labels)
        b = ours(ids, pos, sep, target_ids=targets, logit_mask=logit_mask, labels=labels)
    assert b["logits"].shape == (2, 3)
    assert max_diff(a["logits"], b["logits"]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < TOL


def test_sequence_classification_matches_flagai(tmp_path):
    ref, cfg = _ref("GLMForSequenceClassification", seed=8, class_num=3)
    path = save_flagai(ref, cfg, tmp_path, "GLM-large-ch-cls")
    ours = GLMForSequenceClassification.from_pretrain(str(path), strict=True)
    assert ours.config.num_labels == 3
    ids, pos, sep = _batch(seed=9)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        a = ref(input_ids=ids, position_ids=pos, attention_mask=sep, labels=labels)
        b = ours(ids, pos, sep, labels=labels)
    assert max_diff(a["logits"], b["logits"]) < TOL
    assert abs(a["loss"].item() - b["loss"].item()) < TOL
    # FlagAI's base GLM checkpoint under the classifier: a new head, the backbone loaded
    base, _ = _ref("GLMModel", seed=8)
    fresh = GLMForSequenceClassification.from_pretrain(
        str(save_flagai(base, TINY_GLM, tmp_path, "base")), num_labels=3)
    assert fresh.load_report.newly_initialized and not fresh.load_report.missing
    # ... and the classifier's checkpoint into the base model drops the head, reported
    back = GLMModel.from_pretrain(str(path), strict=True)
    assert back.load_report.discarded == sorted(k for k in ref.state_dict() if "model." not in k)


def test_thudm_layout_sharded_with_glm_prefix_loads_strictly(glm_dir, tmp_path):
    """THUDM's hub repos: glm.-prefixed keys, model_type "glm" with auto_map (never run),
    weights sharded behind pytorch_model.bin.index.json."""
    ref, _ = glm_dir
    out = tmp_path / "glm-10b-chinese"
    out.mkdir()
    state = {f"glm.{k}": v for k, v in ref.state_dict().items()}
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for name, part in shards.items():
        torch.save({k: state[k] for k in part}, out / name)
        weight_map.update({k: name for k in part})
    (out / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    cfg = {**TINY_GLM, "model_type": "glm", "architectures": ["GLMModel"],
           "auto_map": {"AutoConfig": "configuration_glm.GLMConfig",
                        "AutoModel": "modeling_glm.GLMModel"}}
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "modeling_glm.py").write_text("raise SystemExit('remote code ran')\n")
    ours = BaseModel.from_pretrain(str(out), strict=True)
    assert type(ours) is GLMModel and len(ours.load_report.files) == 2
    ids, pos, sep = _batch()
    with torch.no_grad():
        assert max_diff(ref(input_ids=ids, position_ids=pos, attention_mask=sep)["logits"],
                        ours(ids, pos, sep)["logits"]) < TOL


def test_blank_infilling_of_text_equals_flagai_glm_generate_sample(glm_dir, tmp_path):
    """FlagAI's own glm_generate_sample (its tokenizer, its loop; top_k=1 is greedy) against
    the GLM tokenizer plus generate() on the same text and weights."""
    from flagai.data.tokenizer import Tokenizer
    from flagai.model.predictor.utils import glm_generate_sample

    from _flagai import write_sentencepiece
    from hubloader.text.glm import load_glm_tokenizer

    ref, path = glm_dir
    write_sentencepiece(tmp_path / "spiece.model")
    ref_tok = Tokenizer(sp_model_file=str(tmp_path / "spiece.model"), tokenizer_class="sp",
                        tokenizer_model_name="GLM-large-ch",
                        special_tokens_map=str(tmp_path / "special_tokens_map.json"))
    decoded: list[list[int]] = []  # the ids FlagAI decodes last are its output
    ref_tok.DecodeIds = lambda ids: decoded.append(list(ids)) or ""
    tok = load_glm_tokenizer(tmp_path)
    ours = GLMModel.from_pretrain(str(path))
    for text in ("北京是[MASK]的首都，上海[MASK]城市", "今天天气很好 [gMASK]"):
        glm_generate_sample(ref, ref_tok, text, top_k=1, out_seq_length=5)
        want = decoded[-1]
        ids = [tok.get_command_id("cls")] + tok.EncodeAsIds(text)
        if not text.endswith("[gMASK]"):
            ids.append(tok.get_command_id("eos"))
        got = ours.generate(torch.tensor([ids]), max_new_tokens=5,
                            mask_token_ids=[tok.get_command_id(n) for n in ("mask", "sMASK", "gMASK")],
                            sop_token_id=tok.get_command_id("sop"),
                            eos_token_id=tok.get_command_id("eop"))
        assert got[0].tolist() == want and len(want) > len(ids) + 2
        assert got[0, len(ids)] == tok.get_command_id("sop")


def test_sampling_is_reproducible_and_stays_in_top_k(glm_dir):
    _, path = glm_dir
    ours = GLMModel.from_pretrain(str(path), sop_token_id=SOP, eop_token_id=EOP,
                                  gmask_token_id=GMASK)
    ctx = torch.tensor([[1, 30, 31, GMASK], [1, 40, 41, GMASK]])
    runs = [ours.generate(ctx, max_new_tokens=5, do_sample=True, top_k=3,
                          generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and runs[0].shape[0] == 2
    greedy = ours.generate(ctx[:1], max_new_tokens=5)
    assert greedy[0, 4] == SOP


def test_bad_input_and_config_raise_typed_errors(glm_dir, tmp_path):
    _, path = glm_dir
    ours = GLMModel.from_pretrain(str(path))
    with pytest.raises(GenerationArgumentError, match="sop_token_id"):
        ours.generate(torch.tensor([[1, 2, GMASK]]), max_new_tokens=2)
    with pytest.raises(InputError, match="no blank"):
        ours.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, mask_token_ids=[GMASK],
                      sop_token_id=SOP)
    with pytest.raises(InputError, match=r"\[batch, 2, 4\]"):
        ours(torch.tensor([[1, 2, 3, 4]]), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(InputError, match="max_sequence_length"):
        ours(torch.tensor([[1, 2]]), torch.tensor([[[0, 99], [0, 0]]]))
    with pytest.raises(InputError, match="mems"):
        ours(torch.tensor([[1, 2]]), mems=[torch.zeros(1, 2, 32)])
    with pytest.raises(ConfigError, match="relative_encoding"):
        GLMModel.from_pretrain(str(path), relative_encoding=True)
    with pytest.raises(ConfigError, match="class_num"):
        GLMForSequenceClassification.from_pretrain(str(path), class_num=2, num_labels=3)


@pytest.mark.parametrize("cls_name,extra", [("GLMModel", {}),
                                            ("GLMForSequenceClassification", {"class_num": 3})])
def test_saved_glm_is_flagai_layout_and_loads_back(tmp_path, cls_name, extra):
    """save_pretrained writes FlagAI's names: FlagAI's own class loads them strictly."""
    from safetensors.torch import load_file

    ref, cfg = _ref(cls_name, seed=12, **extra)
    ours_cls = {"GLMModel": GLMModel, "GLMForSequenceClassification": GLMForSequenceClassification}
    ours = ours_cls[cls_name].from_pretrain(str(save_flagai(ref, cfg, tmp_path, "m")))
    out = ours.save_pretrained(tmp_path / "saved")
    fresh = getattr(fg, cls_name)(flagai_config(cfg)).eval()
    assert fresh.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    back = ours_cls[cls_name].from_pretrain(str(out), strict=True)
    ids, pos, sep = _batch(seed=13)
    with torch.no_grad():
        assert max_diff(fresh(input_ids=ids, position_ids=pos, attention_mask=sep)["logits"],
                        back(ids, pos, sep)["logits"]) < TOL
