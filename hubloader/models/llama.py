"""Llama-architecture decoders: Llama (1, 2, 3), Mistral, Qwen2 and FlagAI's Aquila.

One implementation, built from the shared layers: RMSNorm pre-norm blocks, grouped-query
attention with rotary embeddings (:class:`RotaryEmbedding`, ``rope_theta``, ``rope_scaling``
``linear``/``llama3``), the SwiGLU MLP (:class:`GatedFeedForward`), q/k/v biases where the
family has them (Qwen2, or ``attention_bias``), ``tie_word_embeddings`` and ``head_dim``.

Checkpoints load in two key layouts:

- Hugging Face's (``model.layers.N.self_attn.q_proj`` ...), for every ``model_type``;
- Meta's original layout that FlagAI's Aquila checkpoints keep (``layers.N.attention.wq``,
  ``feed_forward.w1``, ``tok_embeddings``, ``output``), with FlagAI's config names (``dim``,
  ``n_layers``, ``n_heads``, ``norm_eps``, ``multiple_of``). Their rotary embedding rotates
  interleaved pairs, so ``wq``/``wk`` rows are permuted into the half-split order on load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..load.checkpoint_keys import layer_rules
from ..load.config import ModelConfig
from ..errors import ConfigError
from ..load.features import FeatureEntry, token_features
from ..load.modeling import BaseModel
from ..load.registry import TokenizerDefaults, register_model
from ._inputs import check_decoder_inputs, check_no_other_inputs, positions_from_mask
from .generation import CausalLMMixin
from .layers import (GatedFeedForward, MultiHeadAttention, RMSNorm, RotaryEmbedding, additive_mask,
                     get_activation, rope_scaling_kind, init_standard, run_decoder_blocks)

__all__ = ["LlamaConfig", "MistralConfig", "Qwen2Config", "AquilaConfig", "LlamaBlock",
           "LlamaModel", "LlamaForCausalLM", "MistralModel", "MistralForCausalLM",
           "Qwen2Model", "Qwen2ForCausalLM", "AquilaModel", "AquilaForCausalLM"]

KVCache = list[tuple[torch.Tensor, torch.Tensor]]

# FlagAI's (and Meta's original) config names -> Hugging Face's
_FLAGAI_CONFIG = {"dim": "hidden_size", "n_layers": "num_hidden_layers",
                  "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
                  "norm_eps": "rms_norm_eps", "max_seq_len": "max_position_embeddings",
                  "hidden_dim": "intermediate_size"}


def _flagai_intermediate(dim: int, multiple_of: int, multiplier: float | None) -> int:
    """The SwiGLU width Meta's and FlagAI's code derive from ``dim``."""
    hidden = int(2 * (4 * dim) / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass
class LlamaConfig(ModelConfig):
    """Hugging Face's Llama config fields, as in ``config.json`` (transformers 4 and 5)."""

    model_type = "llama"
    qkv_bias_default: ClassVar[bool] = False  # Qwen2 has q/k/v biases without saying so

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float | None = None
    rope_scaling: dict | None = None
    rope_parameters: dict | None = None  # transformers 5 folds rope_theta and scaling in here
    attention_bias: bool | None = None
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    initializer_range: float = 0.02
    sliding_window: int | None = None
    use_sliding_window: bool | None = None
    max_window_layers: int | None = None
    layer_types: list[str] | None = None
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config", **overrides: Any):
        """As :meth:`ModelConfig.from_dict`; FlagAI's Aquila names (``dim``, ``n_layers``...)
        are translated first."""
        if "dim" in data and "hidden_size" not in data:
            data = dict(data)
            for old, new in _FLAGAI_CONFIG.items():
                if old in data:
                    data[new] = data.pop(old)
            multiple_of = data.pop("multiple_of", None) or 256
            multiplier = data.pop("ffn_dim_multiplier", None)
            if "intermediate_size" not in data:
                data["intermediate_size"] = _flagai_intermediate(
                    int(data.get("hidden_size", 4096)), int(multiple_of), multiplier)
        return super().from_dict(data, where=where, **overrides)

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_attention_heads}; set head_dim")
        if self.num_attention_heads % self.kv_heads:
            raise ConfigError(f"num_attention_heads {self.num_attention_heads} is not a multiple "
                              f"of num_key_value_heads {self.kv_heads}")
        get_activation(self.hidden_act)
        rope_scaling_kind(self.rope_scaling_params)

    # -- derived values -------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def qkv_bias(self) -> bool:
        return self.qkv_bias_default if self.attention_bias is None else self.attention_bias

    @property
    def out_bias(self) -> bool:
        return bool(self.attention_bias)

    @property
    def rope_base(self) -> float:
        params = self.rope_parameters or {}
        theta = params.get("rope_theta", self.rope_theta)
        return float(theta if theta is not None else 10000.0)

    @property
    def rope_scaling_params(self) -> dict | None:
        params = self.rope_scaling or self.rope_parameters
        if not params:
            return None
        return {k: v for k, v in params.items() if k != "rope_theta"}

    def window_of(self, layer: int) -> int | None:
        """The sliding attention window of block ``layer`` (``None``: full attention)."""
        if self.sliding_window is None:
            return None
        if self.layer_types:
            return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None
        if self.use_sliding_window is None:  # Mistral sets only sliding_window
            return self.sliding_window
        if not self.use_sliding_window:
            return None
        return self.sliding_window if layer >= (self.max_window_layers or 0) else None


@dataclass
class MistralConfig(LlamaConfig):
    model_type = "mistral"


@dataclass
class Qwen2Config(LlamaConfig):
    model_type = "qwen2"
    qkv_bias_default = True


@dataclass
class AquilaConfig(LlamaConfig):
    """FlagAI's Aquila: Hugging Face layout (``model_type: aquila``) or FlagAI's own names."""

    model_type = "aquila"


# -- block level ----------------------------------------------------------------------------
class LlamaBlock(nn.Module):
    """Pre-norm block: ``x + attn(attn_norm(x))`` then ``x + mlp(mlp_norm(x))``."""

    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.attention = MultiHeadAttention(
            config.hidden_size, config.num_attention_heads, num_kv_heads=config.kv_heads,
            head_dim=config.head_size, bias=config.qkv_bias, out_bias=config.out_bias,
            dropout=config.attention_dropout, causal=True, sliding_window=config.window_of(layer))
        self.mlp_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = GatedFeedForward(config.hidden_size, config.intermediate_size,
                                    config.hidden_act, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                rotary: tuple[torch.Tensor, torch.Tensor],
                past: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = False):
        """Returns ``(x, (key, value) or None)``."""
        attn = self.attention(self.attn_norm(x), mask=mask, past=past, use_cache=use_cache,
                              rotary=rotary)
        cache = None
        if use_cache:
            attn, cache = attn
        x = x + attn
        x = x + self.mlp(self.mlp_norm(x))
        return x, cache


# -- checkpoint layouts ---------------------------------------------------------------------
_HF_RULES = ((r"^model\.", "backbone."),) + layer_rules("layers", "blocks", (
    ("self_attn.q_proj", "attention.query"), ("self_attn.k_proj", "attention.key"),
    ("self_attn.v_proj", "attention.value"), ("self_attn.o_proj", "attention.out"),
    ("mlp.gate_proj", "mlp.fc_gate"), ("mlp.up_proj", "mlp.fc_in"),
    ("mlp.down_proj", "mlp.fc_out"), ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "mlp_norm"),
))
_META_RULES: tuple[tuple[str, str], ...] = (
    (r"^tok_embeddings\.", "backbone.embed_tokens."),
    (r"^norm\.", "backbone.norm."),
    (r"^output\.", "lm_head."),
    (r"^layers\.(\d+)\.attention\.wq\.", r"backbone.blocks.\1.attention.query."),
    (r"^layers\.(\d+)\.attention\.wk\.", r"backbone.blocks.\1.attention.key."),
    (r"^layers\.(\d+)\.attention\.wv\.", r"backbone.blocks.\1.attention.value."),
    (r"^layers\.(\d+)\.attention\.wo\.", r"backbone.blocks.\1.attention.out."),
    (r"^layers\.(\d+)\.feed_forward\.w1\.", r"backbone.blocks.\1.mlp.fc_gate."),
    (r"^layers\.(\d+)\.feed_forward\.w3\.", r"backbone.blocks.\1.mlp.fc_in."),
    (r"^layers\.(\d+)\.feed_forward\.w2\.", r"backbone.blocks.\1.mlp.fc_out."),
    (r"^layers\.(\d+)\.attention_norm\.", r"backbone.blocks.\1.attn_norm."),
    (r"^layers\.(\d+)\.ffn_norm\.", r"backbone.blocks.\1.mlp_norm."),
)
_META_ROTATED = re.compile(r"^layers\.\d+\.attention\.w[qk]\.weight$")


def _interleaved_to_half(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder each head's output rows from interleaved rotary pairs (0,1),(2,3).. to the
    half-split order (0,d/2),(1,d/2+1).. of Hugging Face's rotary code."""
    rows, cols = weight.shape
    return (weight.reshape(heads, rows // heads // 2, 2, cols).transpose(1, 2)
            .reshape(rows, cols))


class LlamaPreTrainedModel(BaseModel[LlamaConfig]):
    """Shared declarations of the Llama family."""

    config_class: ClassVar[type[ModelConfig]] = LlamaConfig
    config: LlamaConfig
    base_model_prefix = "backbone"
    checkpoint_key_rules = _HF_RULES
    # older checkpoints store the rotary table; it is recomputed from the config
    ignore_checkpoint_keys = (r"rotary_emb\.inv_freq$",)

    def convert_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Hugging Face keys through the rules; Meta's/FlagAI's layout renamed, ``wq``/``wk``
        rows permuted to the half-split rotary order."""
        if not any(k.startswith("tok_embeddings.") or _META_ROTATED.match(k) for k in state):
            return super().convert_checkpoint(state)
        c = self.config
        rules = [(re.compile(p), r) for p, r in _META_RULES]
        out = {}
        for key, value in state.items():
            if _META_ROTATED.match(key):
                heads = c.num_attention_heads if ".wq." in key else c.kv_heads
                value = _interleaved_to_half(value, heads)
            for pattern, repl in rules:
                key = pattern.sub(repl, key)
            out[key] = value
        return out

    def init_module_weights(self, module: nn.Module) -> None:
        init_standard(module, self.config.initializer_range)

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every block: ``[batch, seq, hidden_size]``."""
        prefix = self._module_prefix()
        return [token_features(f"{prefix}blocks.{i}", self.config.hidden_size)
                for i in range(self.config.num_hidden_layers)]


# -- model level ----------------------------------------------------------------------------
# transformers' LlamaTokenizer pads on the left, ready for batched generation
@register_model("llama", "base", tokenizer=TokenizerDefaults(token_type_ids=False,
                                                               padding_side="left"))
class LlamaModel(LlamaPreTrainedModel):
    """The decoder stack. ``forward`` returns ``logits`` (= last hidden states after ``norm``),
    ``hidden_states``, and ``past_key_values`` with ``use_cache=True``."""

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary = RotaryEmbedding(config.head_size, theta=config.rope_base,
                                      scaling=config.rope_scaling_params)
        self.blocks = nn.ModuleList(LlamaBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                past_key_values: KVCache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Args:
            input_ids: ``[batch, seq]`` token ids.
            attention_mask: ``[batch, past + seq]`` 1/0 mask (left padding for batches).
            position_ids: ``[batch, seq]``; default from ``attention_mask`` or the cache length.
            past_key_values: the ``past_key_values`` of the previous call.
            use_cache: return ``past_key_values`` for the next call.

        Raises:
            InputError: wrong types or shapes, ids outside the vocabulary.
        """
        check_no_other_inputs(type(self).__name__, kwargs,
                              "input_ids, attention_mask, position_ids, past_key_values, "
                              "use_cache")
        c = self.config
        input_ids, past_len = check_decoder_inputs(
            input_ids, attention_mask, position_ids, past_key_values, vocab_size=c.vocab_size,
            num_layers=c.num_hidden_layers)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask, past_len, input_ids.shape[1],
                                               input_ids.device)
        x = self.embed_tokens(input_ids)
        rotary = self.rotary(position_ids, x.dtype)
        x, extra = run_decoder_blocks(
            self.blocks, x, additive_mask(attention_mask, x.dtype),
            past_key_values=past_key_values, use_cache=use_cache,
            output_hidden_states=output_hidden_states, final=self.norm, rotary=rotary)
        return self._outputs(x, x, **extra)


@register_model("llama", "text-generation")
class LlamaForCausalLM(CausalLMMixin, LlamaPreTrainedModel):
    """The decoder with the causal LM head (tied to ``embed_tokens`` when the config says so).
    Tasks: text-generation (lm). ``forward(..., labels=)`` adds the shifted next-token loss."""

    backbone_class: ClassVar[type[LlamaModel]] = LlamaModel

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self._add_lm_head(self.backbone_class(config), config.hidden_size, "embed_tokens")


# -- the other model types: the same modules, their own config defaults ------------------------
@register_model("mistral", "base", tokenizer=TokenizerDefaults(token_type_ids=False))
class MistralModel(LlamaModel):
    config_class = MistralConfig


@register_model("mistral", "text-generation")
class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig
    backbone_class = MistralModel


@register_model("qwen2", "base", tokenizer=TokenizerDefaults(token_type_ids=False))
class Qwen2Model(LlamaModel):
    config_class = Qwen2Config


@register_model("qwen2", "text-generation")
class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class = Qwen2Config
    backbone_class = Qwen2Model


@register_model("aquila", "base", tokenizer=TokenizerDefaults(token_type_ids=False))
class AquilaModel(LlamaModel):
    config_class = AquilaConfig


@register_model("aquila", "text-generation")
class AquilaForCausalLM(LlamaForCausalLM):
    config_class = AquilaConfig
    backbone_class = AquilaModel
