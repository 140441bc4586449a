"""ALM (BAAI's Arabic Language Model, FlagAI's ``ALM-1.0``): GLM's architecture under its own
``model_type``, with FlagAI's SentencePiece tokenizer for Arabic (GLM's command tokens over
``spiece.model``, at the ids FlagAI's unified ``Tokenizer`` gives them).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..load.registry import register_model
from .glm import GLMConfig, GLMForSeq2Seq, GLMModel

__all__ = ["ALMConfig", "ALMModel", "ALMForSeq2Seq"]


@dataclass
class ALMConfig(GLMConfig):
    """GLM's fields, as FlagAI's ``ALM-1.0`` config.json has them."""

    model_type = "alm"


@register_model("alm", "base")
@register_model("alm", "text-generation")  # FlagAI's alm_lm
class ALMModel(GLMModel):
    config_class = ALMConfig


@register_model("alm", "text2text-generation")
class ALMForSeq2Seq(GLMForSeq2Seq):
    config_class = ALMConfig
