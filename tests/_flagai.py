"""The test-only FlagAI oracle (``pip install --no-deps flagai==1.8.4``): tiny random FlagAI
models, saved as FlagAI's model hub lays them out (``<model_dir>/<name>/config.json`` without
``model_type``, ``pytorch_model.bin`` with the state dict under ``"module"``)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

# FlagAI logs through its own handlers and prints at import; keep the test output readable
logging.getLogger("flagai").setLevel(logging.ERROR)
os.environ.setdefault("ENV_TYPE", "pytorch")

TOL = 1e-5
GLM_VOCAB = 120
TINY_GLM = dict(num_layers=2, vocab_size=GLM_VOCAB, hidden_size=32, num_attention_heads=4,
                embedding_dropout_prob=0.1, attention_dropout_prob=0.1, output_dropout_prob=0.1,
                max_sequence_length=64, max_memory_length=0, checkpoint_activations=False,
                checkpoint_num_layers=1, parallel_output=True, relative_encoding=False,
                block_position_encoding=True, output_predict=True, spell_length=None,
                spell_func="lstm", attention_scale=1.0)


def flagai_config(data: dict):
    from flagai.model.base_model import change_json_to_cls

    return change_json_to_cls(dict(data))


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its initial value (layer norms start at exactly 1 and 0, which
    would hide a swapped or missing norm)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def save_flagai(model: torch.nn.Module, config: dict, model_dir: Path, name: str, *,
                under_module: bool = True) -> Path:
    """Write ``model`` as FlagAI's hub serves it: ``<model_dir>/<name>/``."""
    out = Path(model_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    torch.save({"module": state} if under_module else state, out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


CORPUS = ["北京是中国的首都，也是一座历史悠久的城市。", "今天天气很好，我们去公园散步吧。",
          "上海是中国最大的城市之一，经济发达。", "深度学习模型需要大量的数据和计算资源。",
          "Hello world, this is GLM speaking.", "the quick brown fox jumps over the lazy dog"]


def write_sentencepiece(path: Path, *, vocab_size: int = 110) -> Path:
    """Train a tiny SentencePiece Unigram model at ``path`` (GLM-large-ch's cog-pretrain.model
    stand-in)."""
    import sentencepiece as spm

    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.parent / "corpus.txt"
    text.write_text("\n".join(CORPUS * 20), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(path.with_suffix("")),
                                   vocab_size=vocab_size, hard_vocab_limit=False,
                                   model_type="unigram", character_coverage=1.0, minloglevel=2)
    text.unlink()
    path.with_suffix(".vocab").unlink()
    return path


EN_VOCAB = (["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            + list("abcdefghijklmnopqrstuvwxyz.,!?") + ["the", "quick", "brown", "fox", "##s",
                                                         "##ing", "jump", "over", "lazy", "dog",
                                                         "hello", "world", "北", "京"])


def write_wordpiece(model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "vocab.txt").write_text("\n".join(EN_VOCAB) + "\n", encoding="utf-8")
    return model_dir


TINY_FLAGAI_BERT = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, hidden_act="gelu", hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1, max_position_embeddings=64,
                        type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
                        checkpoint_activations=False)


def flagai_bert(cls_name: str, seed: int = 0, **extra):
    """A perturbed FlagAI BERT head and its config (FlagAI's fields, no model_type)."""
    import flagai.model.bert_model as fb

    torch.manual_seed(seed)
    cfg = {**TINY_FLAGAI_BERT, **extra}
    return perturb(getattr(fb, cls_name)(flagai_config(cfg)), seed), cfg


def bert_checkpoint(root: Path, *, extra_text: str = "", name: str = "RoBERTa-base-ch") -> Path:
    """RoBERTa-base-ch as FlagAI's hub serves it: Hugging Face BERT names, a config.json
    without model_type, vocab.txt."""
    import transformers

    chars = sorted({c for c in "".join(CORPUS) + extra_text if c.strip()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128,
                                  max_position_embeddings=128, initializer_range=0.2)
    out = root / name
    out.mkdir(parents=True)
    torch.save(transformers.BertForMaskedLM(cfg).state_dict(), out / "pytorch_model.bin")
    data = cfg.to_dict()
    data.pop("model_type")
    (out / "config.json").write_text(json.dumps(data))
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return out
