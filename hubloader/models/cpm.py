"""CPM (Tsinghua's Chinese Pretrained Model, FlagAI's ``CPM-large-ch``): the GPT-2
architecture under its own ``model_type``, so that its tokenizer is CPM's (jieba words, then
SentencePiece: :mod:`hubloader.text.cpm`).

FlagAI's checkpoints (its GPT-2 module names, no ``model_type``) and transformers' (``gpt2``
layout, ``model_type: gpt2``) both load: the weights are GPT-2's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..load.registry import TokenizerDefaults, register_model
from .gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model

__all__ = ["CPMConfig", "CPMModel", "CPMLMHeadModel"]


@dataclass
class CPMConfig(GPT2Config):
    """GPT-2's fields; CPM-Generate's ``config.json`` says ``gpt2``, which it accepts."""

    model_type = "cpm"

    @classmethod
    def accepted_types(cls) -> set[str]:
        return {"cpm", "gpt2"}

    def to_dict(self) -> dict[str, Any]:
        # saved as CPM-Generate is published, so that transformers' AutoModel loads it
        return {**super().to_dict(), "model_type": "gpt2"}


@register_model("cpm", "base", tokenizer=TokenizerDefaults(  # FlagAI's CPM tokenizer
    None, {"eos_token": "<eod>", "unk_token": "<unk>", "pad_token": "<pad>"},
    token_type_ids=False))
class CPMModel(GPT2Model):
    config_class = CPMConfig


@register_model("cpm", "text-generation")
class CPMLMHeadModel(GPT2LMHeadModel):
    """CPM with the causal LM head. Tasks: text-generation (FlagAI's ``cpm_lm`` and
    ``cpm_seq2seq``)."""

    config_class = CPMConfig
