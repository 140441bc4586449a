"""GPT-2: token + position embeddings, pre-norm causal blocks (layer → block → model), and the
causal LM head with :meth:`generate` (greedy / sampling, KV cache).

Hugging Face checkpoints load directly: the fused ``Conv1D`` projections (``attn.c_attn`` holds
query, key and value; every ``Conv1D`` stores its weight as ``[in, out]``) are split and
transposed into the shared :class:`MultiHeadAttention` / :class:`FeedForward` ``Linear`` layers
in :meth:`GPT2PreTrainedModel.convert_checkpoint`; ``save_pretrained`` fuses and transposes
them back (:meth:`GPT2PreTrainedModel.export_checkpoint`), so transformers loads a saved model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..load.config import ModelConfig
from ..errors import ConfigError
from ..load.features import FeatureEntry, token_features
from ..load.modeling import BaseModel
from ..load.registry import TokenizerDefaults, register_model
from ._inputs import (check_decoder_inputs, check_no_other_inputs, check_same_shape,
                      check_token_ids, positions_from_mask)
from .generation import CausalLMMixin
from .layers import (FeedForward, MultiHeadAttention, additive_mask, get_activation, init_standard,
                     run_decoder_blocks)

__all__ = ["GPT2Config", "GPT2Block", "GPT2Model", "GPT2LMHeadModel"]

KVCache = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class GPT2Config(ModelConfig):
    """Hugging Face's GPT-2 config fields (``n_embd``, ``n_layer``...), as in ``config.json``."""

    model_type = "gpt2"

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None

    def validate(self) -> None:
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} must be a multiple of n_head {self.n_head}")
        if self.scale_attn_by_inverse_layer_idx or self.add_cross_attention:
            raise ConfigError("scale_attn_by_inverse_layer_idx and add_cross_attention are not "
                              "supported by hubloader's GPT-2; set them to false")
        get_activation(self.activation_function)

    @property
    def inner_size(self) -> int:
        return self.n_inner or 4 * self.n_embd


# -- block level ----------------------------------------------------------------------------
class GPT2Block(nn.Module):
    """Pre-norm causal block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attention = MultiHeadAttention(config.n_embd, config.n_head, dropout=config.attn_pdrop,
                                            causal=True, scale=config.scale_attn_weights)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = FeedForward(config.n_embd, config.inner_size, config.activation_function)
        self.drop = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = False):
        """Returns ``(x, (key, value) or None)``."""
        attn = self.attention(self.ln_1(x), mask=mask, past=past, use_cache=use_cache)
        cache = None
        if use_cache:
            attn, cache = attn
        x = x + self.drop(attn)
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x, cache


# -- model level ----------------------------------------------------------------------------
_CONV1D = re.compile(r"(^|\.)(h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj))\.weight$")
# the generic block rule comes first, so that inverted (last) it sees no other rule's output
_GPT2_RULES: tuple[tuple[str, str], ...] = (
    (r"^transformer\.", "backbone."),
    (r"(^|\.)h\.(\d+)\.(ln_1|ln_2|attention)\.", r"\1blocks.\2.\3."),
    (r"(^|\.)h\.(\d+)\.attn\.c_proj\.", r"\1blocks.\2.attention.out."),
    (r"(^|\.)h\.(\d+)\.mlp\.c_fc\.", r"\1blocks.\2.mlp.fc_in."),
    (r"(^|\.)h\.(\d+)\.mlp\.c_proj\.", r"\1blocks.\2.mlp.fc_out."),
)
_QKV = re.compile(r"^(.*)\.attention\.(query|key|value)\.(weight|bias)$")
_GPT2_IGNORE = (r"\.attn\.bias$", r"\.attn\.masked_bias$", r"(^|\.)attention\.bias$",
                r"(^|\.)attention\.masked_bias$")


class GPT2PreTrainedModel(BaseModel[GPT2Config]):
    """Shared declarations of the GPT-2 family."""

    config_class = GPT2Config
    base_model_prefix = "backbone"
    checkpoint_key_rules = _GPT2_RULES
    ignore_checkpoint_keys = _GPT2_IGNORE

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Transpose ``Conv1D`` weights and split the fused ``c_attn`` into query/key/value.

        FlagAI's GPT-2 keeps the same names on ``Linear`` layers (``[out, in]``, as its trainer
        saves them); its ``c_attn`` weight, ``[3 * n_embd, n_embd]`` instead of ``[n_embd, 3 *
        n_embd]``, tells the layouts apart, and then nothing is transposed.
        """
        linear = any(k.endswith("attn.c_attn.weight") and v.dim() == 2
                     and v.shape[0] == 3 * v.shape[1] for k, v in state.items())
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if _CONV1D.search(key) and not linear:
                value = value.t()  # Conv1D stores [in, out]; Linear wants [out, in]
            if ".attn.c_attn." in key or key.startswith("attn.c_attn."):
                stem, _, kind = key.rpartition(".c_attn.")
                stem = stem[: -len(".attn")] if stem.endswith(".attn") else stem
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{stem}.attention.{name}.{kind}"] = part
            else:
                out[key] = value
        return super().convert_checkpoint(out)

    @classmethod
    def export_checkpoint(cls, state: dict[str, torch.Tensor],
                          config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`convert_checkpoint`: fuse query/key/value into ``c_attn``
        and transpose the ``Conv1D`` weights back to ``[in, out]``."""
        renamed = super().export_checkpoint(state, config)
        out: dict[str, torch.Tensor] = {}
        fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for key, value in renamed.items():
            match = _QKV.match(key)
            if match:
                fused.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
            else:
                out[key] = value
        for (stem, kind), parts in fused.items():
            out[f"{stem}.attn.c_attn.{kind}"] = torch.cat(
                [parts["query"], parts["key"], parts["value"]], dim=0)
        return {k: (v.t().contiguous() if _CONV1D.search(k) else v) for k, v in out.items()}

    def init_module_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if init_standard(module, std):
            return
        if isinstance(module, (MultiHeadAttention, FeedForward)):  # GPT-2's scaled residuals
            proj = module.out if isinstance(module, MultiHeadAttention) else module.fc_out
            nn.init.normal_(proj.weight, 0.0, std / math.sqrt(2 * self.config.n_layer))

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every block: ``[batch, seq, n_embd]``."""
        prefix = self._module_prefix()
        return [token_features(f"{prefix}blocks.{i}", self.config.n_embd)
                for i in range(self.config.n_layer)]


@register_model("gpt2", "base", tokenizer=TokenizerDefaults(  # transformers' GPT2Tokenizer
    "GPT2Tokenizer", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                      "unk_token": "<|endoftext|>"}, token_type_ids=False))
class GPT2Model(GPT2PreTrainedModel):
    """The GPT-2 decoder stack. ``forward`` returns ``logits`` (= last hidden states after
    ``ln_f``), ``hidden_states``, and ``past_key_values`` with ``use_cache=True``."""

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.ModuleList(GPT2Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                past_key_values: KVCache | None = None, use_cache: bool = False,
                output_hidden_states: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Args:
            input_ids: ``[batch, seq]`` token ids.
            attention_mask: ``[batch, past + seq]`` 1/0 mask (left padding for batches).
            position_ids: ``[batch, seq]``; default from ``attention_mask`` or the cache length.
            token_type_ids: ``[batch, seq]``, embedded with ``wte`` as in transformers (rarely
                used; GPT-2 tokenizers do not produce them).
            past_key_values: the ``past_key_values`` of the previous call.
            use_cache: return ``past_key_values`` for the next call.

        Raises:
            InputError: wrong types or shapes, ids outside the vocabulary, a sequence longer
                than ``n_positions``.
        """
        check_no_other_inputs("GPT-2", kwargs,
                              "input_ids, attention_mask, position_ids, token_type_ids, "
                              "past_key_values, use_cache")
        c = self.config
        input_ids, past_len = check_decoder_inputs(
            input_ids, attention_mask, position_ids, past_key_values, vocab_size=c.vocab_size,
            num_layers=c.n_layer, max_positions=c.n_positions, max_positions_name="n_positions")
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask, past_len, input_ids.shape[1],
                                               input_ids.device)
        x = self.wte(input_ids) + self.wpe(position_ids)
        if token_type_ids is not None:
            check_token_ids("token_type_ids", token_type_ids, vocab_size=c.vocab_size)
            check_same_shape("token_type_ids", token_type_ids, "input_ids", input_ids)
            x = x + self.wte(token_type_ids)
        x = self.drop(x)
        x, extra = run_decoder_blocks(
            self.blocks, x, additive_mask(attention_mask, x.dtype),
            past_key_values=past_key_values, use_cache=use_cache,
            output_hidden_states=output_hidden_states, final=self.ln_f)
        return self._outputs(x, x, **extra)


@register_model("gpt2", "text-generation")
class GPT2LMHeadModel(CausalLMMixin, GPT2PreTrainedModel):
    """GPT-2 with the causal LM head (tied to ``wte``). Tasks: lm, text-generation,
    poetry-generation. ``forward(..., labels=)`` adds the shifted next-token loss."""

    new_head_keys = (r"^lm_head\.",)

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self._add_lm_head(GPT2Model(config), config.n_embd, "wte")
