"""FLOPs and parameters of a model, counted as mmengine's ``get_model_complexity_info`` counts.

The counting is torch's own :class:`torch.utils.flop_counter.FlopCounterMode` (it sees every
aten op one forward runs). Two conventions are mmengine's: a multiply-add counts once (torch
counts two, so the total is halved), and the normalisations and pooling that mmengine's
handles count too — batch norm ``2 * numel`` with an affine part, layer norm ``5 * numel``,
a global average ``numel`` — added through ``custom_mapping`` (as doubled counts, halved with
the rest). torch's CPU attention kernel, absent from its registry, counts as the two matrix
products it computes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError

__all__ = ["get_flops"]


def _numel(shape: Any) -> int:
    return math.prod(int(s) for s in shape) if shape is not None else 0


def _batch_norm(x_shape: Any, weight: Any = None, *args: Any, out_shape: Any = None,
                **kwargs: Any) -> int:
    return 2 * _numel(x_shape) * (2 if weight is not None else 1)


def _layer_norm(x_shape: Any, normalized_shape: Any = None, weight: Any = None, *args: Any,
                out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * _numel(x_shape) * (5 if weight is not None else 4)


def _average(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * _numel(x_shape)


def _sdpa_cpu(q_shape: Any, k_shape: Any, v_shape: Any, *args: Any, out_shape: Any = None,
              **kwargs: Any) -> int:
    """torch's CPU attention kernel, which its flop registry leaves out: the two batched
    matrix products (``q @ k^T`` and ``attn @ v``)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(q_shape, k_shape, v_shape))


def _mapping() -> dict[Any, Any]:
    aten = torch.ops.aten
    out: dict[Any, Any] = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        out[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu
    for name in ("native_batch_norm", "_native_batch_norm_legit",
                 "_native_batch_norm_legit_no_training"):
        if hasattr(aten, name):
            out[getattr(aten, name)] = _batch_norm
    out[aten.native_layer_norm] = _layer_norm
    out[aten._adaptive_avg_pool2d] = _average
    out[aten.mean] = _average
    return out


def get_flops(model: nn.Module, input_shape: Sequence[int], *, inputs: torch.Tensor | None = None
              ) -> dict[str, int]:
    """FLOPs (one per multiply-add) of one forward on a ``[1, *input_shape]`` input, and params.

    Args:
        model: a module (an ``ImageClassifier`` runs ``mode='tensor'``).
        input_shape: ``(channels, height, width)`` (or any shape without the batch axis).
        inputs: a ready input instead of zeros of ``input_shape``.

    Returns:
        ``{"flops": int, "params": int}``.

    Raises:
        InputError: ``model`` is not a module or ``input_shape`` is not positive integers.

    Example:
        >>> get_flops(get_model("resnet18_8xb32_in1k"), (3, 224, 224))   # doctest: +SKIP
        {'flops': 1819065856, 'params': 11689512}
    """
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(model, nn.Module):
        raise InputError(f"get_flops takes a torch module, got {type(model).__name__}")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                            for s in shape):
        raise InputError(f"input_shape must be positive integers like (3, 224, 224), got "
                         f"{input_shape!r}")
    param = next(model.parameters(), None)
    x = inputs if inputs is not None else torch.zeros(
        (1,) + shape, dtype=param.dtype if param is not None else torch.float32,
        device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_mapping()) as counter, \
                torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return {"flops": int(counter.get_total_flops()) // 2, "params": int(params)}
