"""Swin Transformer V2: Swin's shifted windows with scaled cosine attention, a continuous
relative position bias (a small MLP over log-spaced coordinates), norms after each residual
branch (res-post-norm), and patch merging that projects before it norms.

transformers' checkpoints (``swinv2.encoder.layers.N.blocks.M.attention.self.
continuous_position_bias_mlp.0.weight``...) load through ``checkpoint_key_rules``; Microsoft's
layout, which FlagAI publishes (``layers.N.blocks.M.attn.cpb_mlp.0.weight``, a fused ``qkv``
with ``q_bias``/``v_bias``), through :func:`~hubloader.models.swin.from_microsoft_swin`. As in
both, a stage whose map is no larger than the window attends it whole (the window shrinks to
the map, unshifted), decided from the configured ``image_size``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..load.checkpoint_keys import invert_key_rules
from ..errors import ConfigError
from ..load.registry import register_model
from .layers import FeedForward
from .swin import (SwinBlock, SwinConfig, SwinForImageClassification, SwinModel,
                   SwinPreTrainedModel, SwinStage, _drop_path, attend_in_windows, merge_patches)

__all__ = ["Swinv2Config", "Swinv2Block", "Swinv2Model", "Swinv2ForImageClassification"]


@dataclass
class Swinv2Config(SwinConfig):
    """transformers' Swinv2 config fields (defaults: swinv2-tiny-patch4-window8-256)."""

    model_type = "swinv2"

    image_size: int | list[int] = 256
    window_size: int = 8
    pretrained_window_sizes: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def validate(self) -> None:
        super().validate()
        n = len(self.depths)
        if len(self.pretrained_window_sizes) < n:
            if any(self.pretrained_window_sizes):
                raise ConfigError(f"pretrained_window_sizes {self.pretrained_window_sizes} needs "
                                  f"one size per stage ({n})")
            self.pretrained_window_sizes = [0] * n
        if min(self.pretrained_window_sizes) < 0:
            raise ConfigError("pretrained_window_sizes must not be negative")
        gh, gw = self.grid
        for i in range(n):  # a window shrinks to a smaller map; transformers and Microsoft
            h, w = gh // 2 ** i, gw // 2 ** i  # shrink it differently when the map is oblong
            if h != w and min(h, w) < self.window_size:
                raise ConfigError(f"image_size {self.image_size}: stage {i}'s {h}x{w} map is "
                                  f"oblong and narrower than the {self.window_size} "
                                  "window; use a square image_size or a smaller window_size")


def _coords_table(window: int, pretrained: int) -> torch.Tensor:
    """The log-spaced relative coordinates of a window, ``[(2w-1)^2, 2]`` (float32, CPU);
    cached, except while ``torch.compile``/``torch.export`` trace (a traced tensor is a fake
    one and must not reach the cache)."""
    if torch.compiler.is_compiling():
        return _coords_table_uncached(window, pretrained)
    return _coords_table_cached(window, pretrained)


@functools.lru_cache(maxsize=None)
def _coords_table_cached(window: int, pretrained: int) -> torch.Tensor:
    return _coords_table_uncached(window, pretrained)


def _coords_table_uncached(window: int, pretrained: int) -> torch.Tensor:
    span = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1)
    scale = pretrained - 1 if pretrained > 0 else window - 1
    if scale > 0:
        table = table / scale
    table = table * 8
    return (torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)).reshape(-1, 2)


class Swinv2Attention(nn.Module):
    """Cosine attention in a window: ``cos(q, k) * exp(min(logit_scale, log 100))`` plus
    ``16 * sigmoid(cpb_mlp(coords))``; the key has no bias."""

    def __init__(self, dim: int, heads: int, *, window: int, pretrained_window: int,
                 qkv_bias: bool, dropout: float):
        super().__init__()
        self.heads, self.window, self.pretrained_window = heads, window, pretrained_window
        self.dropout = dropout
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True),
                                     nn.Linear(512, heads, bias=False))
        self.query = nn.Linear(dim, dim, bias=qkv_bias)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=qkv_bias)
        self.out = nn.Linear(dim, dim)

    def _position_bias(self) -> torch.Tensor:
        weight = cast(nn.Linear, self.cpb_mlp[0]).weight
        table = self.cpb_mlp(_coords_table(self.window, self.pretrained_window).to(
            device=weight.device, dtype=weight.dtype))  # [(2w-1)^2, heads]
        n = self.window * self.window
        bias = table[SwinBlock._relative_index(self.window).to(weight.device)]
        return 16 * torch.sigmoid(bias.view(n, n, -1).permute(2, 0, 1)).unsqueeze(0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scale = torch.clamp(self.logit_scale, max=math.log(1.0 / 0.01)).exp()
        q = F.normalize(q, dim=-1) * scale
        bias = self._position_bias()
        if mask is not None:
            bias = bias + mask
        out = F.scaled_dot_product_attention(
            q, F.normalize(k, dim=-1), v, attn_mask=bias.to(q.dtype),
            dropout_p=self.dropout if self.training else 0.0, scale=1.0)
        return self.out(out.transpose(1, 2).reshape(b, n, c))


class Swinv2Block(nn.Module):
    """``x + norm1(attn(x))`` then ``x + norm2(mlp(x))`` on a ``[batch, H, W, C]`` map, the
    attention in (shifted) windows padded to whole windows."""

    def __init__(self, config: Swinv2Config, dim: int, heads: int, *, resolution: int,
                 shift: bool, drop_path: float, pretrained_window: int):
        super().__init__()
        self.window = min(config.window_size, resolution)
        self.shift = self.window // 2 if shift and resolution > config.window_size else 0
        self.drop_path = drop_path
        self.attention = Swinv2Attention(dim, heads, window=self.window,
                                         pretrained_window=pretrained_window,
                                         qkv_bias=config.qkv_bias,
                                         dropout=config.attention_probs_dropout_prob)
        self.attn_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = FeedForward(dim, int(config.mlp_ratio * dim), config.hidden_act)
        self.mlp_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = attend_in_windows(x, self.window, self.shift,
                              lambda windows, mask: self.drop(self.attention(windows, mask)))
        x = x + _drop_path(self.attn_norm(y), self.drop_path, self.training)
        return x + _drop_path(self.mlp_norm(self.drop(self.mlp(x))), self.drop_path,
                              self.training)


class Swinv2PatchMerging(nn.Module):
    """2x2 neighbourhoods concatenated, projected to ``2C``, then normed."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(merge_patches(x)))


class Swinv2Stage(SwinStage):
    """Swin's stage of V2 blocks (windows shrunk to a smaller map) and V2 patch merging."""

    def _block(self, config: SwinConfig, index: int, dim: int, shift: bool,
               drop_path: float) -> nn.Module:
        config = cast(Swinv2Config, config)
        return Swinv2Block(config, dim, config.num_heads[index],
                           resolution=min(config.grid) // 2 ** index, shift=shift,
                           drop_path=drop_path,
                           pretrained_window=config.pretrained_window_sizes[index])

    def _merging(self, dim: int, eps: float) -> nn.Module:
        return Swinv2PatchMerging(dim, eps)


# transformers' names → ours (the layout part is inverted to save)
_V2_ALIASES: tuple[tuple[str, str], ...] = ((r"^swinv2\.", "backbone."), (r"^swin\.", "backbone."))
_V2_LAYOUT: tuple[tuple[str, str], ...] = (
    (r"embeddings\.patch_embeddings\.projection\.", "embeddings.patch_embed."),
    (r"encoder\.layers\.(\d+)\.", r"stages.\1."),
    (r"\.attention\.self\.logit_scale$", ".attention.logit_scale"),
    (r"\.attention\.self\.continuous_position_bias_mlp\.", ".attention.cpb_mlp."),
    (r"\.attention\.self\.(query|key|value)\.", r".attention.\1."),
    (r"\.attention\.output\.dense\.", ".attention.out."),
    (r"\.intermediate\.dense\.", ".mlp.fc_in."),
    (r"\.output\.dense\.", ".mlp.fc_out."),
    (r"\.layernorm_before\.", ".attn_norm."),
    (r"\.layernorm_after\.", ".mlp_norm."),
    (r"^layernorm\.", "norm."),
    (r"^backbone\.layernorm\.", "backbone.norm."),
)


class Swinv2PreTrainedModel(SwinPreTrainedModel):
    config: Swinv2Config
    config_class = Swinv2Config
    checkpoint_key_rules = _V2_ALIASES + _V2_LAYOUT
    checkpoint_write_rules = invert_key_rules(_V2_LAYOUT) + ((r"^backbone\.", "swinv2."),)

    def init_module_weights(self, module: nn.Module) -> None:
        super().init_module_weights(module)
        if isinstance(module, Swinv2Attention):
            nn.init.constant_(module.logit_scale, math.log(10))


@register_model("swinv2", "image-feature-extraction")
@register_model("swinv2", "base")
class Swinv2Model(Swinv2PreTrainedModel, SwinModel):
    """The Swin V2 encoder: Swin's, with V2 stages, and windows sized for the configured
    ``image_size`` (another size fails). ``forward(pixel_values)`` returns ``hidden_states``
    (the normed last stage, ``[batch, h * w, channels]``), ``logits`` (the same) and ``pooled``
    (their mean)."""

    stage_class = Swinv2Stage
    fixed_image_size = True


@register_model("swinv2", "image-classification")
class Swinv2ForImageClassification(Swinv2PreTrainedModel, SwinForImageClassification):
    """A linear classifier on the averaged last stage. Tasks: image-classification."""

    backbone_class = Swinv2Model
