"""FlagAI's vision and CLIP ``config.json`` files in transformers' terms.

FlagAI's ViT and Swin configs use timm's field names (``embed_dim``, ``depth``, ``img_size``,
``in_chans``, ``num_classes``...); its CLIP and EVA-CLIP configs are OpenAI's / open_clip's
(``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``). Each translator returns the
config hubloader's family reads, with what FlagAI's classes hard-code made explicit (the
``1e-6`` norms of timm's ViT, the GELU FlagAI's CLIP uses unless ``quick_gelu``). Options that
change the architecture in ways hubloader's families do not implement raise
:class:`ConfigError` naming the option, rather than loading a different model.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ConfigError

__all__ = ["VISION_CONFIGS", "vit_config", "swin_config", "clip_config", "eva_clip_config"]


def _get(data: dict[str, Any], where: str, key: str, default: Any, kind: type | tuple = int) -> Any:
    value = data.get(key, default)
    if value is None or isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ConfigError(f"FlagAI's {where} config: {key!r} must be "
                          f"{getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _refuse(data: dict[str, Any], where: str, **allowed: Any) -> None:
    for key, ok in allowed.items():
        if key in data and data[key] not in ok:
            raise ConfigError(f"FlagAI's {where} config: {key}={data[key]!r} is not supported by "
                              f"hubloader (supported: {', '.join(map(repr, ok))}); load this "
                              "model with FlagAI")


def _labels(data: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    if "num_classes" in data:
        out["num_labels"] = data["num_classes"]
    return out


def vit_config(data: dict[str, Any]) -> dict[str, Any]:
    """FlagAI's ``VisionTransformer`` config (``vit-base-p16-224``...) → hubloader's ViT."""
    _refuse(data, "ViT", global_pool=("token",), class_token=(True,), fc_norm=(None, False),
            init_values=(None, 0, 0.0))
    width = _get(data, "ViT", "embed_dim", 768)
    ratio = _get(data, "ViT", "mlp_ratio", 4.0, (int, float))
    return _labels(data, {
        "hidden_size": width, "num_hidden_layers": _get(data, "ViT", "depth", 12),
        "num_attention_heads": _get(data, "ViT", "num_heads", 12),
        "intermediate_size": int(width * ratio),
        "image_size": data.get("img_size", 224), "patch_size": data.get("patch_size", 16),
        "num_channels": _get(data, "ViT", "in_chans", 3),
        "qkv_bias": _get(data, "ViT", "qkv_bias", True, bool),
        "hidden_act": "gelu", "layer_norm_eps": 1e-6})


def swin_config(data: dict[str, Any], version: int = 1) -> dict[str, Any]:
    """FlagAI's ``SwinTransformer`` / ``SwinTransformerV2`` config → hubloader's Swin."""
    where = f"Swin V{version}"
    _refuse(data, where, patch_norm=(True,), qk_scale=(None,))
    out = {
        "embed_dim": _get(data, where, "embed_dim", 128),
        "depths": list(_get(data, where, "depths", [2, 2, 18, 2], (list, tuple))),
        "num_heads": list(_get(data, where, "num_heads", [4, 8, 16, 32], (list, tuple))),
        "window_size": _get(data, where, "window_size", 7),
        "mlp_ratio": _get(data, where, "mlp_ratio", 4.0, (int, float)),
        "qkv_bias": _get(data, where, "qkv_bias", True, bool),
        "image_size": data.get("img_size", 224), "patch_size": data.get("patch_size", 4),
        "num_channels": _get(data, where, "in_chans", 3),
        "use_absolute_embeddings": _get(data, where, "ape", False, bool),
        "drop_path_rate": _get(data, where, "drop_path_rate", 0.1, (int, float)),
        "hidden_act": "gelu", "layer_norm_eps": 1e-5}
    if version == 2:
        out["pretrained_window_sizes"] = list(_get(data, where, "pretrained_window_sizes",
                                                   [0] * len(out["depths"]), (list, tuple)))
    return _labels(data, out)


def _towers(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    vision, text = data.get("vision_cfg", {}), data.get("text_cfg", {})
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise ConfigError(f"FlagAI's {where} config: vision_cfg and text_cfg must be objects")
    if vision.get("timm_model_name"):
        raise ConfigError(f"FlagAI's {where} config: a timm image tower "
                          f"({vision['timm_model_name']!r}) is not supported by hubloader")
    act = "quick_gelu" if _get(data, where, "quick_gelu", False, bool) else "gelu"
    width = _get(text, where, "width", 512)
    text_config = {
        "vocab_size": _get(text, where, "vocab_size", 49408), "hidden_size": width,
        "num_attention_heads": _get(text, where, "heads", 8),
        "num_hidden_layers": _get(text, where, "layers", 12), "intermediate_size": 4 * width,
        "max_position_embeddings": _get(text, where, "context_length", 77),
        "hidden_act": act, "layer_norm_eps": 1e-5,
        "eos_token_id": 2}  # OpenAI's rule: pooled at the highest id (the end-of-text token)
    vwidth = _get(vision, where, "width", 768)
    vision_config = {
        "hidden_size": vwidth, "num_hidden_layers": _get(vision, where, "layers", 12),
        "num_attention_heads": vwidth // _get(vision, where, "head_width", 64),
        "intermediate_size": int(vwidth * _get(vision, where, "mlp_ratio", 4.0, (int, float))),
        "image_size": vision.get("image_size", 224), "patch_size": vision.get("patch_size", 16)}
    return text_config, vision_config, act


def clip_config(data: dict[str, Any]) -> dict[str, Any]:
    """FlagAI's ``CLIP`` config (``clip-base-p32-224``...) → transformers' CLIP config."""
    text, vision, act = _towers(data, "CLIP")
    vision.update(hidden_act=act, layer_norm_eps=1e-5)
    return {"text_config": text, "vision_config": vision,
            "projection_dim": _get(data, "CLIP", "embed_dim", 512)}


def eva_clip_config(data: dict[str, Any]) -> dict[str, Any]:
    """FlagAI's ``EVA_CLIP`` config (``eva-clip``) → hubloader's EVA-CLIP config: OpenAI's text
    tower, a BEiT-style image tower (GELU, ``1e-6`` norms, no norm before the blocks, a biased
    patch embedding and head, layer scale when ``layer_scale_init_value`` is set)."""
    text, vision, _ = _towers(data, "EVA-CLIP")
    scale = data.get("vision_cfg", {}).get("layer_scale_init_value")
    vision.update(hidden_act="gelu", layer_norm_eps=1e-6, pre_norm=False, patch_bias=True,
                  layer_scale=bool(scale))
    return {"text_config": text, "vision_config": vision,
            "projection_dim": _get(data, "EVA-CLIP", "embed_dim", 512)}


Translator = Callable[[dict[str, Any]], dict[str, Any]]


def _only_flagai(translate: Translator, *hf_keys: str) -> Translator:
    """``translate``, applied only to a config without transformers' own keys (a FlagAI-less
    ``model_type`` is also how transformers' configs reach a family class)."""
    def run(data: dict[str, Any]) -> dict[str, Any]:
        return data if any(k in data for k in hf_keys) else translate(data)

    return run


#: model_type → translator of FlagAI's config.json
VISION_CONFIGS: dict[str, Translator] = {
    "vit": _only_flagai(vit_config, "hidden_size", "image_size"),
    "swin": _only_flagai(swin_config, "image_size", "hidden_size"),
    "swinv2": _only_flagai(lambda data: swin_config(data, version=2), "image_size",
                           "hidden_size"),
    "clip": _only_flagai(clip_config, "text_config", "vision_config"),
    "eva_clip": _only_flagai(eva_clip_config, "text_config", "vision_config"),
}
