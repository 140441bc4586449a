"""LoRA adapters made by ``peft`` on transformers models (the test-only oracle), merged by
``from_pretrain(base, adapter=...)`` and by a card's ``adapter`` field: outputs equal
peft + transformers within 1e-5 on a small Llama, a small BERT classifier (its head saved as a
``modules_to_save``) and GPT-2 (Conv1D, ``fan_in_fan_out``); the merged model saves and
reloads to the same outputs; bad adapters are typed errors."""

from __future__ import annotations

import json

import pytest
import torch

from hubloader import BaseModel
from hubloader.load.adapters import AdapterError
from hubloader.models import (BertForSequenceClassification, GPT2LMHeadModel, LlamaForCausalLM,
                              LlamaModel)

import transformers  # noqa: E402  (test-only oracles)

peft = pytest.importorskip("peft")

TOL = 1e-5


def _save_pair(hf, lora_cfg, tmp_path):
    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    hf.save_pretrained(str(base_dir))
    torch.manual_seed(1)
    wrapped = peft.get_peft_model(hf, lora_cfg).eval()
    wrapped.save_pretrained(str(adapter_dir))
    return wrapped, base_dir, adapter_dir


@pytest.fixture
def llama_pair(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    lora = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                           target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                           "down_proj", "embed_tokens"],
                           rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 3})
    return _save_pair(hf, lora, tmp_path)


def test_llama_lora_matches_peft(llama_pair, tmp_path):
    wrapped, base_dir, adapter_dir = llama_pair
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = wrapped(input_ids=ids).logits
        plain = LlamaForCausalLM.from_pretrain(str(base_dir))(ids)["logits"]
        ours = LlamaForCausalLM.from_pretrain(str(base_dir), adapter=str(adapter_dir))
        got = ours(ids)["logits"]
    assert (plain - want).abs().max() > 1e-2  # the adapter matters
    assert (got - want).abs().max() <= TOL
    assert any("embed" in n for n in ours.merged_adapter)
    # a backbone takes the causal LM's adapter too (the head's prefix is dropped)
    backbone = LlamaModel.from_pretrain(str(base_dir), adapter=str(adapter_dir))
    with torch.no_grad():
        ref_hidden = wrapped.base_model.model.model(input_ids=ids).last_hidden_state
        assert (backbone(ids)["hidden_states"] - ref_hidden).abs().max() <= TOL
    # saving the merged model round-trips, without the adapter
    out = ours.save_pretrained(tmp_path / "merged")
    again = LlamaForCausalLM.from_pretrain(str(out))
    with torch.no_grad():
        assert torch.equal(again(ids)["logits"], got)
    assert again.merged_adapter == []


def test_bert_lora_with_a_saved_head_matches_peft(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32, num_labels=3)
    hf = transformers.BertForSequenceClassification(cfg).eval()
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, use_rslora=True,
                           target_modules=["query", "value", "dense"], init_lora_weights=False)
    wrapped, base_dir, adapter_dir = _save_pair(hf, lora, tmp_path)
    with torch.no_grad():  # the classifier is trained along (modules_to_save): change it
        for p in wrapped.base_model.model.classifier.modules_to_save.default.parameters():
            p.add_(0.5)
    wrapped.save_pretrained(str(adapter_dir))
    ids = torch.randint(0, 60, (2, 6), generator=torch.Generator().manual_seed(4))
    mask = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        want = wrapped(input_ids=ids, attention_mask=mask).logits
        ours = BertForSequenceClassification.from_pretrain(str(base_dir), adapter=str(adapter_dir))
        got = ours(input_ids=ids, attention_mask=mask)["logits"]
    assert (got - want).abs().max() <= TOL
    assert any("classifier" in n or "head" in n for n in ours.merged_adapter)


def test_gpt2_conv1d_lora_matches_peft(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=80, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    lora = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn", "c_proj"],
                           fan_in_fan_out=True, init_lora_weights=False)
    wrapped, base_dir, adapter_dir = _save_pair(hf, lora, tmp_path)
    ids = torch.randint(0, 80, (1, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = wrapped(input_ids=ids).logits
        got = GPT2LMHeadModel.from_pretrain(str(base_dir), adapter=str(adapter_dir))(ids)["logits"]
    assert (got - want).abs().max() <= TOL


def test_card_adapter_field(llama_pair, tmp_path, monkeypatch):
    wrapped, base_dir, adapter_dir = llama_pair
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny-lora.md").write_text(
        "---\nname: tiny-lora\ntasks: [text-generation]\nlicense: mit\nauthor: me\n"
        f"architecture: llama\nsource: {base_dir.as_uri()}\nadapter: {adapter_dir}\n---\n\nx\n")
    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(cards))
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "home"))
    ids = torch.tensor([[5, 6, 7, 8]])
    model = BaseModel.from_pretrain("tiny-lora")
    with torch.no_grad():
        assert (model(ids)["logits"] - wrapped(input_ids=ids).logits).abs().max() <= TOL


def test_bad_adapters_are_typed_errors(llama_pair, tmp_path):
    _, base_dir, adapter_dir = llama_pair
    with pytest.raises(AdapterError, match="not a peft adapter"):
        LlamaForCausalLM.from_pretrain(str(base_dir), adapter=str(base_dir))
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    for change, match in (({"use_dora": True}, "DoRA"), ({"peft_type": "IA3"}, "LoRA"),
                          ({"r": 0}, "positive")):
        (adapter_dir / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(AdapterError, match=match):
            LlamaForCausalLM.from_pretrain(str(base_dir), adapter=str(adapter_dir))
    (adapter_dir / "adapter_config.json").write_text(json.dumps(cfg))
    # an adapter for another model size does not fit
    torch.manual_seed(0)
    small = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=97, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1)).eval()
    small.save_pretrained(str(tmp_path / "small"))
    with pytest.raises(AdapterError):
        LlamaForCausalLM.from_pretrain(str(tmp_path / "small"), adapter=str(adapter_dir))
