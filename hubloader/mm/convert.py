"""Between mmpretrain's checkpoint layout and Hugging Face's, for ResNet, ViT and Swin.

Both layouts are mappings onto the same hubloader modules: mmpretrain's through the
backbones' ``mm_key_rules``, Hugging Face's through the families' ``checkpoint_key_rules``.
The backbone's module paths are the same in both (the mm backbones are built from the
families' blocks); only the head and Swin's final norm sit elsewhere, renamed here. Each
direction loads the result strictly into the target model before writing it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..load.checkpoint_keys import rename_keys
from ..errors import ConfigError
from .backbones import ResNet, ResNet_CIFAR, SwinTransformer, VisionTransformer
from .checkpoint import save_mm_checkpoint
from .heads import LinearClsHead, VisionTransformerClsHead

__all__ = ["mm_to_hf", "hf_to_mm"]

#: the mm classifier's paths → the family model's (``ResNetForImageClassification``...)
_TO_FAMILY = ((r"^head\.fc\.", "classifier."), (r"^head\.layers\.head\.", "classifier."),
              (r"^backbone\.norm3\.", "backbone.norm."))


def _family(model: Any) -> tuple[Any, dict]:
    """The hubloader family class and its Hugging Face config for an mm ``ImageClassifier``."""
    from ..models.resnet import ResNetForImageClassification
    from ..models.swin import SwinForImageClassification
    from ..models.vit import ViTForImageClassification

    b: Any = model.backbone
    head: Any = model.head
    if isinstance(head, VisionTransformerClsHead) and head.hidden_dim is not None:
        raise ConfigError("a VisionTransformerClsHead with hidden_dim has no Hugging Face "
                          "counterpart; convert the backbone with head=None")
    if not isinstance(head, (LinearClsHead, VisionTransformerClsHead)):
        raise ConfigError("converting to Hugging Face's layout needs a LinearClsHead or a "
                          "VisionTransformerClsHead")
    labels = {"num_labels": head.num_classes}
    if isinstance(b, ResNet_CIFAR):
        raise ConfigError("ResNet_CIFAR's stem has no Hugging Face counterpart")
    if isinstance(b, ResNet):
        if b.out_indices != (b.num_stages - 1,) or hasattr(b.stem, "convs") or \
                b.stage_strides != [1] + [2] * (b.num_stages - 1):
            raise ConfigError("only a plain ResNet (last stage out, no deep stem, strides "
                              "(1, 2, 2, 2)) converts")
        kind = "basic" if b.depth < 50 else "bottleneck"
        return ResNetForImageClassification, dict(
            model_type="resnet", embedding_size=b.stem_channels, hidden_sizes=b.stage_widths,
            depths=b.stage_depths, layer_type=kind,
            downsample_in_bottleneck=b.style == "caffe", **labels)
    if isinstance(b, VisionTransformer):
        if b.out_type != "cls_token" or not b.final_norm:
            raise ConfigError("only a ViT with out_type='cls_token' and final_norm converts")
        vc = b.config
        return ViTForImageClassification, dict(
            model_type="vit", hidden_size=vc.hidden_size, num_hidden_layers=vc.num_hidden_layers,
            num_attention_heads=vc.num_attention_heads, intermediate_size=vc.intermediate_size,
            layer_norm_eps=1e-6, image_size=vc.image_size, patch_size=vc.patch_size,
            num_channels=vc.num_channels, qkv_bias=vc.qkv_bias, **labels)
    if isinstance(b, SwinTransformer):
        c = b.config
        if b.out_indices != (len(c.depths) - 1,):
            raise ConfigError("only a Swin with the last stage out converts")
        return SwinForImageClassification, dict(
            model_type="swin", image_size=c.image_size, patch_size=c.patch_size,
            num_channels=c.num_channels, embed_dim=c.embed_dim, depths=c.depths,
            num_heads=c.num_heads, window_size=c.window_size, qkv_bias=c.qkv_bias, **labels)
    raise ConfigError(f"{type(b).__name__} has no Hugging Face layout in hubloader")


def mm_to_hf(config: Any, checkpoint: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """An mmpretrain checkpoint of ``config`` (a model-index name, a config file...) → a
    Hugging Face model directory (``config.json``, ``model.safetensors``, a card).

    Raises:
        ConfigError: a model without a Hugging Face counterpart.
        WeightsMismatchError: the checkpoint does not fit the config.
    """
    from .api import get_model

    model = get_model(config, pretrained=checkpoint)
    cls, fields = _family(model)
    config_obj = cls.config_class.from_dict(fields)
    target = cls(config_obj)
    state = rename_keys(model.state_dict(), _TO_FAMILY)
    target.load_state_dict(state, strict=True)
    return target.save_pretrained(dst)


def hf_to_mm(src: str | os.PathLike, config: Any, dst: str | os.PathLike) -> Path:
    """A Hugging Face model directory (ResNet, ViT, Swin image classification) → an
    mmpretrain checkpoint for ``config``, which mmpretrain loads strictly.

    Raises:
        ConfigError: a model without a Hugging Face counterpart.
        WeightsMismatchError, RuntimeError: the directory does not fit the config.
    """
    from ..errors import WeightsMismatchError
    from .api import get_model

    model = get_model(config)
    cls, _ = _family(model)
    source = cls.from_pretrain(os.fspath(src))
    swin_norm = (((r"^backbone\.norm\.", f"backbone.norm{model.backbone.out_indices[-1]}."),)
                 if isinstance(model.backbone, SwinTransformer) else ())
    state = rename_keys(source.state_dict(), swin_norm)
    state = {k.replace("classifier.", "head.fc." if hasattr(model.head, "fc")
                       else "head.layers.head.", 1) if k.startswith("classifier.") else k: v
             for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise WeightsMismatchError(f"{src} does not fit the config (missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]})", missing=missing,
                                   unexpected=unexpected)
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return save_mm_checkpoint(model, dst)
