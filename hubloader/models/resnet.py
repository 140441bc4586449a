"""ResNet (v1.5, as Hugging Face's ``microsoft/resnet-*``): conv stem, four stages of
bottleneck (or basic) residual blocks (layer → block → stage → model), global average pooling,
and a linear classifier. Its features are hierarchical: every stage halves the resolution.

Hugging Face checkpoints (``resnet.encoder.stages.S.layers.L.layer.K.convolution.weight``...)
load directly through ``checkpoint_key_rules``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..load.config import ModelConfig
from ..errors import ConfigError
from ..load.features import FeatureEntry, spatial_features
from ..load.modeling import BaseModel
from ..load.registry import register_model
from ._inputs import check_no_other_inputs, check_pixel_values
from .layers import get_activation
from .heads import classification_loss, labels_count, num_labels

__all__ = ["ResNetConfig", "ResNetBottleneckBlock", "ResNetBasicBlock", "ResNetModel",
           "ResNetForImageClassification"]


@dataclass
class ResNetConfig(ModelConfig):
    """Hugging Face's ResNet config fields (defaults: ResNet-50)."""

    model_type = "resnet"

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    layer_type: str = "bottleneck"
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    num_labels: int | None = None
    id2label: dict | None = None
    label2id: dict | None = None
    problem_type: str | None = None

    def validate(self) -> None:
        if self.layer_type not in ("bottleneck", "basic"):
            raise ConfigError(f"layer_type must be 'bottleneck' or 'basic', got {self.layer_type!r}")
        if not self.depths or len(self.depths) != len(self.hidden_sizes):
            raise ConfigError(f"depths {self.depths} and hidden_sizes {self.hidden_sizes} must be "
                              "non-empty lists of the same length")
        if min(self.depths + self.hidden_sizes + [self.embedding_size, self.num_channels]) <= 0:
            raise ConfigError("depths, hidden_sizes, embedding_size and num_channels must be positive")
        if self.layer_type == "bottleneck" and any(h % 4 for h in self.hidden_sizes):
            raise ConfigError(f"bottleneck hidden_sizes must be multiples of 4, got {self.hidden_sizes}")
        self.num_labels = labels_count(self.num_labels, self.id2label)
        get_activation(self.hidden_act)


# -- layer level ----------------------------------------------------------------------------
class ConvNormAct(nn.Module):
    """``act(batch_norm(conv(x)))`` with "same" padding; ``activation=None`` skips the act."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 activation: str | None = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm = nn.BatchNorm2d(out_ch)
        self.act = get_activation(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResNetStem(nn.Module):
    """7x7 stride-2 conv, norm, act, 3x3 stride-2 max pool: resolution / 4."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.conv = ConvNormAct(config.num_channels, config.embedding_size, 7, 2, config.hidden_act)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


# -- block level ----------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str):
        super().__init__()
        self.shortcut = (ConvNormAct(in_ch, out_ch, 1, stride, None)
                         if in_ch != out_ch or stride != 1 else nn.Identity())
        self.act = get_activation(activation)
        self.convs = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class ResNetBottleneckBlock(_Residual):
    """1x1 reduce (by 4) → 3x3 → 1x1 expand, plus the shortcut. The stride sits on the 3x3
    conv (v1.5) unless ``downsample_in_bottleneck``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str,
                 downsample_in_bottleneck: bool = False):
        super().__init__(in_ch, out_ch, stride, activation)
        mid = out_ch // 4
        first, second = (stride, 1) if downsample_in_bottleneck else (1, stride)
        self.convs = nn.Sequential(ConvNormAct(in_ch, mid, 1, first, activation),
                                   ConvNormAct(mid, mid, 3, second, activation),
                                   ConvNormAct(mid, out_ch, 1, 1, None))


class ResNetBasicBlock(_Residual):
    """Two 3x3 convs plus the shortcut (ResNet-18/34)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, activation: str, **_: Any):
        super().__init__(in_ch, out_ch, stride, activation)
        self.convs = nn.Sequential(ConvNormAct(in_ch, out_ch, 3, stride, activation),
                                   ConvNormAct(out_ch, out_ch, 3, 1, None))


class ResNetStage(nn.Module):
    def __init__(self, config: ResNetConfig, in_ch: int, out_ch: int, stride: int, depth: int):
        super().__init__()
        block = ResNetBottleneckBlock if config.layer_type == "bottleneck" else ResNetBasicBlock
        kw = {"downsample_in_bottleneck": config.downsample_in_bottleneck}
        self.blocks = nn.Sequential(
            block(in_ch, out_ch, stride, config.hidden_act, **kw),
            *[block(out_ch, out_ch, 1, config.hidden_act, **kw) for _ in range(depth - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


# -- model level ----------------------------------------------------------------------------
_RESNET_RULES: tuple[tuple[str, str], ...] = (
    (r"^resnet\.", "backbone."),
    (r"encoder\.stages\.", "stages."),
    (r"\.layers\.(\d+)\.layer\.(\d+)\.", r".blocks.\1.convs.\2."),
    (r"\.layers\.(\d+)\.shortcut\.", r".blocks.\1.shortcut."),
    (r"\.convolution\.", ".conv."),
    (r"\.normalization\.", ".norm."),
    # after the two above, so that inverted (before them) its own "conv." stays as it is
    (r"embedder\.embedder\.", "stem.conv."),
    (r"^classifier\.1\.", "classifier."),
)


class ResNetPreTrainedModel(BaseModel[ResNetConfig]):
    """Shared declarations of the ResNet family."""

    config_class = ResNetConfig
    base_model_prefix = "backbone"
    checkpoint_key_rules = _RESNET_RULES
    hierarchical_features = True
    input_rank = 4

    def init_module_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
        elif isinstance(module, nn.Linear):
            module.reset_parameters()

    def _strides(self) -> list[int]:
        """The reduction of the stem and of each stage's output."""
        out, r = [4], 4 * (2 if self.config.downsample_in_first_stage else 1)
        for _ in self.config.hidden_sizes:
            out.append(r)
            r *= 2
        return out

    def feature_entries(self) -> list[FeatureEntry]:
        """The stem's output, then every stage's: ``[channels, H / r, W / r]`` per sample."""
        p, c = self._module_prefix(), self.config
        strides = self._strides()
        entries = [spatial_features(f"{p}stem", c.embedding_size, strides[0])]
        entries += [spatial_features(f"{p}stages.{i}", width, strides[i + 1])
                    for i, width in enumerate(c.hidden_sizes)]
        return entries


@register_model("resnet", "image-feature-extraction")
@register_model("resnet", "base")
class ResNetModel(ResNetPreTrainedModel):
    """The ResNet backbone. ``forward(pixel_values)`` returns ``hidden_states`` (the last
    feature map ``[batch, C, h, w]``), ``logits`` and ``pooled`` (global average, ``[batch, C]``)."""

    def __init__(self, config: ResNetConfig):
        super().__init__(config)
        self.stem = ResNetStem(config)
        widths = [config.embedding_size] + list(config.hidden_sizes)
        strides = [2 if config.downsample_in_first_stage else 1] + [2] * (len(config.depths) - 1)
        self.stages = nn.ModuleList(
            ResNetStage(config, widths[i], widths[i + 1], strides[i], depth)
            for i, depth in enumerate(config.depths))

    def forward(self, pixel_values: torch.Tensor | None = None, *,
                output_hidden_states: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Args:
            pixel_values: ``[batch, channels, height, width]`` floats (any size >= 1 pixel).

        Raises:
            InputError: a missing, non-tensor, wrongly shaped or non-float input.
        """
        check_no_other_inputs("ResNet", kwargs, "pixel_values")
        pixel_values = check_pixel_values(pixel_values, num_channels=self.config.num_channels)
        x = self.stem(pixel_values.to(self.stem.conv.conv.weight.dtype))
        states = [x] if output_hidden_states else None
        for stage in self.stages:
            x = stage(x)
            if states is not None:
                states.append(x)
        pooled = x.mean(dim=(2, 3))
        out = self._outputs(x, x, pooled=pooled)
        if states is not None:
            out["all_hidden_states"] = tuple(states)
        return out


@register_model("resnet", "image-classification")
class ResNetForImageClassification(ResNetPreTrainedModel):
    """A linear classifier on the pooled features. Tasks: image-classification, classification."""

    new_head_keys = (r"^classifier\.",)

    def __init__(self, config: ResNetConfig):
        super().__init__(config)
        self.backbone = ResNetModel(config)
        self.classifier = nn.Linear(config.hidden_sizes[-1], num_labels(config))

    def forward(self, pixel_values: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        """Returns ``logits`` ``[batch, num_labels]``, ``hidden_states``, ``loss`` with labels."""
        enc = self.backbone(pixel_values, **kwargs)
        logits = self.classifier(enc["pooled"])
        loss = classification_loss(self.config, logits, labels) if labels is not None else None
        return self._outputs(logits, enc["hidden_states"], loss)
