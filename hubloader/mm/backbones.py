"""mmpretrain's backbones with its names and arguments, built from hubloader's own layers.

``ResNet`` and ``ResNet_CIFAR`` are stacks of :mod:`hubloader.models.resnet`'s stem, stages
and blocks; ``VisionTransformer`` is :mod:`hubloader.models.vit`'s embeddings and blocks. The
math is the same as mmpretrain's; only the parameter names differ, and each backbone declares
the mapping (``mm_key_rules``, plus ``mm_fused_keys`` for mmpretrain's fused ``qkv``
projection) that :mod:`hubloader.mm.checkpoint` applies both ways.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..load.checkpoint_keys import KeyRules
from ..errors import ConfigError, InputError, WeightsMismatchError
from ..models.resnet import ConvNormAct, ResNetConfig, ResNetStage
from ..models.swin import SwinBlock, SwinConfig, SwinEmbeddings, build_stages
from ..models.vit import ViTBlock, ViTConfig, ViTEmbeddings
from ._args import check_choice, check_default, check_indices, check_int
from .registry import MODELS

__all__ = ["ResNet", "ResNet_CIFAR", "VisionTransformer", "SwinTransformer"]

#: depth → (block type, blocks per stage), as mmpretrain's ``ResNet.arch_settings``
_RESNET_ARCH: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _resnet_rules(num_stages: int) -> KeyRules:
    rules: list[tuple[str, str]] = [
        (r"^backbone\.conv1\.", "backbone.stem.conv.conv."),
        (r"^backbone\.bn1\.", "backbone.stem.conv.norm."),
        (r"^backbone\.stem\.(\d)\.conv\.", r"backbone.stem.convs.\1.conv."),
        (r"^backbone\.stem\.(\d)\.bn\.", r"backbone.stem.convs.\1.norm."),
    ]
    rules += [(rf"^backbone\.layer{s + 1}\.(\d+)\.", rf"backbone.stages.{s}.blocks.\1.")
              for s in range(num_stages)]
    for k in range(3):
        rules += [(rf"\.blocks\.(\d+)\.conv{k + 1}\.", rf".blocks.\1.convs.{k}.conv."),
                  (rf"\.blocks\.(\d+)\.bn{k + 1}\.", rf".blocks.\1.convs.{k}.norm.")]
    rules += [(r"\.blocks\.(\d+)\.downsample\.0\.", r".blocks.\1.shortcut.conv."),
              (r"\.blocks\.(\d+)\.downsample\.1\.", r".blocks.\1.shortcut.norm.")]
    return tuple(rules)


class _Stem(nn.Module):
    """mmpretrain's stems: one conv (7x7/2, or 3x3/1 for CIFAR) or the deep stem's three 3x3
    convs, then a 3x3/2 max pool (none for CIFAR)."""

    def __init__(self, in_ch: int, out_ch: int, *, deep: bool, cifar: bool):
        super().__init__()
        if deep:
            half = out_ch // 2
            self.convs = nn.Sequential(ConvNormAct(in_ch, half, 3, 2), ConvNormAct(half, half, 3, 1),
                                       ConvNormAct(half, out_ch, 3, 1))
        else:
            self.conv = ConvNormAct(in_ch, out_ch, 3, 1) if cifar else ConvNormAct(in_ch, out_ch, 7, 2)
        self.pool: nn.Module = nn.Identity() if cifar else nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x) if hasattr(self, "convs") else self.conv(x)
        return self.pool(x)


@MODELS.register_module()
class ResNet(nn.Module):
    """mmpretrain's ``ResNet`` (v1.5 with ``style='pytorch'``, v1 with ``'caffe'``).

    Returns a tuple of the feature maps of the stages in ``out_indices``.
    """

    _cifar = False

    def __init__(self, depth: int, in_channels: int = 3, stem_channels: int = 64,
                 base_channels: int = 64, expansion: int | None = None, num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2), dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: int | Sequence[int] = (3,), style: str = "pytorch",
                 deep_stem: bool = False, avg_down: bool = False, frozen_stages: int = -1,
                 conv_cfg: Any = None, norm_cfg: Any = None, norm_eval: bool = False,
                 with_cp: bool = False, zero_init_residual: bool = True, init_cfg: Any = None,
                 drop_path_rate: float = 0.0, _cfg_path: str = "backbone"):
        super().__init__()
        p = _cfg_path
        if depth not in _RESNET_ARCH:
            raise ConfigError(f"{p}.depth must be one of {sorted(_RESNET_ARCH)}, got {depth!r}")
        check_int(p, "num_stages", num_stages, low=1, high=4)
        check_int(p, "in_channels", in_channels, low=1)
        check_int(p, "stem_channels", stem_channels, low=2)
        check_int(p, "base_channels", base_channels, low=1)
        check_int(p, "frozen_stages", frozen_stages, low=-1, high=num_stages)
        check_choice(p, "style", style, ("pytorch", "caffe"))
        check_default(p, "avg_down", avg_down, False)
        check_default(p, "drop_path_rate", drop_path_rate, 0.0)
        check_default(p, "dilations", tuple(dilations)[:num_stages], (1,) * num_stages)
        if norm_cfg is not None and dict(norm_cfg).get("type", "BN") != "BN":
            raise ConfigError(f"{p}.norm_cfg: only BatchNorm (type='BN') is supported")
        if len(strides) < num_stages or any(s not in (1, 2) for s in strides[:num_stages]):
            raise ConfigError(f"{p}.strides must give 1 or 2 for each of the {num_stages} stages")
        if self._cifar and deep_stem:
            raise ConfigError(f"{p}.deep_stem: ResNet_CIFAR has no deep stem")
        kind, blocks = _RESNET_ARCH[depth]
        expansion = expansion or (1 if kind == "basic" else 4)
        if expansion != (1 if kind == "basic" else 4):
            raise ConfigError(f"{p}.expansion must be {1 if kind == 'basic' else 4} for depth {depth}")
        self.depth, self.num_stages = depth, num_stages
        self.out_indices = check_indices(p, "out_indices", out_indices, num_stages)
        self.frozen_stages, self.norm_eval = frozen_stages, bool(norm_eval)
        cfg = ResNetConfig(layer_type=kind, downsample_in_bottleneck=(style == "caffe"))
        self.stem = _Stem(in_channels, stem_channels, deep=bool(deep_stem), cifar=self._cifar)
        self.stages = nn.ModuleList()
        self.style, self.stem_channels = style, stem_channels
        self.stage_widths = [base_channels * 2 ** i * expansion for i in range(num_stages)]
        self.stage_depths = list(blocks[:num_stages])
        self.stage_strides = list(strides[:num_stages])
        width = stem_channels
        for i, out in enumerate(self.stage_widths):
            self.stages.append(ResNetStage(cfg, width, out, strides[i], blocks[i]))
            width = out
        self.out_channels = width
        self.mm_key_rules = _resnet_rules(num_stages)
        self._freeze()

    mm_fused_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def _freeze(self) -> None:
        frozen: list[nn.Module] = ([self.stem] if self.frozen_stages >= 0 else []) + \
            list(self.stages[:max(self.frozen_stages, 0)])
        for m in frozen:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise InputError("ResNet takes a [batch, channels, height, width] tensor")
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@MODELS.register_module()
class ResNet_CIFAR(ResNet):
    """``ResNet`` with a 3x3 stride-1 stem conv and no max pool, for 32x32 inputs."""

    _cifar = True


# -- ViT ---------------------------------------------------------------------------------------
#: arch name → (embed_dims, num_layers, num_heads, feedforward_channels), as mmpretrain's
_VIT_ARCH: dict[str, tuple[int, int, int, int]] = {
    **dict.fromkeys(("s", "small"), (768, 8, 8, 768 * 3)),
    **dict.fromkeys(("b", "base"), (768, 12, 12, 3072)),
    **dict.fromkeys(("l", "large"), (1024, 24, 16, 4096)),
    **dict.fromkeys(("h", "huge"), (1280, 32, 16, 5120)),
    **dict.fromkeys(("deit-t", "deit-tiny"), (192, 12, 3, 192 * 4)),
    **dict.fromkeys(("deit-s", "deit-small"), (384, 12, 6, 384 * 4)),
    **dict.fromkeys(("deit-b", "deit-base"), (768, 12, 12, 768 * 4)),
}
_VIT_ARCH_KEYS = ("embed_dims", "num_layers", "num_heads", "feedforward_channels")

_VIT_RULES: KeyRules = (
    (r"^backbone\.cls_token$", "backbone.embeddings.cls_token"),
    (r"^backbone\.pos_embed$", "backbone.embeddings.position_embeddings"),
    (r"^backbone\.patch_embed\.projection\.", "backbone.embeddings.patch_embed."),
    (r"^backbone\.layers\.(\d+)\.ln1\.", r"backbone.blocks.\1.norm_before."),
    (r"^backbone\.layers\.(\d+)\.ln2\.", r"backbone.blocks.\1.norm_after."),
    (r"^backbone\.layers\.(\d+)\.attn\.qkv\.", r"backbone.blocks.\1.attention.qkv."),
    (r"^backbone\.layers\.(\d+)\.attn\.proj\.", r"backbone.blocks.\1.attention.out."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.", r"backbone.blocks.\1.mlp.fc_in."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.1\.", r"backbone.blocks.\1.mlp.fc_out."),
    (r"^backbone\.ln1\.", "backbone.norm."),
    (r"^backbone\.ln2\.", "backbone.avg_norm."),
)


def _pair(v: Any, path: str, name: str) -> tuple[int, int]:
    items = (v, v) if isinstance(v, int) and not isinstance(v, bool) else v
    if not isinstance(items, (list, tuple)) or len(items) != 2:
        raise ConfigError(f"{path}.{name} must be an integer or a pair, got {v!r}")
    return (check_int(path, name, items[0], low=1), check_int(path, name, items[1], low=1))


@MODELS.register_module()
class VisionTransformer(nn.Module):
    """mmpretrain's ``VisionTransformer`` on hubloader's ViT embeddings and blocks.

    ``arch`` is a name (``'base'``, ``'deit-small'``...) or a dict with ``embed_dims``,
    ``num_layers``, ``num_heads``, ``feedforward_channels``. Returns a tuple with one entry per
    ``out_indices`` layer, shaped by ``out_type`` (``'cls_token'``, ``'featmap'``,
    ``'avg_featmap'``, ``'raw'``).
    """

    mm_key_rules = _VIT_RULES
    mm_fused_keys = ((".attention.qkv.", (".attention.query.", ".attention.key.",
                                          ".attention.value.")),)

    def __init__(self, arch: str | dict = "base", img_size: int | Sequence[int] = 224,
                 patch_size: int | Sequence[int] = 16, in_channels: int = 3,
                 out_indices: int | Sequence[int] = -1, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, qkv_bias: bool = True, norm_cfg: Any = None,
                 final_norm: bool = True, out_type: str = "cls_token", with_cls_token: bool = True,
                 frozen_stages: int = -1, interpolate_mode: str = "bicubic",
                 layer_scale_init_value: float = 0.0, patch_cfg: Any = None,
                 layer_cfgs: Any = None, pre_norm: bool = False, init_cfg: Any = None,
                 _cfg_path: str = "backbone"):
        super().__init__()
        p = _cfg_path
        if isinstance(arch, str):
            key = arch.lower()
            if key not in _VIT_ARCH:
                raise ConfigError(f"{p}.arch must be one of {sorted(set(_VIT_ARCH))} or a dict, "
                                  f"got {arch!r}")
            dims, layers, heads, ffn = _VIT_ARCH[key]
        elif isinstance(arch, dict):
            missing = [k for k in _VIT_ARCH_KEYS if k not in arch]
            if missing:
                raise ConfigError(f"{p}.arch misses {missing}; a custom arch needs "
                                  f"{list(_VIT_ARCH_KEYS)}")
            dims, layers, heads, ffn = (check_int(f"{p}.arch", k, arch[k], low=1)
                                        for k in _VIT_ARCH_KEYS)
        else:
            raise ConfigError(f"{p}.arch must be a name or a dict, got {arch!r}")
        if dims % heads:
            raise ConfigError(f"{p}.arch: embed_dims {dims} is not a multiple of num_heads {heads}")
        self.out_type = check_choice(p, "out_type", out_type,
                                     ("raw", "cls_token", "featmap", "avg_featmap"))
        for name, value, default in (("drop_path_rate", drop_path_rate, 0.0),
                                     ("with_cls_token", with_cls_token, True),
                                     ("layer_scale_init_value", layer_scale_init_value, 0.0),
                                     ("pre_norm", pre_norm, False),
                                     ("interpolate_mode", interpolate_mode, "bicubic"),
                                     ("frozen_stages", frozen_stages, -1)):
            check_default(p, name, value, default)
        image, patch = _pair(img_size, p, "img_size"), _pair(patch_size, p, "patch_size")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ConfigError(f"{p}.img_size {image} must be a multiple of patch_size {patch}")
        self.config = ViTConfig(hidden_size=dims, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=ffn, layer_norm_eps=1e-6, image_size=list(image),
                                patch_size=list(patch), num_channels=check_int(p, "in_channels",
                                                                               in_channels, low=1),
                                qkv_bias=bool(qkv_bias), hidden_dropout_prob=float(drop_rate))
        self.embed_dims, self.num_layers = dims, layers
        self.out_indices = check_indices(p, "out_indices", out_indices, layers)
        self.embeddings = ViTEmbeddings(self.config)
        self.blocks = nn.ModuleList(ViTBlock(self.config) for _ in range(layers))
        self.final_norm = bool(final_norm)
        if self.final_norm:
            self.norm = nn.LayerNorm(dims, eps=1e-6)
        if self.out_type == "avg_featmap":
            self.avg_norm = nn.LayerNorm(dims, eps=1e-6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise InputError("VisionTransformer takes a [batch, channels, height, width] tensor")
        ph, pw = self.config.patch_size  # type: ignore[misc]
        if x.shape[2] < ph or x.shape[3] < pw:
            raise InputError(f"the image {tuple(x.shape[2:])} is smaller than one patch")
        grid = (x.shape[2] // ph, x.shape[3] // pw)
        x = self.embeddings(x, interpolate=True)
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.num_layers - 1 and self.final_norm:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(self._format(x, grid))
        return tuple(outs)

    def _format(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.out_type == "raw":
            return x
        if self.out_type == "cls_token":
            return x[:, 0]
        patches = x[:, 1:]
        if self.out_type == "featmap":
            return patches.reshape(x.shape[0], *grid, -1).permute(0, 3, 1, 2)
        return self.avg_norm(patches.mean(dim=1))


# -- Swin --------------------------------------------------------------------------------------
#: arch name → (embed_dims, depths, num_heads), as mmpretrain's ``SwinTransformer.arch_zoo``
_SWIN_ARCH: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    **dict.fromkeys(("t", "tiny"), (96, (2, 2, 6, 2), (3, 6, 12, 24))),
    **dict.fromkeys(("s", "small"), (96, (2, 2, 18, 2), (3, 6, 12, 24))),
    **dict.fromkeys(("b", "base"), (128, (2, 2, 18, 2), (4, 8, 16, 32))),
    **dict.fromkeys(("l", "large"), (192, (2, 2, 18, 2), (6, 12, 24, 48))),
}

_SWIN_RULES: KeyRules = (
    (r"^backbone\.patch_embed\.projection\.", "backbone.embeddings.patch_embed."),
    (r"^backbone\.patch_embed\.norm\.", "backbone.embeddings.norm."),
    (r"\.blocks\.(\d+)\.norm1\.", r".blocks.\1.norm_before."),
    (r"\.blocks\.(\d+)\.norm2\.", r".blocks.\1.norm_after."),
    (r"\.blocks\.(\d+)\.attn\.w_msa\.qkv\.", r".blocks.\1.attention.qkv."),
    (r"\.blocks\.(\d+)\.attn\.w_msa\.proj\.", r".blocks.\1.attention.out."),
    (r"\.blocks\.(\d+)\.attn\.w_msa\.relative_position_bias_table$",
     r".blocks.\1.relative_position_bias_table"),
    (r"\.blocks\.(\d+)\.attn\.w_msa\.relative_position_index$",
     r".blocks.\1.relative_position_index"),
    (r"\.blocks\.(\d+)\.ffn\.layers\.0\.0\.", r".blocks.\1.mlp.fc_in."),
    (r"\.blocks\.(\d+)\.ffn\.layers\.1\.", r".blocks.\1.mlp.fc_out."),
)


def _merge_order(channels: int) -> torch.Tensor:
    """For each input of hubloader's patch merging (``(dh + 2 dw) * C + c``, Hugging Face's
    concatenation), its index in mmpretrain's (``c * 4 + 2 dh + dw``, ``nn.Unfold``'s)."""
    out = torch.empty(4 * channels, dtype=torch.long)
    for dh in (0, 1):
        for dw in (0, 1):
            c = torch.arange(channels)
            out[(dh + 2 * dw) * channels + c] = c * 4 + 2 * dh + dw
    return out


@MODELS.register_module()
class SwinTransformer(nn.Module):
    """mmpretrain's ``SwinTransformer`` on hubloader's Swin embeddings and blocks.

    Returns a tuple with the normed ``[B, C, H, W]`` map of each stage in ``out_indices``
    (before that stage's patch merging, as mmpretrain's default ``out_after_downsample=False``).

    Two parts of mmpretrain's layout are not plain renames and are declared here: its patch
    merging concatenates a 2x2 neighbourhood channel-major (``nn.Unfold``), so the merging's
    norm and projection are permuted; and its ``relative_position_index`` buffers, which
    hubloader computes instead of storing, are checked on load and written back on save.
    """

    mm_key_rules = _SWIN_RULES
    mm_fused_keys = ((".attention.qkv.", (".attention.query.", ".attention.key.",
                                          ".attention.value.")),)

    def __init__(self, arch: str = "tiny", img_size: int | Sequence[int] = 224,
                 patch_size: int = 4, in_channels: int = 3, window_size: int = 7,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 out_indices: int | Sequence[int] = (3,), out_after_downsample: bool = False,
                 use_abs_pos_embed: bool = False, interpolate_mode: str = "bicubic",
                 with_cp: bool = False, frozen_stages: int = -1, norm_eval: bool = False,
                 pad_small_map: bool = False, norm_cfg: Any = None, stage_cfgs: Any = None,
                 patch_cfg: Any = None, init_cfg: Any = None, _cfg_path: str = "backbone"):
        super().__init__()
        p = _cfg_path
        if not isinstance(arch, str) or arch.lower() not in _SWIN_ARCH:
            raise ConfigError(f"{p}.arch must be one of {sorted(set(_SWIN_ARCH))}, got {arch!r}")
        dims, depths, heads = _SWIN_ARCH[arch.lower()]
        check_int(p, "window_size", window_size, low=1)
        check_int(p, "patch_size", patch_size, low=1)
        for name, value, default in (("out_after_downsample", out_after_downsample, False),
                                     ("use_abs_pos_embed", use_abs_pos_embed, False),
                                     ("frozen_stages", frozen_stages, -1),
                                     ("pad_small_map", pad_small_map, False)):
            check_default(p, name, value, default)
        image = _pair(img_size, p, "img_size")
        self.out_indices = check_indices(p, "out_indices", out_indices, len(depths))
        self.config = SwinConfig(image_size=list(image), patch_size=patch_size,
                                 num_channels=check_int(p, "in_channels", in_channels, low=1),
                                 embed_dim=dims, depths=list(depths), num_heads=list(heads),
                                 window_size=window_size, drop_path_rate=float(drop_path_rate),
                                 hidden_dropout_prob=float(drop_rate))
        self.window = window_size
        self.embeddings = SwinEmbeddings(self.config)
        self.stages = build_stages(self.config)
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(self.config.stage_dim(i), eps=1e-5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise InputError("SwinTransformer takes a [batch, channels, height, width] tensor")
        x = self.embeddings(x)
        outs = []
        stage: Any
        for i, stage in enumerate(self.stages):
            h, w = x.shape[1:3]
            if min(h, w) < self.window:
                raise InputError(f"stage {i} sees a {h}x{w} map, smaller than the {self.window}"
                                 "-wide window; feed larger images or lower window_size")
            for block in stage.blocks:
                x = block(x)
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        return tuple(outs)

    def _rel_index(self) -> torch.Tensor:
        n = self.window * self.window
        return SwinBlock._relative_index(self.window).view(n, n).clone()

    def mm_load_transform(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """mmpretrain's tensors (already renamed) → hubloader's: see the class docstring."""
        expected = self._rel_index()
        out = {}
        for key, value in state.items():
            if key.endswith(".relative_position_index"):
                if value.shape != expected.shape or not torch.equal(value.long(), expected):
                    raise WeightsMismatchError(f"{key} is not the standard index of a "
                                               f"{self.window}x{self.window} window")
                continue
            if ".downsample." in key and value.dim() >= 1:
                dim = 1 if key.endswith("reduction.weight") else 0
                value = value.index_select(dim, _merge_order(value.shape[dim] // 4))
            out[key] = value
        return out

    def mm_save_transform(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """hubloader's tensors → mmpretrain's (before renaming): the inverse of the above."""
        out = {}
        for key, value in state.items():
            if ".downsample." in key and value.dim() >= 1:
                dim = 1 if key.endswith("reduction.weight") else 0
                order = _merge_order(value.shape[dim] // 4)
                value = value.index_select(dim, torch.argsort(order))
            out[key] = value
            if key.endswith(".relative_position_bias_table"):
                out[key.replace("relative_position_bias_table", "relative_position_index")] = \
                    self._rel_index()
        return out
