"""``hubloader run text-generation`` on a small Llama chat model streams its text; the family's
tasks and cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hubloader.commands.run import run_task
from hubloader.models import LlamaForCausalLM
from hubloader.load.registry import get_model_class
from hubloader.text.streaming import TextStreamer
from hubloader.text.tokenizer import load_tokenizer

import transformers  # noqa: E402  (test-only oracle)

REPO = Path(__file__).resolve().parents[1]
CORPUS = ["once upon a time there was a llama", "the llama loaded by name and ran fast",
          "北京的羊驼 and the tokens flowed 🦙"] * 10


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory) -> Path:
    """A TinyLlama-shaped chat model: SentencePiece BPE tokenizer.model and a small Llama (no
    byte fallback: a random model would emit bytes that form no character)."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("tinychat")
    (d / "c.txt").write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(d / "c.txt"), model_prefix=str(d / "tokenizer"),
                                   vocab_size=140, model_type="bpe", byte_fallback=False,
                                   character_coverage=1.0, minloglevel=2)
    for junk in ("c.txt", "tokenizer.vocab"):
        (d / junk).unlink()
    (d / "tokenizer_config.json").write_text(json.dumps({
        "legacy": False, "eos_token": "</s>", "bos_token": "<s>",
        "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
                         "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant] "
                         "{% endif %}"}))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=140, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, initializer_range=0.2,
                                   bos_token_id=1, eos_token_id=2)
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(d))
    return d


def test_run_streams_pieces_that_add_up_to_the_text(chat_dir):
    pieces: list[str] = []
    result = run_task("text-generation", str(chat_dir), "once upon a", max_new_tokens=12,
                      on_text=pieces.append)
    assert len(pieces) >= 3  # token by token, not once at the end
    assert "".join(pieces) == result["generated_text"]
    assert result["model"] == "LlamaForCausalLM"


def test_cli_prints_the_streamed_continuation(chat_dir):
    env = {**os.environ, "HUBLOADER_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run([sys.executable, "-m", "hubloader.cli", "run", "text-generation",
                           str(chat_dir), "the llama", "--max-new-tokens", "8"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    # with eos 2 the model may stop early; the text is what generate() gives until then
    tok, model = load_tokenizer(chat_dir), LlamaForCausalLM.from_pretrain(str(chat_dir))
    ids = torch.tensor([tok.encode("the llama")])
    want = tok.decode(model.generate(ids, max_new_tokens=8)[0, ids.shape[1]:],
                      skip_special_tokens=True)
    assert proc.stdout == want + "\n"


def test_run_chat_sends_the_input_through_the_chat_template(chat_dir):
    tok, model = load_tokenizer(chat_dir), LlamaForCausalLM.from_pretrain(str(chat_dir))
    prompt = tok.apply_chat_template([{"role": "user", "content": "the llama"}],
                                     add_generation_prompt=True)
    assert prompt == "<s>[user] the llama</s>[assistant] "
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    assert int(ids[0, 0]) == tok.token_to_id("<s>") and int(ids[0, 1]) != int(ids[0, 0])
    want = model.generate(ids, max_new_tokens=6)[0].tolist()
    result = run_task("lm", str(chat_dir), "the llama", max_new_tokens=6, chat=True)
    assert result["token_ids"] == want  # one BOS: the template's


def test_streamer_holds_back_half_characters():
    class ByteTok:  # ids are UTF-8 bytes: a character may take several steps
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", errors="replace")

    pieces: list[str] = []
    s = TextStreamer(ByteTok(), pieces.append)
    s.put(torch.tensor([[104, 105]]))  # the prompt, skipped
    for b in "a北🦙".encode():
        s.put(torch.tensor([b]))
    s.end()
    assert pieces == ["a", "北", "🦙"]


@pytest.mark.parametrize("task,model_type,cls_name", [
    ("lm", "llama", "LlamaForCausalLM"), ("text-generation", "mistral", "MistralForCausalLM"),
    ("causal-lm", "qwen2", "Qwen2ForCausalLM"), ("lm", "aquila", "AquilaForCausalLM"),
    ("base", "qwen2", "Qwen2Model")])
def test_task_table(task, model_type, cls_name):
    assert get_model_class(model_type, task).__name__ == cls_name


@pytest.mark.parametrize("name,license_word", [("Qwen2.5-0.5B-Instruct", "Apache-2.0"),
                                               ("TinyLlama-1.1B-Chat-v1.0", "Apache-2.0"),
                                               ("Aquila-7B", "BAAI Aquila")])
def test_cards_name_their_licence_and_are_served(monkeypatch, name, license_word):
    from hubloader.catalogue.cards import model_info
    from hubloader.load.registry import resolve_task

    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(REPO / "model_cards"))
    card = model_info(name)
    assert card.path is not None and card.path.parent == REPO / "model_cards"
    assert license_word in card.license
    assert card.source and card.source.startswith("hf://")
    assert resolve_task("lm", card.architecture) == "text-generation"
