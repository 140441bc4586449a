"""GLM-10b-ch by its FlagAI name, fetched through the card from THUDM's hub layout (served by
the project's hub-protocol server on 127.0.0.1 to the real huggingface_hub client): sharded
glm.-prefixed weights load strictly into hubloader's own class, the repository's code is neither
fetched nor run, and the tokenizer is GLM's."""

from __future__ import annotations

import io
import json

import pytest
import torch

from _flagai import TINY_GLM, TOL, flagai_config, max_diff, perturb, write_sentencepiece
from hubloader import AutoLoader
from hubloader.text.glm import GLMTokenizer

import flagai.model.glm_model as fg  # test-only oracle (see pyproject's test extra)


def _pickle(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture
def thudm_repo(hub, tmp_path):
    torch.manual_seed(0)
    ref = perturb(fg.GLMModel(flagai_config(TINY_GLM)))
    state = {f"glm.{k}": v for k, v in ref.state_dict().items()}
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    files = {name: _pickle({k: state[k] for k in part}) for name, part in shards.items()}
    files["pytorch_model.bin.index.json"] = json.dumps(
        {"weight_map": {k: n for n, part in shards.items() for k in part}}).encode()
    files["config.json"] = json.dumps({
        **TINY_GLM, "model_type": "glm", "architectures": ["GLMForConditionalGeneration"],
        "auto_map": {"AutoConfig": "configuration_glm.GLMConfig",
                     "AutoModelForSeq2SeqLM": "modeling_glm.GLMForConditionalGeneration"}}).encode()
    files["modeling_glm.py"] = b"raise SystemExit('remote code ran')\n"
    files["tokenizer_config.json"] = json.dumps(
        {"tokenizer_class": "GLMChineseTokenizer",
         "auto_map": {"AutoTokenizer": ["tokenization_glm.GLMChineseTokenizer", None]}}).encode()
    files["cog-pretrain.model"] = write_sentencepiece(tmp_path / "cog-pretrain.model").read_bytes()
    hub.add_commit("THUDM/glm-10b-chinese", files)
    return ref


def test_glm_10b_ch_by_name_from_thudm_layout(hub_env, hub, thudm_repo, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    loader = AutoLoader("title-generation", model_name="glm-10b-CH")
    model = loader.get_model()
    assert type(model).__name__ == "GLMForSeq2Seq" and len(model.load_report.files) == 2
    assert model.load_report.missing == model.load_report.unexpected == []
    fetched = sorted(p.name for p in loader.model_dir.iterdir())
    assert "modeling_glm.py" not in fetched and "cog-pretrain.model" in fetched
    tok = loader.get_tokenizer()
    assert isinstance(tok, GLMTokenizer) and model.config.gmask_token_id == tok.get_command_id("gMASK")
    ids = torch.randint(0, 100, (2, 9))
    pos = torch.stack([torch.arange(9).expand(2, 9), torch.zeros(2, 9, dtype=torch.long)], dim=1)
    sep = torch.tensor([3, 6])
    with torch.no_grad():
        want = thudm_repo(input_ids=ids, position_ids=pos, attention_mask=sep)["logits"]
        assert max_diff(want, model(ids, pos, sep)["logits"]) < TOL
