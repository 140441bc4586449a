"""mmpretrain's ``ImageClassifier`` (backbone → neck → head) and its ``ClsDataPreprocessor``."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..load.checkpoint_keys import KeyRules
from ..errors import ConfigError, InputError
from .registry import MODELS

__all__ = ["ImageClassifier", "ClsDataPreprocessor"]


@MODELS.register_module()
class ClsDataPreprocessor(nn.Module):
    """``(image - mean) / std`` on a float batch; ``to_rgb`` swaps BGR to RGB first (inputs
    read by OpenCV are BGR; hubloader reads RGB with Pillow and passes ``rgb_input=True``).

    ``mean``/``std`` are non-persistent buffers, so they stay out of checkpoints, as in
    mmpretrain.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 pad_size_divisor: int = 1, pad_value: float = 0, to_rgb: bool = False,
                 to_onehot: bool = False, num_classes: int | None = None,
                 batch_augments: Any = None, _cfg_path: str = "data_preprocessor"):
        super().__init__()
        if (mean is None) != (std is None):
            raise ConfigError(f"{_cfg_path}: give both mean and std, or neither")
        self.normalize = mean is not None
        if mean is not None and std is not None:
            if len(mean) != len(std) or any(float(s) == 0 for s in std):
                raise ConfigError(f"{_cfg_path}: mean and std need one nonzero entry per channel")
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
                                 persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1),
                                 persistent=False)
        self.to_rgb = bool(to_rgb)
        self.num_classes = num_classes

    def forward(self, inputs: torch.Tensor, *, rgb_input: bool = False) -> torch.Tensor:
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
            raise InputError("the data preprocessor takes a [batch, channels, height, width] tensor")
        x = inputs.float()
        if self.to_rgb and not rgb_input and x.shape[1] == 3:
            x = x.flip(1)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x


@MODELS.register_module()
class ImageClassifier(nn.Module):
    """Backbone, optional neck, optional head, as mmpretrain's ``ImageClassifier``.

    Args:
        backbone, neck, head: config dicts (built through :data:`hubloader.MODELS`) or modules.
        data_preprocessor: a ``ClsDataPreprocessor`` config (``mean``, ``std``, ``to_rgb``).

    ``forward(inputs, data_samples=None, mode='tensor')``: ``'tensor'`` returns the head's
    scores (or the features without a head), ``'predict'`` a list of ``{'pred_score',
    'pred_label'}`` per image, ``'loss'`` a dict of losses for the labels in ``data_samples``.
    Like mmpretrain's, ``forward`` takes preprocessed inputs; :func:`hubloader.inference_model`
    applies ``data_preprocessor`` first.
    """

    def __init__(self, backbone: Any, neck: Any = None, head: Any = None, pretrained: Any = None,
                 train_cfg: Any = None, data_preprocessor: Any = None, init_cfg: Any = None,
                 _cfg_path: str = "model"):
        super().__init__()
        p = _cfg_path
        if pretrained is not None:
            raise ConfigError(f"{p}.pretrained is not read here; pass pretrained= to get_model")
        dp = data_preprocessor if data_preprocessor is not None else {}
        if isinstance(dp, dict):
            dp = dict(dp)
            dp.setdefault("type", "ClsDataPreprocessor")
            dp.pop("batch_augments", None)
            dp = MODELS.build(dp, path=f"{p}.data_preprocessor")
        elif not isinstance(dp, nn.Module):
            raise ConfigError(f"{p}.data_preprocessor must be a dict or a module")
        self.data_preprocessor = dp
        self.backbone = backbone if isinstance(backbone, nn.Module) else \
            MODELS.build(backbone, path=f"{p}.backbone")
        self.neck = neck if neck is None or isinstance(neck, nn.Module) else \
            MODELS.build(neck, path=f"{p}.neck")
        self.head = head if head is None or isinstance(head, nn.Module) else \
            MODELS.build(head, path=f"{p}.head")

    @property
    def with_neck(self) -> bool:
        return self.neck is not None

    @property
    def with_head(self) -> bool:
        return self.head is not None

    @property
    def mm_key_rules(self) -> KeyRules:
        """mmpretrain's checkpoint names → this model's module paths (see ``checkpoint``)."""
        return tuple(getattr(self.backbone, "mm_key_rules", ()))

    @property
    def mm_fused_keys(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple(getattr(self.backbone, "mm_fused_keys", ()))

    def mm_load_transform(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The backbone's tensor changes beyond renaming (none for most backbones)."""
        hook = getattr(self.backbone, "mm_load_transform", None)
        return hook(state) if hook is not None else state

    def mm_save_transform(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hook = getattr(self.backbone, "mm_save_transform", None)
        return hook(state) if hook is not None else state

    def extract_feat(self, inputs: torch.Tensor, stage: str = "neck") -> Any:
        """The features after ``stage``: ``'backbone'``, ``'neck'`` or ``'pre_logits'``."""
        if stage not in ("backbone", "neck", "pre_logits"):
            raise InputError(f"stage must be 'backbone', 'neck' or 'pre_logits', got {stage!r}")
        x = self.backbone(inputs)
        if stage == "backbone":
            return x
        if self.neck is not None:
            x = self.neck(x)
        if stage == "neck":
            return x
        head: Any = self.head
        if head is None or not hasattr(head, "pre_logits"):
            raise InputError("stage='pre_logits' needs a head with pre_logits")
        return head.pre_logits(x)

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = "tensor") -> Any:
        """See the class docstring.

        Raises:
            InputError: an unknown ``mode``, a missing head for ``'predict'``/``'loss'``,
                labels that do not match the batch.
        """
        if mode == "tensor":
            feats = self.extract_feat(inputs)
            return self.head(feats) if self.head is not None else feats
        if mode not in ("predict", "loss"):
            raise InputError(f"mode must be 'tensor', 'predict' or 'loss', got {mode!r}")
        head: Any = self.head
        if head is None:
            raise InputError(f"mode={mode!r} needs a head; this classifier has none")
        feats = self.extract_feat(inputs)
        if mode == "loss":
            return head.loss(feats, data_samples)
        return head.predict(feats, data_samples)

    def loss(self, inputs: torch.Tensor, data_samples: Any) -> dict[str, torch.Tensor]:
        return self.forward(inputs, data_samples, mode="loss")

    def predict(self, inputs: torch.Tensor, data_samples: Any = None) -> list[dict]:
        return self.forward(inputs, data_samples, mode="predict")
