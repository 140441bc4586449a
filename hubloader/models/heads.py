"""What the heads of every family share: the label count a config implies and the losses
transformers computes for classification and causal language modelling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError

__all__ = ["labels_count", "num_labels", "classification_loss", "causal_lm_loss"]


def labels_count(num_labels: int | None, id2label: dict | None) -> int:
    """``num_labels`` from the config, else the size of ``id2label``, else 2.

    Raises:
        ConfigError: a count that is not positive.
    """
    n = num_labels if num_labels is not None else (len(id2label) if id2label else 2)
    if n <= 0:
        raise ConfigError(f"num_labels must be positive, got {n}")
    return n


def num_labels(config: Any) -> int:
    """The label count of a validated config (its ``num_labels``, set by ``validate``)."""
    return labels_count(config.num_labels, getattr(config, "id2label", None))


def classification_loss(config: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, MSE (one label / regression) or BCE (multi-label), as transformers does.

    Raises:
        InputError: ``labels`` is not a tensor.
    """
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    n = num_labels(config)
    if config.problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if n == 1 or config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
    return F.cross_entropy(logits.view(-1, n), labels.view(-1))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor,
                   input_ids: torch.Tensor | None) -> torch.Tensor:
    """The next-token loss: position ``i`` predicts ``labels[i + 1]`` (-100 is ignored),
    computed in float32 whatever the logits' dtype.

    Raises:
        InputError: ``labels`` are not token ids, or not shaped like ``input_ids``.
    """
    from ._inputs import check_same_shape, check_token_ids

    check_token_ids("labels", labels)
    check_same_shape("labels", labels, "input_ids", input_ids)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                           labels[:, 1:].reshape(-1), ignore_index=-100)
