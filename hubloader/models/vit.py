"""ViT: patch + position embeddings with a class token, pre-norm encoder blocks (layer → block →
model), and the image classification head on the class token.

Hugging Face checkpoints (``vit.encoder.layer.N.attention.attention.query.weight``...) load
directly through ``checkpoint_key_rules``. Inputs are ``pixel_values`` of the configured size
(see :mod:`hubloader.vision.preprocessing`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..load.config import ModelConfig
from ..errors import ConfigError, InputError
from ..load.features import FeatureEntry
from ..load.modeling import BaseModel
from ..load.registry import register_model
from ._inputs import check_no_other_inputs, check_pixel_values
from .heads import classification_loss, labels_count, num_labels
from .layers import FeedForward, MultiHeadAttention, get_activation, init_standard

__all__ = ["ViTConfig", "ViTBlock", "ViTModel", "ViTForImageClassification",
           "classification_loss", "labels_count"]


def _pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass
class ViTConfig(ModelConfig):
    model_type = "vit"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list[int] = 224
    patch_size: int | list[int] = 16
    num_channels: int = 3
    qkv_bias: bool = True
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"
    num_labels: int | None = None
    id2label: dict | None = None
    label2id: dict | None = None
    problem_type: str | None = None

    def validate(self) -> None:
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "num_channels"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be a multiple of "
                              f"num_attention_heads {self.num_attention_heads}")
        (h, w), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        if min(h, w, ph, pw) <= 0 or h % ph or w % pw:
            raise ConfigError(f"image_size {self.image_size} must be a positive multiple of "
                              f"patch_size {self.patch_size}")
        self.num_labels = labels_count(self.num_labels, self.id2label)
        get_activation(self.hidden_act)
        get_activation(self.pooler_act)

    @property
    def grid(self) -> tuple[int, int]:
        (h, w), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        return h // ph, w // pw


# -- layer level ----------------------------------------------------------------------------
class ViTEmbeddings(nn.Module):
    """Conv patch embedding, a learned class token, learned positions."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        gh, gw = config.grid
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, gh * gw + 1, config.hidden_size))
        self.patch_embed = nn.Conv2d(config.num_channels, config.hidden_size,
                                     kernel_size=_pair(config.patch_size),
                                     stride=_pair(config.patch_size))
        self.drop = nn.Dropout(config.hidden_dropout_prob)
        self.grid = config.grid

    def forward(self, pixel_values: torch.Tensor, interpolate: bool = False) -> torch.Tensor:
        patches = self.patch_embed(pixel_values)
        grid = tuple(patches.shape[2:])
        x = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        pos: torch.Tensor = self.position_embeddings
        if interpolate and grid != self.grid:
            pos = self._resized_positions(grid)
        return self.drop(torch.cat([cls, x], dim=1) + pos)

    def _resized_positions(self, grid: tuple[int, int]) -> torch.Tensor:
        """The learned patch positions resized bicubically to ``grid`` (DINO's recipe, the one
        ``transformers`` uses for ``interpolate_pos_encoding``); the class position is kept."""
        dim = self.position_embeddings.shape[-1]
        cls_pos, patch_pos = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        patch_pos = patch_pos.reshape(1, *self.grid, dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


# -- block level ----------------------------------------------------------------------------
class ViTBlock(nn.Module):
    """Pre-norm encoder block: ``x + attn(norm_before(x))`` then ``x + mlp(norm_after(x))``."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.norm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_probs_dropout_prob,
                                            bias=config.qkv_bias)
        self.norm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm_before(x)))
        return x + self.drop(self.mlp(self.norm_after(x)))


# -- model level ----------------------------------------------------------------------------
_VIT_RULES: tuple[tuple[str, str], ...] = (
    (r"^vit\.", "backbone."),
    (r"embeddings\.patch_embeddings\.projection\.", "embeddings.patch_embed."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.", r"blocks.\1.attention.\2."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attention.out."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc_in."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc_out."),
    (r"encoder\.layer\.(\d+)\.layernorm_(before|after)\.", r"blocks.\1.norm_\2."),
    (r"(^|\.)layernorm\.", r"\1norm."),
)


# timm's names (FlagAI's ``vit-*`` checkpoints) → transformers'; the fused qkv is split apart
_TIMM_RULES = tuple((re.compile(p), r) for p, r in (
    (r"^cls_token$", "vit.embeddings.cls_token"),
    (r"^pos_embed$", "vit.embeddings.position_embeddings"),
    (r"^patch_embed\.proj\.", "vit.embeddings.patch_embeddings.projection."),
    (r"^blocks\.(\d+)\.norm1\.", r"vit.encoder.layer.\1.layernorm_before."),
    (r"^blocks\.(\d+)\.norm2\.", r"vit.encoder.layer.\1.layernorm_after."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"vit.encoder.layer.\1.attention.output.dense."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", r"vit.encoder.layer.\1.intermediate.dense."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", r"vit.encoder.layer.\1.output.dense."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"vit.encoder.layer.\1.attention.attention.qkv."),
    (r"^norm\.", "vit.layernorm."),
    (r"^head\.", "classifier."),
))


def split_qkv(key: str, value: torch.Tensor, out: dict[str, torch.Tensor], *,
              names: tuple[str, str, str] = ("query", "key", "value")) -> bool:
    """A fused ``<stem>.qkv.<weight|bias>`` tensor → three entries of ``out``; ``False`` when
    ``key`` is no fused projection."""
    stem, _, kind = key.rpartition(".qkv.")
    if not stem or kind not in ("weight", "bias"):
        return False
    for name, part in zip(names, value.chunk(3, dim=0)):
        out[f"{stem}.{name}.{kind}"] = part
    return True


def rename_split_qkv(state: dict[str, torch.Tensor],
                     rules: Iterable[tuple[re.Pattern[str], str]]) -> dict[str, torch.Tensor]:
    """Every key through the compiled ``rules`` in order, then each fused ``qkv`` tensor split
    (:func:`split_qkv`): a timm-style checkpoint (timm's, Microsoft's) → transformers' names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = pattern.sub(repl, key)
        if not split_qkv(key, value, out):
            out[key] = value
    return out


def from_timm_vit(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's / FlagAI's ViT checkpoint → transformers' names."""
    return rename_split_qkv(state, _TIMM_RULES)


class ViTPreTrainedModel(BaseModel[ViTConfig]):
    """Shared declarations of the ViT family."""

    config_class = ViTConfig
    base_model_prefix = "backbone"
    checkpoint_key_rules = _VIT_RULES
    input_rank = 4

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "pos_embed" in state or "cls_token" in state:  # timm's layout (FlagAI's vit-*)
            state = from_timm_vit(state)
        return super().convert_checkpoint(state)

    def init_module_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if init_standard(module, std, truncated=True):
            return
        if isinstance(module, ViTEmbeddings):
            nn.init.trunc_normal_(module.position_embeddings, 0.0, std)
            nn.init.trunc_normal_(module.cls_token, 0.0, std)

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every block: ``[1 + patches, hidden_size]`` per sample."""
        prefix, (ph, pw), width = self._module_prefix(), _pair(self.config.patch_size), \
            self.config.hidden_size

        def shape(s: tuple[int, ...]) -> tuple[int, ...]:
            return (1 + (s[1] // ph) * (s[2] // pw), width)

        return [FeatureEntry(f"{prefix}blocks.{i}", shape)
                for i in range(self.config.num_hidden_layers)]


@register_model("vit", "image-feature-extraction")
@register_model("vit", "base")
class ViTModel(ViTPreTrainedModel):
    """The ViT encoder. ``forward(pixel_values)`` returns ``logits`` and ``hidden_states``
    (the normed last states, ``[batch, 1 + patches, hidden]``) and ``pooled`` (tanh pooler on
    the class token, if present)."""

    new_head_keys = (r"^pooler\.",)

    def __init__(self, config: ViTConfig, add_pooler: bool = True):
        super().__init__(config)
        self.embeddings = ViTEmbeddings(config)
        self.blocks = nn.ModuleList(ViTBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = None
        if add_pooler:
            self.pooler = nn.ModuleDict({
                "dense": nn.Linear(config.hidden_size,
                                   config.pooler_output_size or config.hidden_size)})
            self.pooler_act = get_activation(config.pooler_act)

    def forward(self, pixel_values: torch.Tensor | None = None, *,
                output_hidden_states: bool = False, interpolate_pos_encoding: bool = False,
                **kwargs: Any) -> dict[str, Any]:
        """Args:
            pixel_values: ``[batch, channels, height, width]`` floats of the configured size.
            output_hidden_states: add every block's output as ``all_hidden_states``.
            interpolate_pos_encoding: accept other image sizes (at least one patch each way);
                the learned positions are resized bicubically to the image's patch grid.

        Raises:
            InputError: a missing, non-tensor, wrongly shaped or non-float input.
        """
        check_no_other_inputs("ViT", kwargs, "pixel_values")
        c = self.config
        pixel_values = check_pixel_values(
            pixel_values, num_channels=c.num_channels,
            image_size=None if interpolate_pos_encoding else _pair(c.image_size),
            size_hint=", or pass interpolate_pos_encoding=True")
        (ph, pw) = _pair(c.patch_size)
        if pixel_values.shape[2] < ph or pixel_values.shape[3] < pw:
            raise InputError(f"pixel_values is {tuple(pixel_values.shape[2:])} pixels, smaller "
                             f"than one {ph}x{pw} patch")
        x = self.embeddings(pixel_values.to(self.embeddings.position_embeddings.dtype),
                            interpolate=interpolate_pos_encoding)
        states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x)
            if states is not None:
                states.append(x)
        x = self.norm(x)
        out = self._outputs(x, x)
        if self.pooler is not None:
            out["pooled"] = self.pooler_act(self.pooler["dense"](x[:, 0]))
        if states is not None:
            out["all_hidden_states"] = tuple(states)
        return out


@register_model("vit", "image-classification")
class ViTForImageClassification(ViTPreTrainedModel):
    """A linear classifier on the class token. Tasks: image-classification, classification."""

    new_head_keys = (r"^classifier\.",)
    ignore_checkpoint_keys = (r"^backbone\.pooler\.",)

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.backbone = ViTModel(config, add_pooler=False)
        self.classifier = nn.Linear(config.hidden_size, num_labels(config))

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        """Returns ``logits`` ``[batch, num_labels]``, ``hidden_states``, and ``loss`` with labels."""
        enc = self.backbone(pixel_values, **kwargs)
        logits = self.classifier(enc["hidden_states"][:, 0])
        loss = classification_loss(self.config, logits, labels) if labels is not None else None
        return self._outputs(logits, enc["hidden_states"], loss)
