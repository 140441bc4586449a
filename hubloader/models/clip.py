"""CLIP and EVA-CLIP: an image tower and a text tower projected into one embedding space,
scored by scaled cosine similarity (zero-shot image classification, image-text matching).

- ``CLIPModel`` loads transformers' layout (``openai/clip-vit-*``:
  ``text_model.encoder.layers.N.self_attn.q_proj.weight``...) through ``checkpoint_key_rules``,
  and OpenAI's original layout, which FlagAI publishes (``transformer.resblocks.N.attn.
  in_proj_weight``, ``visual.conv1.weight``...), through :meth:`CLIPModel.convert_checkpoint`
  (the fused attention projection split in three, the projection matrices transposed).
- ``EVACLIPModel`` is EVA-CLIP as FlagAI publishes it: OpenAI's text tower and a BEiT-style
  image tower (no norm before the blocks, a query/value bias without key bias, optional layer
  scale, a biased head).
- :mod:`hubloader.models.altclip` builds BAAI's AltCLIP on the same image tower and scoring.

``forward(input_ids=..., pixel_values=...)`` returns ``logits_per_image`` ``[images, texts]``
(also as ``logits``), ``logits_per_text``, the normalized ``image_embeds``/``text_embeds`` and,
with ``return_loss=True``, the symmetric contrastive loss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..load.checkpoint_keys import layer_rules
from ..load.config import ModelConfig
from ..errors import ConfigError, InputError
from ..load.modeling import BaseModel
from ..load.registry import TokenizerDefaults, register_model
from ._inputs import (check_no_other_inputs, check_pixel_values, check_same_shape,
                      check_token_ids, require_token_ids)
from .layers import FeedForward, MultiHeadAttention, additive_mask, get_activation, init_standard
from .vit import _pair

__all__ = ["CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig", "CLIPModel", "EVACLIPConfig",
           "EVACLIPModel", "CLIPPreTrainedModel", "CLIP_LAYOUT", "CLIP_IGNORE", "sub_config",
           "contrastive_loss"]


# -- configs ----------------------------------------------------------------------------------
@dataclass
class CLIPTextConfig(ModelConfig):
    """transformers' ``text_config`` of a CLIP model."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    pad_token_id: int | None = 1
    bos_token_id: int | None = 49406
    # 2 is transformers' marker of the original rule: the text is pooled at its highest id
    eos_token_id: int | None = 2

    def validate(self) -> None:
        _positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "max_position_embeddings")
        _divisible(self.hidden_size, self.num_attention_heads, "text_config")
        get_activation(self.hidden_act)


@dataclass
class CLIPVisionConfig(ModelConfig):
    """transformers' ``vision_config`` of a CLIP model, plus the switches of EVA-CLIP's tower."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int | list[int] = 224
    patch_size: int | list[int] = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    pre_norm: bool = True        # EVA-CLIP: no norm before the blocks
    patch_bias: bool = False     # EVA-CLIP: the patch convolution has a bias
    layer_scale: bool = False    # EVA-CLIP with layer_scale_init_value: learned gammas

    def validate(self) -> None:
        _positive(self, "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_channels")
        _divisible(self.hidden_size, self.num_attention_heads, "vision_config")
        (h, w), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        if min(h, w, ph, pw) <= 0 or h % ph or w % pw:
            raise ConfigError(f"vision_config: image_size {self.image_size} must be a positive "
                              f"multiple of patch_size {self.patch_size}")
        get_activation(self.hidden_act)

    @property
    def num_positions(self) -> int:
        (h, w), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        return (h // ph) * (w // pw) + 1


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(cfg, name)}")


def _divisible(size: int, heads: int, where: str) -> None:
    if size % heads:
        raise ConfigError(f"{where}: hidden_size {size} must be a multiple of "
                          f"num_attention_heads {heads}")


def sub_config(cls: type[ModelConfig], data: Any, where: str) -> Any:
    """``data`` (a ``text_config``/``vision_config`` dict, or ``None``) as a validated ``cls``.

    Raises:
        ConfigError: not an object, or a field ``cls`` refuses.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(data).__name__}")
    # the sub-config's own model_type ("clip_text_model"...) names nothing hubloader needs
    return cls.from_dict({k: v for k, v in data.items() if k != "model_type"}, where=where)


@dataclass
class CLIPConfig(ModelConfig):
    """transformers' CLIP config: ``text_config``, ``vision_config``, ``projection_dim``."""

    model_type = "clip"

    text_config: dict = field(default_factory=dict)
    vision_config: dict = field(default_factory=dict)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    initializer_factor: float = 1.0

    def validate(self) -> None:
        if self.projection_dim <= 0:
            raise ConfigError(f"projection_dim must be positive, got {self.projection_dim}")
        self.text = self._text_config()
        self.vision: CLIPVisionConfig = sub_config(CLIPVisionConfig, self.vision_config,
                                                    "vision_config")

    def _text_config(self) -> Any:
        return sub_config(CLIPTextConfig, self.text_config, "text_config")


@dataclass
class EVACLIPConfig(CLIPConfig):
    model_type = "eva_clip"


# -- layer and block level ---------------------------------------------------------------------
class CLIPEncoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``; EVA-CLIP's layer
    scale multiplies each branch by a learned per-channel gamma."""

    def __init__(self, cfg: CLIPTextConfig | CLIPVisionConfig):
        super().__init__()
        d = cfg.hidden_size
        self.layer_norm1 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.self_attn = MultiHeadAttention(d, cfg.num_attention_heads,
                                            dropout=cfg.attention_dropout)
        self.layer_norm2 = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.mlp = FeedForward(d, cfg.intermediate_size, cfg.hidden_act)
        scaled = getattr(cfg, "layer_scale", False)
        self.layer_scale1 = nn.Parameter(torch.ones(d)) if scaled else None
        self.layer_scale2 = nn.Parameter(torch.ones(d)) if scaled else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.self_attn(self.layer_norm1(x), mask=mask)
        x = x + (h if self.layer_scale1 is None else h * self.layer_scale1)
        h = self.mlp(self.layer_norm2(x))
        return x + (h if self.layer_scale2 is None else h * self.layer_scale2)


class CLIPEncoder(nn.Module):
    def __init__(self, cfg: CLIPTextConfig | CLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embedding = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(input_ids) + self.position_embedding.weight[:input_ids.shape[1]]


class CLIPTextTransformer(nn.Module):
    """Causal text encoder, pooled at the end-of-text token."""

    def __init__(self, cfg: CLIPTextConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = CLIPTextEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = input_ids.shape[1]
        if s > self.cfg.max_position_embeddings:
            raise InputError(f"input_ids has {s} tokens; this CLIP text tower takes at most "
                             f"{self.cfg.max_position_embeddings} (truncate with the tokenizer's "
                             "max_length)")
        x = self.embeddings(input_ids)
        causal = torch.full((s, s), torch.finfo(x.dtype).min, dtype=x.dtype,
                            device=x.device).triu_(1)
        mask = causal[None, None]
        pad = additive_mask(attention_mask, x.dtype)
        if pad is not None:
            mask = mask + pad
        x = self.final_layer_norm(self.encoder(x, mask))
        rows = torch.arange(x.shape[0], device=x.device)
        eos = self.cfg.eos_token_id
        if eos == 2 or eos is None:  # the original rule: the end-of-text token has the top id
            at = input_ids.to(torch.int).argmax(dim=-1)
        else:  # the first end-of-text token (padding may repeat it)
            at = (input_ids == eos).int().argmax(dim=-1)
        return x, x[rows, at]


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size,
                                         kernel_size=_pair(cfg.patch_size),
                                         stride=_pair(cfg.patch_size), bias=cfg.patch_bias)
        self.position_embedding = nn.Embedding(cfg.num_positions, cfg.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight


class CLIPVisionTransformer(nn.Module):
    """ViT image encoder, pooled at the class token (normed)."""

    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = CLIPVisionEmbeddings(cfg)
        # (transformers' spelling, kept so its checkpoints load by name)
        self.pre_layrnorm = (nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
                             if cfg.pre_norm else None)
        self.encoder = CLIPEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, pixel_values: Any) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        pixel_values = check_pixel_values(pixel_values, num_channels=c.num_channels,
                                          image_size=_pair(c.image_size))
        x = self.embeddings(pixel_values.to(self.embeddings.class_embedding.dtype))
        if self.pre_layrnorm is not None:
            x = self.pre_layrnorm(x)
        x = self.encoder(x)
        return x, self.post_layernorm(x[:, 0])


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss: cross-entropy of texts over images and images over texts, each
    pair's match on the diagonal."""
    target = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, target)
            + F.cross_entropy(logits_per_text.t(), target)) / 2.0


# -- checkpoint layouts ------------------------------------------------------------------------
# transformers' names → ours (inverted to save): only the attention and MLP projections differ
CLIP_LAYOUT = layer_rules("layers", "layers", (
    ("self_attn.q_proj", "self_attn.query"), ("self_attn.k_proj", "self_attn.key"),
    ("self_attn.v_proj", "self_attn.value"), ("self_attn.out_proj", "self_attn.out"),
    ("mlp.fc1", "mlp.fc_in"), ("mlp.fc2", "mlp.fc_out"),
))
CLIP_IGNORE: tuple[str, ...] = (r"position_ids$",)

# OpenAI's original names (FlagAI's CLIP and EVA-CLIP) → transformers'
_OPENAI_BLOCK = (
    (r"\.attn\.out_proj\.", ".self_attn.out_proj."),
    (r"\.ln_1\.", ".layer_norm1."), (r"\.ln_2\.", ".layer_norm2."),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."), (r"\.mlp\.c_proj\.", ".mlp.fc2."),
)
_OPENAI_RULES = tuple((re.compile(p), r) for p, r in (
    (r"^token_embedding\.", "text_model.embeddings.token_embedding."),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^transformer\.resblocks\.", "text_model.encoder.layers."),
    (r"^ln_final\.", "text_model.final_layer_norm."),
    (r"^visual\.class_embedding$", "vision_model.embeddings.class_embedding"),
    (r"^visual\.positional_embedding$", "vision_model.embeddings.position_embedding.weight"),
    (r"^visual\.conv1\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual\.ln_pre\.", "vision_model.pre_layrnorm."),
    (r"^visual\.transformer\.resblocks\.", "vision_model.encoder.layers."),
    (r"^visual\.ln_post\.", "vision_model.post_layernorm."),
    # EVA-CLIP's BEiT-style image tower
    (r"^visual\.patch_embed\.proj\.", "vision_model.embeddings.patch_embedding."),
    (r"^visual\.blocks\.", "vision_model.encoder.layers."),
    (r"\.norm1\.", ".layer_norm1."), (r"\.norm2\.", ".layer_norm2."),
    (r"\.attn\.proj\.", ".self_attn.out_proj."),
    (r"\.gamma_(1|2)$", r".layer_scale\1"),
    (r"^visual\.norm\.", "vision_model.post_layernorm."),
    (r"^visual\.head\.", "visual_projection."),
) + _OPENAI_BLOCK)


def _from_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI's / FlagAI's / EVA-CLIP's CLIP checkpoint → transformers' names and shapes."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("text."):  # EVA-CLIP keeps the text tower (and the scale) apart
            key = key[len("text."):]
        if key == "text_projection" or key == "visual.proj":  # x @ P is a Linear of P.T
            name = "text_projection" if key == "text_projection" else "visual_projection"
            out[f"{name}.weight"] = value.t().contiguous()
            continue
        if key in ("visual.cls_token", "visual.pos_embed"):  # EVA-CLIP's [1, n, d] tensors
            name = "class_embedding" if key == "visual.cls_token" else "position_embedding.weight"
            out[f"vision_model.embeddings.{name}"] = value.reshape(-1, value.shape[-1]).squeeze(0)
            continue
        for pattern, repl in _OPENAI_RULES:
            key = pattern.sub(repl, key)
        stem, _, kind = key.rpartition(".attn.")
        if kind in ("in_proj_weight", "in_proj_bias", "qkv.weight"):  # fused q, k, v
            suffix = "bias" if kind == "in_proj_bias" else "weight"
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"{stem}.self_attn.{name}_proj.{suffix}"] = part
            continue
        if kind in ("q_bias", "v_bias"):  # EVA's attention: no key bias
            out[f"{stem}.self_attn.{kind[0]}_proj.bias"] = value
            if kind == "v_bias":
                out[f"{stem}.self_attn.k_proj.bias"] = torch.zeros_like(value)
            continue
        out[key] = value
    return out


# -- model level ---------------------------------------------------------------------------------
class CLIPPreTrainedModel(BaseModel[CLIPConfig]):
    """What the CLIP family shares: projections, logit scale, scoring and loss."""

    config_class = CLIPConfig
    checkpoint_key_rules = CLIP_LAYOUT
    ignore_checkpoint_keys = CLIP_IGNORE
    projection_bias = False

    text_model: nn.Module
    text_width: int

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        self.vision_model = CLIPVisionTransformer(config.vision)
        self.visual_projection = nn.Linear(config.vision.hidden_size, config.projection_dim,
                                           bias=self.projection_bias)
        self.text_projection = nn.Linear(self.text_width, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if any(k.startswith(("visual.", "text.", "transformer.resblocks.")) for k in state):
            state = _from_openai(state)
        return super().convert_checkpoint(state)

    def init_module_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_factor * 0.02
        if init_standard(module, std):
            return
        if isinstance(module, CLIPVisionEmbeddings):
            nn.init.normal_(module.class_embedding, 0.0, module.class_embedding.shape[0] ** -0.5)
        elif isinstance(module, CLIPEncoderLayer):
            for gamma in (module.layer_scale1, module.layer_scale2):
                if gamma is not None:
                    nn.init.ones_(gamma)
        elif module is self:
            nn.init.constant_(self.logit_scale, self.config.logit_scale_init_value)

    # -- the towers ----------------------------------------------------------------------------
    def _text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def get_text_features(self, input_ids: Any = None, attention_mask: Any = None,
                          **kwargs: Any) -> torch.Tensor:
        """The projected (not normalized) text embeddings, ``[texts, projection_dim]``.

        Raises:
            InputError: missing or malformed ``input_ids``/``attention_mask``.
        """
        vocab = getattr(self.config.text, "vocab_size", None)
        input_ids = require_token_ids("input_ids", input_ids, vocab_size=vocab)
        check_token_ids("attention_mask", attention_mask)
        check_same_shape("attention_mask", attention_mask, "input_ids", input_ids)
        return self.text_projection(self._text_pooled(input_ids, attention_mask, **kwargs))

    def get_image_features(self, pixel_values: Any = None) -> torch.Tensor:
        """The projected (not normalized) image embeddings, ``[images, projection_dim]``.

        Raises:
            InputError: missing or malformed ``pixel_values`` (the configured size).
        """
        return self.visual_projection(self.vision_model(pixel_values)[1])

    def zero_shot(self, pixel_values: Any, labels: Sequence[str], tokenizer: Any, *,
                  template: str = "This is a photo of {}.") -> torch.Tensor:
        """Zero-shot image classification: each label put in ``template``, scored against each
        image (transformers' pipeline does the same with the same default template).

        Args:
            pixel_values: ``[images, 3, H, W]`` from the model's image processor.
            labels: the candidate labels.
            tokenizer: the model's tokenizer (called as transformers' are).

        Returns:
            ``[images, labels]`` probabilities (softmax over the labels).

        Raises:
            InputError: no labels, or a template without ``{}``.
        """
        labels = list(labels)
        if not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise InputError(f"zero-shot classification needs non-empty label strings, got "
                             f"{labels!r}")
        if "{}" not in template:
            raise InputError(f"the template must hold '{{}}' where the label goes, got "
                             f"{template!r}")
        enc = tokenizer([template.format(x) for x in labels], padding=True, truncation=True,
                        max_length=self._max_text_length(), return_tensors="pt")
        with torch.no_grad():
            out = self(input_ids=enc["input_ids"].to(self.device),
                       attention_mask=enc["attention_mask"].to(self.device),
                       pixel_values=pixel_values)
        return out["logits_per_image"].float().softmax(dim=-1)

    def _max_text_length(self) -> int:
        """The most tokens the text tower takes."""
        return int(self.config.text.max_position_embeddings)

    # FlagAI's names for the same
    def encode_text(self, text: Any) -> torch.Tensor:
        return self.get_text_features(text)

    def encode_image(self, image: Any) -> torch.Tensor:
        return self.get_image_features(image)

    def forward(self, input_ids: Any = None, pixel_values: Any = None, attention_mask: Any = None,
                *, return_loss: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Score every image against every text.

        Args:
            input_ids: ``[texts, seq]`` token ids (FlagAI's ``text=`` also works).
            pixel_values: ``[images, 3, H, W]`` (FlagAI's ``image=`` also works).
            attention_mask: ``[texts, seq]`` 1/0.
            return_loss: add the contrastive ``loss`` (pairs on the diagonal).

        Returns:
            ``logits_per_image`` ``[images, texts]`` (also ``logits``), ``logits_per_text``,
            ``image_embeds`` and ``text_embeds`` (L2-normalized), ``loss`` when asked.

        Raises:
            InputError: a missing or malformed input; an unexpected keyword.
        """
        input_ids = kwargs.pop("text", input_ids)
        pixel_values = kwargs.pop("image", pixel_values)
        text_kw = {k: kwargs.pop(k) for k in ("token_type_ids", "position_ids") if k in kwargs}
        check_no_other_inputs(type(self).__name__, kwargs,
                              "input_ids, pixel_values, attention_mask")
        image_embeds = F.normalize(self.get_image_features(pixel_values), dim=-1)
        text_embeds = F.normalize(self.get_text_features(input_ids, attention_mask, **text_kw),
                                  dim=-1)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        logits_per_image = logits_per_text.t()
        out: dict[str, Any] = {"logits": logits_per_image, "logits_per_image": logits_per_image,
                               "logits_per_text": logits_per_text, "image_embeds": image_embeds,
                               "text_embeds": text_embeds}
        if return_loss:
            if logits_per_text.shape[0] != logits_per_text.shape[1]:
                raise InputError(f"return_loss needs as many texts as images (pair i is text i "
                                 f"with image i), got {logits_per_text.shape[0]} texts and "
                                 f"{logits_per_text.shape[1]} images")
            out["loss"] = contrastive_loss(logits_per_text)
        return out


# transformers' CLIPTokenizer (no token types)
_CLIP_TOKENIZER = TokenizerDefaults(
    "CLIPTokenizer", {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                      "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    token_type_ids=False)


@register_model("clip", "zero-shot-image-classification")
@register_model("clip", "base", tokenizer=_CLIP_TOKENIZER)
class CLIPModel(CLIPPreTrainedModel):
    """OpenAI's CLIP (transformers' ``CLIPModel``; FlagAI's ``clip-*`` names)."""

    def __init__(self, config: CLIPConfig):
        self.text_width = config.text.hidden_size
        super().__init__(config)
        self.text_model = CLIPTextTransformer(config.text)

    def _text_pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     **kwargs: Any) -> torch.Tensor:
        return self.text_model(input_ids, attention_mask)[1]


@register_model("eva_clip", "zero-shot-image-classification")
@register_model("eva_clip", "base", tokenizer=_CLIP_TOKENIZER)
class EVACLIPModel(CLIPModel):
    """EVA-CLIP as FlagAI publishes it (``eva-clip``): OpenAI's text tower, a BEiT-style image
    tower with a biased projection head."""

    config_class = EVACLIPConfig
    projection_bias = True
