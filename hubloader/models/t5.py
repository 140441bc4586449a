"""T5: a pre-norm encoder-decoder with RMS norms and a bucketed relative position bias
(layer → block → stack → model), and conditional generation with :meth:`generate`.

Both T5 (ReLU MLP) and T5 v1.1 (``feed_forward_proj: gated-gelu``) checkpoints load directly
through ``checkpoint_key_rules`` (``encoder.block.N.layer.0.SelfAttention.q.weight``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..load.config import ModelConfig
from ..errors import ConfigError, InputError
from ..load.features import FeatureEntry, token_features
from ..load.modeling import BaseModel
from ..load.registry import TokenizerDefaults, register_model
from ._inputs import check_no_other_inputs, check_same_shape, check_token_ids, require_token_ids
from .generation import GenerationMixin
from .layers import (FeedForward, GatedFeedForward, MultiHeadAttention, RelativePositionBias,
                     RMSNorm, additive_mask, get_activation)

__all__ = ["T5Config", "T5Block", "T5Stack", "T5Model", "T5ForConditionalGeneration"]

# per decoder layer: (self key, self value, cross key, cross value)
KVCache = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class T5Config(ModelConfig):
    """Hugging Face's T5 config fields, as in ``config.json``."""

    model_type = "t5"

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"
    pad_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 1
    decoder_start_token_id: int | None = None
    scale_decoder_outputs: bool | None = None

    def validate(self) -> None:
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                     "relative_attention_num_buckets", "relative_attention_max_distance"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_decoder_layers is not None and self.num_decoder_layers <= 0:
            raise ConfigError(f"num_decoder_layers must be positive, got {self.num_decoder_layers}")
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"feed_forward_proj {self.feed_forward_proj!r} must be 'ACT' or "
                              "'gated-ACT' (e.g. 'relu', 'gated-gelu')")
        get_activation(self.activation)

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        act = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else act

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers or self.num_layers

    @property
    def start_token_id(self) -> int:
        if self.decoder_start_token_id is not None:
            return self.decoder_start_token_id
        return self.pad_token_id or 0

    @property
    def scales_decoder_output(self) -> bool:
        """Original T5 scales the decoder output by ``d_model ** -0.5`` before a tied head."""
        if self.scale_decoder_outputs is not None:
            return self.scale_decoder_outputs
        return self.tie_word_embeddings

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        # transformers reads a written null as "do not scale": write what this config means
        out["scale_decoder_outputs"] = self.scales_decoder_output
        return out


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16:  # T5 activations overflow in fp16; keep them finite
        limit = torch.finfo(x.dtype).max - 1000
        x = torch.clamp(x, min=-limit, max=limit)
    return x


# -- block level ----------------------------------------------------------------------------
class T5Block(nn.Module):
    """Pre-norm block: self-attention (+ cross-attention in the decoder) and the MLP, each as
    ``x + dropout(sublayer(rms_norm(x)))``."""

    def __init__(self, config: T5Config, *, decoder: bool):
        super().__init__()
        d, eps = config.d_model, config.layer_norm_epsilon

        def attention(causal: bool) -> MultiHeadAttention:
            return MultiHeadAttention(d, config.num_heads, head_dim=config.d_kv, bias=False,
                                      scale=False, causal=causal, dropout=config.dropout_rate)

        self.self_norm = RMSNorm(d, eps)
        self.self_attention = attention(causal=decoder)
        self.cross_norm = RMSNorm(d, eps) if decoder else None
        self.cross_attention: nn.Module | None = attention(causal=False) if decoder else None
        self.mlp_norm = RMSNorm(d, eps)
        mlp_cls = GatedFeedForward if config.gated else FeedForward
        self.mlp = mlp_cls(d, config.d_ff, config.activation, bias=False, dropout=config.dropout_rate)
        self.drop = nn.Dropout(config.dropout_rate)

    def forward(self, x: torch.Tensor, *, bias: torch.Tensor, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                past: tuple | None = None, use_cache: bool = False):
        """Returns ``(x, cache)``; ``cache`` is ``(k, v[, cross_k, cross_v])`` with ``use_cache``."""
        self_past = past[:2] if past is not None else None
        h = self.self_attention(self.self_norm(x), mask=mask, bias=bias, past=self_past,
                                use_cache=use_cache)
        cache: tuple = ()
        if use_cache:
            h, cache = h
        x = _clamp_fp16(x + self.drop(h))
        if self.cross_attention is not None and self.cross_norm is not None:
            cross_past = past[2:] if past is not None else None
            h = self.cross_attention(self.cross_norm(x), mask=context_mask, context=context,
                                     past=cross_past, use_cache=use_cache)
            if use_cache:
                h, cross = h
                cache = tuple(cache) + tuple(cross)
            x = _clamp_fp16(x + self.drop(h))
        x = _clamp_fp16(x + self.drop(self.mlp(self.mlp_norm(x))))
        return x, (cache if use_cache else None)


class T5Stack(nn.Module):
    """The encoder or decoder: blocks sharing one relative position bias, then a final norm.
    Takes embeddings (the token embedding is shared and lives in the model)."""

    def __init__(self, config: T5Config, *, decoder: bool):
        super().__init__()
        n = config.decoder_layers if decoder else config.num_layers
        self.decoder = decoder
        self.relative_bias = RelativePositionBias(
            config.relative_attention_num_buckets, config.relative_attention_max_distance,
            config.num_heads, bidirectional=not decoder)
        self.blocks = nn.ModuleList(T5Block(config, decoder=decoder) for _ in range(n))
        self.final_norm = RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.drop = nn.Dropout(config.dropout_rate)

    def forward(self, embeds: torch.Tensor, *, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None,
                past: KVCache | None = None, use_cache: bool = False):
        """Returns ``(hidden_states, cache or None)``."""
        x = self.drop(embeds)
        q_len = x.shape[1]
        past_len = past[0][0].shape[2] if past else 0
        bias = self.relative_bias(q_len, past_len + q_len, offset=past_len, device=x.device)
        bias = bias.to(x.dtype)
        cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, bias=bias, mask=mask, context=context, context_mask=context_mask,
                          past=past[i] if past else None, use_cache=use_cache)
            if use_cache:
                cache.append(kv)
        return self.drop(self.final_norm(x)), (cache if use_cache else None)


# -- model level ----------------------------------------------------------------------------
_T5_RULES: tuple[tuple[str, str], ...] = (
    (r"^(shared|encoder|decoder)\.", r"backbone.\1."),
    (r"(encoder|decoder)\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.",
     r"\1.relative_bias.embedding."),
    (r"\.(SelfAttention|EncDecAttention)\.q\.", r".\1.query."),
    (r"\.(SelfAttention|EncDecAttention)\.k\.", r".\1.key."),
    (r"\.(SelfAttention|EncDecAttention)\.v\.", r".\1.value."),
    (r"\.(SelfAttention|EncDecAttention)\.o\.", r".\1.out."),
    (r"(encoder|decoder)\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"\1.blocks.\2.self_attention."),
    (r"(encoder|decoder)\.block\.(\d+)\.layer\.0\.layer_norm\.", r"\1.blocks.\2.self_norm."),
    (r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.", r"decoder.blocks.\1.cross_attention."),
    (r"decoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"decoder.blocks.\1.cross_norm."),
    (r"encoder\.block\.(\d+)\.layer\.1\.", r"encoder.blocks.\1.ffn."),
    (r"decoder\.block\.(\d+)\.layer\.2\.", r"decoder.blocks.\1.ffn."),
    (r"\.ffn\.layer_norm\.", ".mlp_norm."),
    (r"\.ffn\.DenseReluDense\.wi_0\.", ".mlp.fc_gate."),
    (r"\.ffn\.DenseReluDense\.wi_1\.", ".mlp.fc_in."),
    (r"\.ffn\.DenseReluDense\.wi\.", ".mlp.fc_in."),
    (r"\.ffn\.DenseReluDense\.wo\.", ".mlp.fc_out."),
    (r"(encoder|decoder)\.final_layer_norm\.", r"\1.final_norm."),
)
_T5_IGNORE = (r"(^|\.)(encoder|decoder)\.embed_tokens\.weight$",)


class T5PreTrainedModel(BaseModel[T5Config]):
    """Shared declarations of the T5 family."""

    config_class = T5Config
    base_model_prefix = "backbone"
    checkpoint_key_rules = _T5_RULES
    ignore_checkpoint_keys = _T5_IGNORE

    @classmethod
    def export_checkpoint(cls, state: dict[str, torch.Tensor],
                          config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
        """As the base class, except that a gated MLP's input projection is ``wi_1`` (next to
        the gate's ``wi_0``), where the plain MLP's is ``wi``."""
        out = super().export_checkpoint(state, config)
        if not (isinstance(config, T5Config) and config.gated):
            return out
        return {k.replace(".DenseReluDense.wi.", ".DenseReluDense.wi_1."): v
                for k, v in out.items()}

    def init_module_weights(self, module: nn.Module) -> None:
        f, d = self.config.initializer_factor, self.config.d_model
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, f * module.in_features ** -0.5)
        elif isinstance(module, nn.Embedding):
            std = f * (d ** -0.5 if module.embedding_dim == self.config.num_heads else 1.0)
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, RMSNorm):
            module.reset_parameters()

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every encoder block: ``[batch, seq, d_model]`` (``input_shape`` is the
        encoder input's)."""
        prefix = self._module_prefix()
        return [token_features(f"{prefix}encoder.blocks.{i}", self.config.d_model)
                for i in range(self.config.num_layers)]


@register_model("t5", "base", tokenizer=TokenizerDefaults(  # transformers' T5Tokenizer
    "T5Tokenizer", {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    token_type_ids=False))
class T5Model(T5PreTrainedModel):
    """The T5 encoder-decoder. ``forward`` returns ``logits`` and ``hidden_states`` (the
    decoder's last states), ``encoder_hidden_states`` and, with ``use_cache``,
    ``past_key_values``."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, decoder=False)
        self.decoder = T5Stack(config, decoder=True)

    def encode(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Encoder states ``[batch, seq, d_model]``.

        Raises:
            InputError: wrong types or shapes, ids outside the vocabulary.
        """
        input_ids = require_token_ids("input_ids", input_ids, vocab_size=self.config.vocab_size)
        if attention_mask is not None:
            check_token_ids("attention_mask", attention_mask)
            check_same_shape("attention_mask", attention_mask, "input_ids", input_ids)
        embeds = self.shared(input_ids)
        return self.encoder(embeds, mask=additive_mask(attention_mask, embeds.dtype))[0]

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                past_key_values: KVCache | None = None, use_cache: bool = False,
                **kwargs: Any) -> dict[str, Any]:
        """Args:
            input_ids: ``[batch, src]`` source ids (not needed with ``encoder_hidden_states``).
            attention_mask: ``[batch, src]`` 1/0 source mask.
            decoder_input_ids: ``[batch, tgt]`` decoder ids (start token first).
            decoder_attention_mask: ``[batch, past + tgt]`` 1/0 decoder mask.
            encoder_hidden_states: reuse an earlier encoding.
            past_key_values: the decoder cache from the previous call.

        Raises:
            InputError: missing, wrongly typed or shaped inputs.
        """
        check_no_other_inputs("T5", kwargs,
                              "input_ids, attention_mask, decoder_input_ids, "
                              "decoder_attention_mask, encoder_hidden_states, "
                              "past_key_values, use_cache")
        c = self.config
        if encoder_hidden_states is None:
            encoder_hidden_states = self.encode(input_ids, attention_mask)
        elif not isinstance(encoder_hidden_states, torch.Tensor) or encoder_hidden_states.dim() != 3:
            raise InputError("encoder_hidden_states must be a [batch, src, d_model] tensor")
        decoder_input_ids = require_token_ids("decoder_input_ids", decoder_input_ids,
                                              vocab_size=c.vocab_size)
        if decoder_input_ids.shape[0] != encoder_hidden_states.shape[0]:
            raise InputError(f"decoder_input_ids has batch {decoder_input_ids.shape[0]}, the "
                             f"source batch {encoder_hidden_states.shape[0]}")
        if past_key_values is not None and len(past_key_values) != c.decoder_layers:
            raise InputError(f"past_key_values has {len(past_key_values)} layers, the decoder "
                             f"{c.decoder_layers}")
        embeds = self.shared(decoder_input_ids)
        dec_mask = None
        if decoder_attention_mask is not None:
            check_token_ids("decoder_attention_mask", decoder_attention_mask)
            dec_mask = additive_mask(decoder_attention_mask, embeds.dtype)
        enc_mask = additive_mask(attention_mask, embeds.dtype)
        x, cache = self.decoder(embeds, mask=dec_mask, context=encoder_hidden_states,
                                context_mask=enc_mask, past=past_key_values, use_cache=use_cache)
        out = self._outputs(x, x, encoder_hidden_states=encoder_hidden_states)
        if use_cache:
            out["past_key_values"] = cache
        return out


@register_model("t5", "text2text-generation")
class T5ForConditionalGeneration(GenerationMixin, T5PreTrainedModel):
    """T5 with the LM head (tied to ``shared`` unless ``tie_word_embeddings`` is false).
    Tasks: seq2seq, title-generation, text2text-generation, summarization, translation.
    ``forward(..., labels=)`` shifts the labels right for the decoder and adds the loss."""

    new_head_keys = (r"^lm_head\.",)

    def __init__(self, config: T5Config):
        super().__init__(config)
        self.backbone = T5Model(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.tied_weights = ({"lm_head.weight": "backbone.shared.weight"}
                             if config.tie_word_embeddings else {})

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs from labels: start token first, -100 replaced by the pad id."""
        start = torch.full_like(labels[:, :1], self.config.start_token_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id or 0)

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> dict[str, Any]:
        """As :meth:`T5Model.forward`; ``logits`` are ``[batch, tgt, vocab]``.

        Args:
            labels: ``[batch, tgt]`` target ids (-100 ignored); builds ``decoder_input_ids``
                when they are not given.
        """
        if labels is not None:
            check_token_ids("labels", labels)
            if inputs.get("decoder_input_ids") is None:
                inputs["decoder_input_ids"] = self.shift_right(labels)
        out = self.backbone(**inputs)
        x = out["hidden_states"]
        if self.config.scales_decoder_output:
            x = x * (self.config.d_model ** -0.5)
        logits = self.lm_head(x)
        loss = None
        if labels is not None:
            check_same_shape("labels", labels, "decoder_input_ids", inputs["decoder_input_ids"])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                   labels.reshape(-1), ignore_index=-100)
        extra = {k: v for k, v in out.items() if k not in ("logits", "hidden_states")}
        return self._outputs(logits, out["hidden_states"], loss, **extra)

    # -- generation hooks -------------------------------------------------------------------
    def _generation_begin(self, input_ids, attention_mask):
        enc = self.backbone.encode(input_ids, attention_mask)
        start = torch.full((input_ids.shape[0], 1), self.config.start_token_id,
                           dtype=torch.long, device=input_ids.device)
        return start, {"enc": enc, "mask": attention_mask, "past": None}

    def _generation_step(self, state, step_ids):
        out = self(decoder_input_ids=step_ids, encoder_hidden_states=state["enc"],
                   attention_mask=state["mask"], past_key_values=state["past"], use_cache=True)
        return out["logits"][:, -1], {**state, "past": out["past_key_values"]}
