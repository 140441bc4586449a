"""Swin Transformer: patch embedding, stages of (shifted-)window attention blocks joined by patch
merging, and the image classification head on the averaged last stage.

Blocks work on channels-last maps ``[batch, height, width, channels]``, so a block's output (the
feature the downstream-platform interface captures) has the per-sample shape
``(height, width, channels)`` of the platform's Swin example. Hugging Face checkpoints
(``swin.encoder.layers.N.blocks.M.attention.self.query.weight``...) load through
``checkpoint_key_rules``; ``all_hidden_states`` are transformers' ``hidden_states``
(``[batch, height * width, channels]``: the embeddings, then every stage's output).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, cast

import torch
from torch import nn

from ..load.checkpoint_keys import invert_key_rules
from ..load.config import ModelConfig
from ..errors import ConfigError, InputError
from ..load.features import FeatureEntry
from ..load.modeling import BaseModel
from ..load.registry import register_model
from ._inputs import check_no_other_inputs, check_pixel_values
from .layers import FeedForward, MultiHeadAttention, get_activation, init_standard
from .heads import classification_loss, labels_count
from .vit import _pair, rename_split_qkv

__all__ = ["SwinConfig", "SwinBlock", "SwinModel", "SwinForImageClassification"]


@dataclass
class SwinConfig(ModelConfig):
    """Hugging Face's Swin config fields (defaults: swin-tiny-patch4-window7-224)."""

    model_type = "swin"

    image_size: int | list[int] = 224
    patch_size: int | list[int] = 4
    num_channels: int = 3
    embed_dim: int = 96
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.1
    hidden_act: str = "gelu"
    use_absolute_embeddings: bool = False
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    num_labels: int | None = None
    id2label: dict | None = None
    label2id: dict | None = None
    problem_type: str | None = None

    def validate(self) -> None:
        if not self.depths or len(self.depths) != len(self.num_heads):
            raise ConfigError(f"depths {self.depths} and num_heads {self.num_heads} must be "
                              "non-empty lists of the same length")
        if min(list(self.depths) + list(self.num_heads) + [self.embed_dim, self.num_channels,
                                                           self.window_size]) <= 0:
            raise ConfigError("depths, num_heads, embed_dim, num_channels and window_size must "
                              "be positive")
        for i, heads in enumerate(self.num_heads):
            if self.stage_dim(i) % heads:
                raise ConfigError(f"stage {i} has width {self.stage_dim(i)}, not a multiple of "
                                  f"num_heads[{i}] = {heads}")
        if min(_pair(self.patch_size)) <= 0:
            raise ConfigError(f"patch_size must be positive, got {self.patch_size}")
        self.num_labels = labels_count(self.num_labels, self.id2label)
        get_activation(self.hidden_act)

    def stage_dim(self, stage: int) -> int:
        """The channel width of ``stage`` (it doubles at every patch merging)."""
        return self.embed_dim * 2 ** stage

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid of the configured image size."""
        (h, w), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        return -(-h // ph), -(-w // pw)


def _window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[b, H, W, c]`` → ``[b * windows, size * size, c]`` (row-major windows per sample)."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).transpose(2, 3)
    return x.reshape(-1, size * size, c)


def _window_reverse(windows: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // size, w // size, size, size, c).transpose(2, 3)
    return x.reshape(-1, h, w, c)


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch of some samples while training."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def shift_mask(h: int, w: int, window: int, shift: int, device: torch.device,
               dtype: torch.dtype) -> torch.Tensor:
    """``[windows, 1, n, n]``: -100 between positions that the cyclic shift made neighbours
    but that come from different regions of the map."""
    regions = torch.zeros(1, h, w, 1, device=device, dtype=dtype)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for ws in cuts:
            regions[:, hs, ws, :] = label
            label += 1
    ids = _window_partition(regions, window).squeeze(-1)  # [windows, n]
    mask = ids[:, None, :] - ids[:, :, None]
    return mask.masked_fill(mask != 0, -100.0).unsqueeze(1)


def attend_in_windows(x: torch.Tensor, window: int, shift: int,
                      attend: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                      ) -> torch.Tensor:
    """``attend(windows, mask)`` over the windows of a ``[batch, H, W, C]`` map, padded to whole
    windows and cyclically shifted by ``shift`` (``mask``: :func:`shift_mask` per window, or
    ``None`` unshifted); the result is put back in place, unshifted, cropped to ``H x W``."""
    b, h, w, _ = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    y = nn.functional.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    mask = None
    if shift:
        y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        per_window = shift_mask(hp, wp, window, shift, x.device, x.dtype)
        mask = per_window.unsqueeze(0).expand(b, -1, -1, -1, -1).reshape(
            -1, 1, *per_window.shape[-2:])
    y = _window_reverse(attend(_window_partition(y, window), mask), window, hp, wp)
    if shift:
        y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
    return y[:, :h, :w, :]


def merge_patches(x: torch.Tensor) -> torch.Tensor:
    """``[batch, H, W, C]`` → ``[batch, H/2, W/2, 4C]``: each 2x2 neighbourhood concatenated
    (an odd side padded)."""
    h, w = x.shape[1:3]
    x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    return torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)


# -- block level ----------------------------------------------------------------------------
class SwinBlock(nn.Module):
    """Window attention (shifted by half a window in every other block) and an MLP, both
    pre-norm residuals, on a ``[batch, H, W, C]`` map (padded to whole windows inside)."""

    def __init__(self, config: SwinConfig, dim: int, heads: int, *, shift: bool,
                 drop_path: float):
        super().__init__()
        self.window = config.window_size
        self.shift = self.window // 2 if shift else 0
        self.drop_path = drop_path
        self.norm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = MultiHeadAttention(dim, heads, bias=config.qkv_bias,
                                            dropout=config.attention_probs_dropout_prob)
        size = 2 * self.window - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(size * size, heads))
        self.norm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = FeedForward(dim, int(config.mlp_ratio * dim), config.hidden_act)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    @staticmethod
    def _relative_index(window: int) -> torch.Tensor:
        """Row of the bias table for every (query, key) pair of a window (a cached CPU tensor,
        not a buffer: models are built on the meta device and buffers are not in checkpoints).
        Under ``torch.compile``/``torch.export`` it is built afresh: a tensor made while tracing
        is a fake one and must not reach the cache."""
        if torch.compiler.is_compiling():
            return SwinBlock._relative_index_uncached(window)
        return SwinBlock._relative_index_cached(window)

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _relative_index_cached(window: int) -> torch.Tensor:
        return SwinBlock._relative_index_uncached(window)

    @staticmethod
    def _relative_index_uncached(window: int) -> torch.Tensor:
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).reshape(-1)

    def _position_bias(self) -> torch.Tensor:
        n = self.window * self.window
        table = self.relative_position_bias_table
        bias = table[self._relative_index(self.window).to(table.device)]
        return bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)  # [1, heads, n, n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a map no larger than one window is attended whole, so a shift would change nothing
        shift = self.shift if min(x.shape[1:3]) > self.window else 0
        y = attend_in_windows(self.norm_before(x), self.window, shift, self._attend)
        x = x + _drop_path(y, self.drop_path, self.training)
        return x + _drop_path(self.drop(self.mlp(self.norm_after(x))), self.drop_path,
                              self.training)

    def _attend(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.drop(self.attention(windows, bias=self._position_bias(), mask=mask))


class SwinPatchMerging(nn.Module):
    """2x2 neighbourhoods concatenated (``[b, H/2, W/2, 4C]``), normed, projected to ``2C``."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(merge_patches(x)))


class SwinStage(nn.Module):
    """The blocks of one resolution, then patch merging (all stages but the last)."""

    def __init__(self, config: SwinConfig, index: int, drop_paths: list[float]):
        super().__init__()
        dim = config.stage_dim(index)
        self.blocks = nn.ModuleList(self._block(config, index, dim, j % 2 == 1, drop_paths[j])
                                    for j in range(config.depths[index]))
        last = index == len(config.depths) - 1
        self.downsample = None if last else self._merging(dim, config.layer_norm_eps)

    def _block(self, config: SwinConfig, index: int, dim: int, shift: bool,
               drop_path: float) -> nn.Module:
        return SwinBlock(config, dim, config.num_heads[index], shift=shift, drop_path=drop_path)

    def _merging(self, dim: int, eps: float) -> nn.Module:
        return SwinPatchMerging(dim, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


def build_stages(config: SwinConfig, stage_class: type[SwinStage] = SwinStage) -> nn.ModuleList:
    """One stage per entry of ``config.depths``, the drop-path rate rising linearly over all
    blocks from 0 to ``drop_path_rate``."""
    total = sum(config.depths)
    rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    starts = [sum(config.depths[:i]) for i in range(len(config.depths))]
    return nn.ModuleList(stage_class(config, i, rates[starts[i]:starts[i] + d])
                         for i, d in enumerate(config.depths))


class SwinEmbeddings(nn.Module):
    """Conv patch embedding (the image padded to whole patches), a norm, optional absolute
    positions."""

    def __init__(self, config: SwinConfig):
        super().__init__()
        self.patch = _pair(config.patch_size)
        self.patch_embed = nn.Conv2d(config.num_channels, config.embed_dim,
                                     kernel_size=self.patch, stride=self.patch)
        self.norm = nn.LayerNorm(config.embed_dim)
        gh, gw = config.grid
        self.position_embeddings = (nn.Parameter(torch.zeros(1, gh * gw, config.embed_dim))
                                    if config.use_absolute_embeddings else None)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h, w = pixel_values.shape[2:]
        pixel_values = nn.functional.pad(pixel_values, (0, (-w) % self.patch[1],
                                                        0, (-h) % self.patch[0]))
        x = self.patch_embed(pixel_values).permute(0, 2, 3, 1)  # [b, gh, gw, c]
        x = self.norm(x)
        if self.position_embeddings is not None:
            if self.position_embeddings.shape[1] != x.shape[1] * x.shape[2]:
                raise InputError(f"pixel_values of {h}x{w} pixels give a {x.shape[1]}x"
                                 f"{x.shape[2]} patch grid; this model's absolute positions "
                                 "fit only its configured image_size")
            x = x + self.position_embeddings.view(1, x.shape[1], x.shape[2], -1)
        return self.drop(x)


# -- model level ----------------------------------------------------------------------------
# transformers' names → ours; the layout part is inverted to save (checkpoint_keys)
_SWIN_ALIASES: tuple[tuple[str, str], ...] = (  # read only: the head's prefix, and the
    (r"^swin\.", "backbone."),                   # module names transformers 5 uses in memory
    (r"\.attention\.q_proj\.", ".attention.self.query."),
    (r"\.attention\.k_proj\.", ".attention.self.key."),
    (r"\.attention\.v_proj\.", ".attention.self.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.attention\.relative_position_bias\.relative_position_bias_table$",
     ".attention.self.relative_position_bias_table"),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)
_SWIN_LAYOUT: tuple[tuple[str, str], ...] = (
    (r"embeddings\.patch_embeddings\.projection\.", "embeddings.patch_embed."),
    (r"encoder\.layers\.(\d+)\.", r"stages.\1."),
    (r"\.attention\.self\.relative_position_bias_table$", ".relative_position_bias_table"),
    (r"\.attention\.self\.(query|key|value)\.", r".attention.\1."),
    (r"\.attention\.output\.dense\.", ".attention.out."),
    (r"\.intermediate\.dense\.", ".mlp.fc_in."),
    (r"\.output\.dense\.", ".mlp.fc_out."),
    (r"\.layernorm_(before|after)\.", r".norm_\1."),
    (r"^layernorm\.", "norm."),
    (r"^backbone\.layernorm\.", "backbone.norm."),
)


# Microsoft's / timm's names (FlagAI's ``swinv1-*`` checkpoints) → transformers'
_MS_RULES = tuple((re.compile(p), r) for p, r in (
    (r"^patch_embed\.proj\.", "swin.embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "swin.embeddings.norm."),
    (r"^absolute_pos_embed$", "swin.embeddings.position_embeddings"),
    (r"^layers\.", "swin.encoder.layers."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.attn\.relative_position_bias_table$", ".attention.self.relative_position_bias_table"),
    (r"\.attn\.relative_position_index$", ".attention.self.relative_position_index"),
    (r"\.attn\.proj\.", ".attention.output.dense."),
    (r"\.attn\.qkv\.", ".attention.self.qkv."),
    # Swin V2's attention
    (r"\.attn\.q_bias$", ".attention.self.query.bias"),
    (r"\.attn\.v_bias$", ".attention.self.value.bias"),
    (r"\.attn\.logit_scale$", ".attention.self.logit_scale"),
    (r"\.attn\.cpb_mlp\.", ".attention.self.continuous_position_bias_mlp."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
    (r"^norm\.", "swin.layernorm."),
    (r"^head\.", "classifier."),
))


def from_microsoft_swin(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Microsoft's / FlagAI's Swin (V1 or V2) checkpoint → transformers' names (``swin.``
    prefixed; Swin V2 reads that prefix too)."""
    return rename_split_qkv(state, _MS_RULES)


class SwinPreTrainedModel(BaseModel):
    """Shared declarations of the Swin family."""

    config: SwinConfig
    config_class = SwinConfig
    base_model_prefix = "backbone"
    checkpoint_key_rules = _SWIN_ALIASES + _SWIN_LAYOUT
    checkpoint_write_rules = invert_key_rules(_SWIN_LAYOUT) + ((r"^backbone\.", "swin."),)
    ignore_checkpoint_keys = (r"relative_position_index$", r"embeddings\.mask_token$",
                              r"\.attn_mask$", r"relative_coords_table$")
    hierarchical_features = True
    input_rank = 4

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "patch_embed.proj.weight" in state:  # Microsoft's layout (FlagAI's swinv1-*)
            state = from_microsoft_swin(state)
        return super().convert_checkpoint(state)

    def init_module_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if init_standard(module, std, truncated=True):
            return
        if isinstance(module, SwinBlock):
            nn.init.trunc_normal_(module.relative_position_bias_table, 0.0, std)
        elif isinstance(module, SwinEmbeddings) and module.position_embeddings is not None:
            nn.init.trunc_normal_(module.position_embeddings, 0.0, std)

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every block: ``(H / r, W / r, width)`` per sample, where ``r`` is
        the patch size times ``2 ** stage``."""
        prefix, c = self._module_prefix(), self.config
        ph, pw = _pair(c.patch_size)
        entries = []
        for i, depth in enumerate(c.depths):
            def shape(s: tuple[int, ...], i: int = i) -> tuple[int, ...]:
                h, w = -(-s[1] // ph), -(-s[2] // pw)
                for _ in range(i):
                    h, w = -(-h // 2), -(-w // 2)
                return (h, w, c.stage_dim(i))

            entries += [FeatureEntry(f"{prefix}stages.{i}.blocks.{j}", shape, ph * 2 ** i)
                        for j in range(depth)]
        return entries


@register_model("swin", "image-feature-extraction")
@register_model("swin", "base")
class SwinModel(SwinPreTrainedModel):
    """The Swin encoder. ``forward(pixel_values)`` returns ``hidden_states`` (the normed last
    stage, ``[batch, h * w, channels]``), ``logits`` (the same) and ``pooled`` (their mean)."""

    discard_checkpoint_keys = (r"^classifier\.",)
    stage_class: ClassVar[type[SwinStage]] = SwinStage
    # whether the windows are sized for the configured image_size (Swin V2), so other sizes fail
    fixed_image_size: ClassVar[bool] = False

    def __init__(self, config: SwinConfig):
        super().__init__(config)
        self.embeddings = SwinEmbeddings(config)
        self.stages = build_stages(config, self.stage_class)
        self.norm = nn.LayerNorm(config.stage_dim(len(config.depths) - 1),
                                 eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor | None = None, *,
                output_hidden_states: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Args:
            pixel_values: ``[batch, channels, height, width]`` floats (any size, padded to
                whole patches and windows; with ``fixed_image_size``, the configured size).
            output_hidden_states: add ``all_hidden_states``: the embeddings and every stage's
                output, ``[batch, h * w, channels]`` each (transformers' ``hidden_states``).

        Raises:
            InputError: a missing, non-tensor, wrongly shaped or non-float input.
        """
        check_no_other_inputs(type(self).__name__, kwargs, "pixel_values")
        size = _pair(self.config.image_size) if self.fixed_image_size else None
        pixel_values = check_pixel_values(pixel_values, num_channels=self.config.num_channels,
                                          image_size=size)
        x = self.embeddings(pixel_values.to(self.embeddings.patch_embed.weight.dtype))
        states = [x.flatten(1, 2)] if output_hidden_states else None
        for stage in self.stages:
            x = stage(x)
            if states is not None:
                states.append(x.flatten(1, 2))
        x = self.norm(x.flatten(1, 2))
        out = self._outputs(x, x, pooled=x.mean(dim=1))
        if states is not None:
            out["all_hidden_states"] = tuple(states)
        return out


@register_model("swin", "image-classification")
class SwinForImageClassification(SwinPreTrainedModel):
    """A linear classifier on the averaged last stage. Tasks: image-classification."""

    task = "image-classification"
    new_head_keys = (r"^classifier\.",)

    backbone_class: ClassVar[type[SwinModel]] = SwinModel

    def __init__(self, config: SwinConfig):
        super().__init__(config)
        self.backbone = self.backbone_class(config)
        self.classifier = nn.Linear(config.stage_dim(len(config.depths) - 1),
                                    cast(int, config.num_labels))

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        """Returns ``logits`` ``[batch, num_labels]``, ``hidden_states``, and ``loss`` with labels."""
        enc = self.backbone(pixel_values, **kwargs)
        logits = self.classifier(enc["pooled"])
        loss = classification_loss(self.config, logits, labels) if labels is not None else None
        out = self._outputs(logits, enc["hidden_states"], loss)
        if "all_hidden_states" in enc:
            out["all_hidden_states"] = enc["all_hidden_states"]
        return out
