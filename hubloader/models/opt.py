"""OPT and Galactica: learned positions offset by two, pre- (or post-) norm causal blocks,
optional projections between the embedding width and the model width, and the causal LM head
with :meth:`generate`.

Two checkpoint layouts load:

- transformers' (``model.decoder.layers.0.self_attn.q_proj.weight``; a bare ``OPTModel``
  checkpoint without the ``model.`` prefix), which ``save_pretrained`` writes back;
- FlagAI's (``transformer.h.0.attn.c_attn.weight``: FlagAI builds OPT from its GPT-2 modules,
  with query, key and value fused in one ``Linear``), told apart by its ``transformer.`` keys.

Galactica is OPT with its own tokenizer (``tokenizer.json``); its checkpoints may leave out
every bias (``enable_bias: false``) and the layer norms' affine parameters
(``layer_norm_elementwise_affine: false``), which :class:`OPTConfig` carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..load.checkpoint_keys import invert_key_rules, layer_rules
from ..load.config import ModelConfig
from ..errors import ConfigError
from ..load.features import FeatureEntry, token_features
from ..load.modeling import BaseModel
from ..load.registry import TokenizerDefaults, register_model
from ._inputs import check_decoder_inputs, check_no_other_inputs
from .generation import CausalLMMixin
from .layers import (FeedForward, MultiHeadAttention, additive_mask, get_activation, init_standard,
                     run_decoder_blocks)

__all__ = ["OPTConfig", "OPTBlock", "OPTModel", "OPTForCausalLM", "GalacticaConfig",
           "GalacticaModel", "GalacticaForCausalLM"]

KVCache = list[tuple[torch.Tensor, torch.Tensor]]
# OPT's position table starts two rows in (fairseq kept rows for padding)
POSITION_OFFSET = 2


@dataclass
class OPTConfig(ModelConfig):
    """transformers' OPT config fields, as in ``config.json`` (FlagAI's OPT reads the same)."""

    model_type = "opt"

    vocab_size: int = 50272
    hidden_size: int = 768
    num_hidden_layers: int = 12
    ffn_dim: int = 3072
    max_position_embeddings: int = 2048
    do_layer_norm_before: bool = True
    word_embed_proj_dim: int | None = None
    dropout: float = 0.1
    attention_dropout: float = 0.0
    num_attention_heads: int = 12
    activation_function: str = "relu"
    init_std: float = 0.02
    enable_bias: bool = True
    layer_norm_elementwise_affine: bool = True
    pad_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 2

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "ffn_dim",
                     "max_position_embeddings", "num_attention_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.word_embed_proj_dim is not None and self.word_embed_proj_dim <= 0:
            raise ConfigError(f"word_embed_proj_dim must be positive, got {self.word_embed_proj_dim}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be a multiple of "
                              f"num_attention_heads {self.num_attention_heads}")
        get_activation(self.activation_function)

    @property
    def embed_dim(self) -> int:
        """The width of the token embeddings (and of the LM head's input)."""
        return self.word_embed_proj_dim or self.hidden_size

    @property
    def final_norm(self) -> bool:
        # transformers' flag for the first OPT-350m conversions, kept in ``extra``
        return self.do_layer_norm_before and not self.extra.get("_remove_final_layer_norm", False)


@dataclass
class GalacticaConfig(OPTConfig):
    """Galactica's checkpoints as FlagAI names them: OPT's fields, Galactica's tokenizer."""

    model_type = "galactica"

    @classmethod
    def accepted_types(cls) -> set[str]:
        return {"galactica", "opt"}

    def to_dict(self) -> dict[str, Any]:
        # saved as Meta publishes Galactica, so that transformers' AutoModel loads it
        return {**super().to_dict(), "model_type": "opt"}


# -- block level ----------------------------------------------------------------------------
class OPTBlock(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))`` (pre-norm), or the norms after each
    residual sum when ``do_layer_norm_before`` is false (OPT-350m)."""

    def __init__(self, config: OPTConfig):
        super().__init__()
        affine, bias = config.layer_norm_elementwise_affine, config.enable_bias
        self.pre_norm = config.do_layer_norm_before
        self.attn_norm = nn.LayerNorm(config.hidden_size, elementwise_affine=affine)
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_dropout, bias=bias,
                                            causal=True)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, elementwise_affine=affine)
        self.mlp = FeedForward(config.hidden_size, config.ffn_dim, config.activation_function,
                               bias=bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = False):
        """Returns ``(x, (key, value) or None)``."""
        h = self.attn_norm(x) if self.pre_norm else x
        attn = self.attention(h, mask=mask, past=past, use_cache=use_cache)
        cache = None
        if use_cache:
            attn, cache = attn
        x = x + self.drop(attn)
        if not self.pre_norm:
            x = self.attn_norm(x)
        h = self.mlp_norm(x) if self.pre_norm else x
        x = x + self.drop(self.mlp(h))
        if not self.pre_norm:
            x = self.mlp_norm(x)
        return x, cache


# -- checkpoint layouts ---------------------------------------------------------------------
_LAYER_RULES = layer_rules("layers", "blocks", (
    ("self_attn.q_proj", "attention.query"), ("self_attn.k_proj", "attention.key"),
    ("self_attn.v_proj", "attention.value"), ("self_attn.out_proj", "attention.out"),
    ("self_attn_layer_norm", "attn_norm"), ("fc1", "mlp.fc_in"), ("fc2", "mlp.fc_out"),
    ("final_layer_norm", "mlp_norm"),
))
# a head checkpoint's backbone sits under model.decoder., a bare OPTModel's under decoder.
_HF_RULES = ((r"^model\.decoder\.", "backbone."), (r"^decoder\.", "")) + _LAYER_RULES
_HF_WRITE_RULES = invert_key_rules(_LAYER_RULES) + (
    (r"^backbone\.", "model.decoder."),
    (r"^(embed_tokens|embed_positions|final_layer_norm|project_in|project_out|layers)\.",
     r"decoder.\1."),
)
# FlagAI's OPT: its GPT-2 stack's names, every projection a Linear ([out, in])
_FLAGAI_RULES = tuple((re.compile(p), r) for p, r in (
    (r"^transformer\.wte\.", "backbone.embed_tokens."),
    (r"^transformer\.wpe\.", "backbone.embed_positions."),
    (r"^transformer\.ln_f\.", "backbone.final_layer_norm."),
    (r"^transformer\.project_(in|out)\.", r"backbone.project_\1."),
    (r"^transformer\.h\.(\d+)\.ln_1\.", r"backbone.blocks.\1.attn_norm."),
    (r"^transformer\.h\.(\d+)\.ln_2\.", r"backbone.blocks.\1.mlp_norm."),
    (r"^transformer\.h\.(\d+)\.attn\.c_proj\.", r"backbone.blocks.\1.attention.out."),
    (r"^transformer\.h\.(\d+)\.mlp\.c_fc\.", r"backbone.blocks.\1.mlp.fc_in."),
    (r"^transformer\.h\.(\d+)\.mlp\.c_proj\.", r"backbone.blocks.\1.mlp.fc_out."),
))
_FLAGAI_QKV = re.compile(r"^transformer\.h\.(\d+)\.attn\.c_attn\.(weight|bias)$")


def _from_flagai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        fused = _FLAGAI_QKV.match(key)
        if fused:
            layer, kind = fused.groups()
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"backbone.blocks.{layer}.attention.{name}.{kind}"] = part
            continue
        for pattern, repl in _FLAGAI_RULES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


class OPTPreTrainedModel(BaseModel[OPTConfig]):
    """Shared declarations of the OPT family."""

    config_class: ClassVar[type[ModelConfig]] = OPTConfig
    config: OPTConfig
    base_model_prefix = "backbone"
    checkpoint_key_rules = _HF_RULES
    checkpoint_write_rules = _HF_WRITE_RULES

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """transformers' keys through the rules; FlagAI's (``transformer.`` keys) renamed and
        the fused ``c_attn`` split into query, key and value."""
        if any(k.startswith("transformer.h.") for k in state):
            return _from_flagai(state)
        return super().convert_checkpoint(state)

    def init_module_weights(self, module: nn.Module) -> None:
        init_standard(module, self.config.init_std)

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every block: ``[batch, seq, hidden_size]``."""
        prefix = self._module_prefix()
        return [token_features(f"{prefix}blocks.{i}", self.config.hidden_size)
                for i in range(self.config.num_hidden_layers)]


# -- model level ----------------------------------------------------------------------------
@register_model("opt", "base", tokenizer=TokenizerDefaults(token_type_ids=False))
class OPTModel(OPTPreTrainedModel):
    """The OPT decoder. ``forward`` returns ``logits`` (= the last hidden states, after the
    final norm and ``project_out``), ``hidden_states``, and ``past_key_values`` with
    ``use_cache=True``."""

    def __init__(self, config: OPTConfig):
        super().__init__(config)
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.embed_dim)
        self.embed_positions = nn.Embedding(c.max_position_embeddings + POSITION_OFFSET,
                                            c.hidden_size)
        narrow = c.embed_dim != c.hidden_size
        self.project_in = nn.Linear(c.embed_dim, c.hidden_size, bias=False) if narrow else None
        self.project_out = nn.Linear(c.hidden_size, c.embed_dim, bias=False) if narrow else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(OPTBlock(c) for _ in range(c.num_hidden_layers))
        self.final_layer_norm = (nn.LayerNorm(c.hidden_size,
                                              elementwise_affine=c.layer_norm_elementwise_affine)
                                 if c.final_norm else None)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                past_key_values: KVCache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Args:
            input_ids: ``[batch, seq]`` token ids.
            attention_mask: ``[batch, past + seq]`` 1/0 mask (left padding for batches).
            position_ids: ``[batch, seq]``; default: the count of real tokens before each one.
            past_key_values: the ``past_key_values`` of the previous call.
            use_cache: return ``past_key_values`` for the next call.

        Raises:
            InputError: wrong types or shapes, ids outside the vocabulary, a sequence longer
                than ``max_position_embeddings``.
        """
        check_no_other_inputs(type(self).__name__, kwargs,
                              "input_ids, attention_mask, position_ids, past_key_values, "
                              "use_cache")
        c = self.config
        input_ids, past_len = check_decoder_inputs(
            input_ids, attention_mask, position_ids, past_key_values, vocab_size=c.vocab_size,
            num_layers=c.num_hidden_layers, max_positions=c.max_position_embeddings)
        if position_ids is None:
            full = (attention_mask if attention_mask is not None
                    else input_ids.new_ones(input_ids.shape[0], past_len + input_ids.shape[1]))
            # padding takes position -1, as transformers' OPT gives it
            position_ids = (full.long().cumsum(-1) * full.long() - 1)[:, past_len:]
        x = self.embed_tokens(input_ids)
        if self.project_in is not None:
            x = self.project_in(x)
        x = self.drop(x + self.embed_positions(position_ids + POSITION_OFFSET))
        x, extra = run_decoder_blocks(
            self.blocks, x, additive_mask(attention_mask, x.dtype),
            past_key_values=past_key_values, use_cache=use_cache,
            output_hidden_states=output_hidden_states, final=self._final)
        return self._outputs(x, x, **extra)

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        if self.final_layer_norm is not None:
            x = self.final_layer_norm(x)
        return x if self.project_out is None else self.project_out(x)


@register_model("opt", "text-generation")
class OPTForCausalLM(CausalLMMixin, OPTPreTrainedModel):
    """OPT with the causal LM head (tied to ``embed_tokens`` unless the config says not).
    Tasks: text-generation (FlagAI's ``lm`` and ``seq2seq``). ``forward(..., labels=)`` adds
    the shifted next-token loss."""

    backbone_class: ClassVar[type[OPTModel]] = OPTModel

    def __init__(self, config: OPTConfig):
        super().__init__(config)
        self._add_lm_head(self.backbone_class(config), config.embed_dim, "embed_tokens")


@register_model("galactica", "base", tokenizer=TokenizerDefaults(token_type_ids=False))
class GalacticaModel(OPTModel):
    config_class = GalacticaConfig


@register_model("galactica", "text-generation")
class GalacticaForCausalLM(OPTForCausalLM):
    config_class = GalacticaConfig
    backbone_class = GalacticaModel
