"""AltCLIP: BAAI's bilingual CLIP, as transformers has it (``AltCLIPModel``) and FlagAI
publishes it (``altclip-xlmr-l``: the same layout). An XLM-R text tower (hubloader's RoBERTa
encoder) with a linear ``transformation`` of its normed first token, projected beside CLIP's
image tower; scoring, loss and zero-shot classification are CLIP's
(:class:`~hubloader.models.clip.CLIPPreTrainedModel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..load.checkpoint_keys import invert_key_rules
from ..load.registry import TokenizerDefaults, register_model
from .bert import _ENCODER_IGNORE, _ENCODER_LAYOUT, RobertaConfig, RobertaModel
from .clip import CLIP_IGNORE, CLIP_LAYOUT, CLIPConfig, CLIPPreTrainedModel, sub_config
from .layers import init_standard

__all__ = ["AltCLIPConfig", "AltCLIPModel"]


@dataclass
class AltCLIPConfig(CLIPConfig):
    """transformers' AltCLIP config: an XLM-R ``text_config`` with ``project_dim``."""

    model_type = "altclip"
    projection_dim: int = 768

    def _text_config(self) -> Any:
        text = sub_config(RobertaConfig, {"vocab_size": 250002, "hidden_size": 1024,
                                          "num_hidden_layers": 24, "num_attention_heads": 16,
                                          "intermediate_size": 4096, **(self.text_config or {})},
                          "text_config")
        project_dim = text.extra.get("project_dim", 768)
        if not isinstance(project_dim, int) or isinstance(project_dim, bool) or project_dim <= 0:
            raise ConfigError(f"text_config: project_dim must be a positive int, got "
                              f"{project_dim!r}")
        return text


# BAAI's checkpoints name the image tower's blocks ``encoder.layers``, transformers 5 saves
# ``encoder.layer``; both read, BAAI's is written
_ALTCLIP_ALIASES = ((r"^vision_model\.encoder\.layer\.(\d+)\.",
                     r"vision_model.encoder.layers.\1."),)
_ALTCLIP_LAYOUT = CLIP_LAYOUT + tuple(
    (rf"^text_model\.roberta\.{p}", rf"text_model.roberta.{r}") for p, r in _ENCODER_LAYOUT)


class AltCLIPTextModel(nn.Module):
    """XLM-R, then ``transformation(pre_LN(states)[:, 0])`` (BAAI's text tower)."""

    def __init__(self, cfg: RobertaConfig):
        super().__init__()
        self.roberta = RobertaModel(cfg, add_pooler=False)
        self.transformation = nn.Linear(cfg.hidden_size, cfg.extra.get("project_dim", 768))
        self.pre_LN = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.roberta(input_ids, attention_mask=attention_mask, **kwargs)["hidden_states"]
        return states, self.transformation(self.pre_LN(states)[:, 0])


@register_model("altclip", "zero-shot-image-classification")
@register_model("altclip", "base", tokenizer=TokenizerDefaults(  # transformers' XLM-R tokenizer
    "XLMRobertaTokenizer", {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                            "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                            "mask_token": "<mask>"}, token_type_ids=False, kinds=("xlmroberta",)))
class AltCLIPModel(CLIPPreTrainedModel):
    """BAAI's AltCLIP (transformers' ``AltCLIPModel``; FlagAI's ``altclip-xlmr-l``)."""

    config_class = AltCLIPConfig
    checkpoint_key_rules = _ALTCLIP_ALIASES + _ALTCLIP_LAYOUT
    checkpoint_write_rules = invert_key_rules(_ALTCLIP_LAYOUT)
    ignore_checkpoint_keys = (CLIP_IGNORE + _ENCODER_IGNORE
                              + (r"^text_model\.roberta\.pooler\.",))

    def __init__(self, config: AltCLIPConfig):
        self.text_width = int(config.text.extra.get("project_dim", 768))
        super().__init__(config)
        self.text_model = AltCLIPTextModel(config.text)

    def _text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     **kwargs: Any) -> torch.Tensor:
        return self.text_model(input_ids, attention_mask, **kwargs)[1]

    def _max_text_length(self) -> int:  # XLM-R counts positions from pad_token_id + 1
        return int(self.config.text.max_position_embeddings - self.config.text.position_offset)

    def init_module_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            init_standard(module, self.config.text.initializer_range)
            return
        super().init_module_weights(module)
