"""mmpretrain's classification necks, heads and losses, with its names, arguments and keys.

``GlobalAveragePooling`` (neck), ``ClsHead`` / ``LinearClsHead`` /
``VisionTransformerClsHead`` (heads), ``CrossEntropyLoss`` / ``LabelSmoothLoss`` (losses).
Their parameter names are mmpretrain's (``head.fc``, ``head.layers.head``), so a checkpoint's
head keys load as they are.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from ._args import check_choice, check_default, check_int
from .registry import MODELS

__all__ = ["GlobalAveragePooling", "ClsHead", "LinearClsHead", "VisionTransformerClsHead",
           "CrossEntropyLoss", "LabelSmoothLoss"]


def _last(feats: Any) -> torch.Tensor:
    """mmpretrain's heads read the last stage of a tuple of features."""
    feat = feats[-1] if isinstance(feats, (tuple, list)) else feats
    if not isinstance(feat, torch.Tensor):
        raise InputError(f"a head takes a tensor or a tuple of tensors, got {type(feats).__name__}")
    return feat


@MODELS.register_module()
class GlobalAveragePooling(nn.Module):
    """Average over the spatial axes: ``[B, C, H, W]`` → ``[B, C]`` (each stage of a tuple).

    Args:
        dim: 1, 2 or 3 spatial dimensions.
    """

    def __init__(self, dim: int = 2, _cfg_path: str = "neck"):
        super().__init__()
        check_int(_cfg_path, "dim", dim, low=1, high=3)
        self.dim = dim

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != self.dim + 2:
            raise InputError(f"GlobalAveragePooling(dim={self.dim}) takes "
                             f"[batch, channels, {self.dim} spatial axes] tensors")
        return x.mean(dim=tuple(range(2, x.dim())))

    def forward(self, inputs: Any) -> Any:
        if isinstance(inputs, (tuple, list)):
            return tuple(self._pool(x) for x in inputs)
        return self._pool(inputs)


def _build_loss(loss: Any, path: str) -> nn.Module:
    if isinstance(loss, nn.Module):
        return loss
    return MODELS.build(loss, path=f"{path}.loss")


def _targets(data_samples: Any, num: int) -> torch.Tensor:
    """Labels from ``data_samples``: a tensor, ints, or dicts/objects with ``gt_label``."""
    if isinstance(data_samples, torch.Tensor):
        target = data_samples.reshape(-1) if data_samples.dim() <= 1 or \
            data_samples.shape[-1] == 1 else data_samples
    elif isinstance(data_samples, (list, tuple)) and data_samples:
        labels = []
        for s in data_samples:
            lab = s.get("gt_label") if isinstance(s, dict) else getattr(s, "gt_label", s)
            labels.append(torch.as_tensor(lab).reshape(-1))
        target = torch.cat(labels)
    else:
        raise InputError("mode='loss' needs data_samples: a tensor of labels, a list of ints, "
                         "or a list of dicts with 'gt_label'")
    if target.shape[0] != num:
        raise InputError(f"got {target.shape[0]} labels for {num} samples")
    return target


@MODELS.register_module()
class ClsHead(nn.Module):
    """The head without layers: returns the last stage's features as scores.

    Args:
        loss: the loss config (default ``CrossEntropyLoss``).
        topk: accuracies to report in ``loss`` when ``cal_acc``.
        cal_acc: add ``accuracy_top-k`` to the losses.
    """

    def __init__(self, loss: Any = None, topk: int | Sequence[int] = (1,),
                 cal_acc: bool = False, init_cfg: Any = None, _cfg_path: str = "head"):
        super().__init__()
        self.path = _cfg_path
        self.loss_module = _build_loss(loss or dict(type="CrossEntropyLoss", loss_weight=1.0),
                                       _cfg_path)
        self.topk = (topk,) if isinstance(topk, int) else tuple(topk)
        self.cal_acc = bool(cal_acc)

    def pre_logits(self, feats: Any) -> torch.Tensor:
        return _last(feats)

    def forward(self, feats: Any) -> torch.Tensor:
        return self.pre_logits(feats)

    def loss(self, feats: Any, data_samples: Any) -> dict[str, torch.Tensor]:
        score = self(feats)
        target = _targets(data_samples, score.shape[0]).to(score.device)
        losses = {"loss": self.loss_module(score, target, avg_factor=score.shape[0])}
        if self.cal_acc:
            top = score.topk(max(self.topk), dim=1).indices
            for k in self.topk:
                hit = (top[:, :k] == target.view(-1, 1)).any(dim=1).float().mean() * 100
                losses[f"accuracy_top-{k}"] = hit
        return losses

    def predict(self, feats: Any, data_samples: Any = None) -> list[dict[str, torch.Tensor]]:
        """A dict per sample: ``pred_score`` (softmax) and ``pred_label`` (``[1]``)."""
        scores = F.softmax(self(feats), dim=1)
        labels = scores.argmax(dim=1, keepdim=True)
        return [{"pred_score": s, "pred_label": lab} for s, lab in zip(scores, labels)]


@MODELS.register_module()
class LinearClsHead(ClsHead):
    """A linear layer (``fc``) on the last stage's pooled features."""

    def __init__(self, num_classes: int, in_channels: int, loss: Any = None,
                 topk: int | Sequence[int] = (1,), cal_acc: bool = False, init_cfg: Any = None,
                 _cfg_path: str = "head"):
        super().__init__(loss, topk, cal_acc, init_cfg, _cfg_path=_cfg_path)
        check_int(_cfg_path, "num_classes", num_classes, low=1)
        check_int(_cfg_path, "in_channels", in_channels, low=1)
        self.num_classes, self.in_channels = num_classes, in_channels
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: Any) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))


_ACTS = {"Tanh": nn.Tanh, "ReLU": nn.ReLU, "GELU": nn.GELU}


@MODELS.register_module()
class VisionTransformerClsHead(ClsHead):
    """ViT's head: ``layers.head`` on the class token, after ``layers.pre_logits`` + act when
    ``hidden_dim`` is set."""

    def __init__(self, num_classes: int, in_channels: int, hidden_dim: int | None = None,
                 act_cfg: Any = None, loss: Any = None, topk: int | Sequence[int] = (1,),
                 cal_acc: bool = False, init_cfg: Any = None, _cfg_path: str = "head"):
        super().__init__(loss, topk, cal_acc, init_cfg, _cfg_path=_cfg_path)
        check_int(_cfg_path, "num_classes", num_classes, low=1)
        check_int(_cfg_path, "in_channels", in_channels, low=1)
        self.num_classes, self.in_channels, self.hidden_dim = num_classes, in_channels, hidden_dim
        act = (act_cfg or {"type": "Tanh"})
        act_type = check_choice(_cfg_path, "act_cfg.type", act.get("type") if isinstance(act, dict)
                                else act, list(_ACTS))
        layers: dict[str, nn.Module] = {}
        if hidden_dim is None:
            layers["head"] = nn.Linear(in_channels, num_classes)
        else:
            check_int(_cfg_path, "hidden_dim", hidden_dim, low=1)
            layers["pre_logits"] = nn.Linear(in_channels, hidden_dim)
            layers["act"] = _ACTS[act_type]()
            layers["head"] = nn.Linear(hidden_dim, num_classes)
        self.layers = nn.Sequential()
        for name, module in layers.items():
            self.layers.add_module(name, module)

    def pre_logits(self, feats: Any) -> torch.Tensor:
        feat = feats[-1] if isinstance(feats, (tuple, list)) else feats
        token = feat[-1] if isinstance(feat, list) else feat
        if self.hidden_dim is None:
            return token
        layers: Any = self.layers
        return layers.act(layers.pre_logits(token))

    def forward(self, feats: Any) -> torch.Tensor:
        layers: Any = self.layers
        return layers.head(self.pre_logits(feats))


def _reduce(loss: torch.Tensor, weight: torch.Tensor | None, reduction: str,
            avg_factor: float | None) -> torch.Tensor:
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if avg_factor is None:
        return loss.mean() if reduction == "mean" else loss.sum()
    if reduction == "mean":
        return loss.sum() / avg_factor
    raise ConfigError("avg_factor works with reduction='mean' only")


@MODELS.register_module()
class CrossEntropyLoss(nn.Module):
    """Softmax cross entropy on class indices, or on soft labels with ``use_soft=True``;
    ``use_sigmoid=True`` is binary cross entropy per class."""

    def __init__(self, use_sigmoid: bool = False, use_soft: bool = False,
                 reduction: str = "mean", loss_weight: float = 1.0,
                 class_weight: Sequence[float] | None = None,
                 pos_weight: Sequence[float] | None = None, _cfg_path: str = "loss"):
        super().__init__()
        if use_sigmoid and use_soft:
            raise ConfigError(f"{_cfg_path}: use_sigmoid and use_soft cannot both be True")
        self.use_sigmoid, self.use_soft = bool(use_sigmoid), bool(use_soft)
        self.reduction = check_choice(_cfg_path, "reduction", reduction, ("none", "mean", "sum"))
        self.loss_weight = float(loss_weight)
        self.class_weight = class_weight
        self.pos_weight = pos_weight

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor,
                weight: torch.Tensor | None = None, avg_factor: float | None = None,
                reduction_override: str | None = None) -> torch.Tensor:
        reduction = reduction_override or self.reduction
        cw = (cls_score.new_tensor(self.class_weight) if self.class_weight is not None else None)
        if self.use_sigmoid:
            if label.dim() != cls_score.dim():
                label = F.one_hot(label.long(), cls_score.shape[-1])
            pw = cls_score.new_tensor(self.pos_weight) if self.pos_weight is not None else None
            loss = F.binary_cross_entropy_with_logits(cls_score, label.float(), weight=cw,
                                                      pos_weight=pw, reduction="none")
            if weight is not None:
                weight = weight.float().view(-1, 1)
        elif self.use_soft or label.dim() == cls_score.dim():
            loss = -(label * F.log_softmax(cls_score, dim=-1))
            if cw is not None:
                loss = loss * cw
            loss = loss.sum(dim=-1)
        else:
            loss = F.cross_entropy(cls_score, label.long(), weight=cw, reduction="none")
        if weight is not None:
            weight = weight.float()
        return self.loss_weight * _reduce(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class LabelSmoothLoss(nn.Module):
    """Cross entropy against smoothed labels: ``(1 - e) * one_hot + e / num_classes``
    (``mode='original'``; ``'classy_vision'`` uses ``e = val / (1 + val)``)."""

    def __init__(self, label_smooth_val: float, num_classes: int | None = None,
                 use_sigmoid: bool | None = None, mode: str = "original",
                 reduction: str = "mean", loss_weight: float = 1.0,
                 class_weight: Sequence[float] | None = None,
                 pos_weight: Sequence[float] | None = None, _cfg_path: str = "loss"):
        super().__init__()
        if isinstance(label_smooth_val, bool) or not isinstance(label_smooth_val, (int, float)) \
                or not 0 <= label_smooth_val < 1:
            raise ConfigError(f"{_cfg_path}.label_smooth_val must be a number in [0, 1), got "
                              f"{label_smooth_val!r}")
        self.mode = check_choice(_cfg_path, "mode", mode, ("original", "classy_vision"))
        check_default(_cfg_path, "use_sigmoid", bool(use_sigmoid), False)
        self.num_classes = num_classes
        self.eps = (label_smooth_val / (1 + label_smooth_val) if mode == "classy_vision"
                    else float(label_smooth_val))
        self.ce = CrossEntropyLoss(use_soft=True, reduction=reduction, loss_weight=loss_weight,
                                   class_weight=class_weight, _cfg_path=_cfg_path)

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor,
                weight: torch.Tensor | None = None, avg_factor: float | None = None,
                reduction_override: str | None = None) -> torch.Tensor:
        n = cls_score.shape[1]
        if self.num_classes is not None and self.num_classes != n:
            raise InputError(f"LabelSmoothLoss has num_classes={self.num_classes} but the scores "
                             f"have {n} classes")
        if label.dim() == 1 or (label.dim() == 2 and label.shape[1] == 1):
            label = F.one_hot(label.view(-1).long(), n)
        smooth = label.float() * (1 - self.eps) + self.eps / n
        return self.ce(cls_score, smooth, weight, avg_factor, reduction_override)
