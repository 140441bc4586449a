"""Checks of ``forward`` inputs, so a wrong input fails with a clear :class:`InputError` at the
model's door instead of a stack trace deep inside a layer.

Checks of values (an id outside the vocabulary) run in eager mode only: under ``torch.compile``
and ``torch.export`` they would break the graph on a data-dependent branch and sync the host
with the device on every call; checks of types and shapes run always (they are static).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError

__all__ = ["check_token_ids", "require_token_ids", "check_same_shape", "check_pixel_values",
           "positions_from_mask", "check_decoder_inputs", "check_no_other_inputs"]


def check_no_other_inputs(owner: str, others: dict[str, Any], takes: str) -> None:
    """``others`` (a ``forward``'s ``**kwargs``) must be empty; ``takes`` lists what ``owner``
    takes, for the message.

    Raises:
        InputError: naming the unexpected inputs and the expected ones.
    """
    if others:
        raise InputError(f"{owner} got unexpected input(s) {sorted(others)}; it takes {takes}")


def check_token_ids(name: str, value: Any, *, required: bool = False,
                    vocab_size: int | None = None) -> None:
    """``value`` must be a ``[batch, seq]`` integer tensor (or ``None`` when not required).

    Raises:
        InputError: wrong type, rank, dtype, or an id outside ``[0, vocab_size)``.
    """
    if value is None:
        if required:
            raise InputError(f"{name} is required: a LongTensor of token ids, shape [batch, seq]")
        return
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape [batch, seq], got "
                         f"{type(value).__name__}; call the tokenizer with return_tensors='pt'")
    if value.dim() != 2:
        raise InputError(f"{name} must have shape [batch, seq], got {tuple(value.shape)}; "
                         "add a batch dimension with .unsqueeze(0)")
    if "mask" not in name and (value.is_floating_point() or value.dtype == torch.bool):
        raise InputError(f"{name} must hold integer ids, got dtype {value.dtype}")
    if vocab_size is not None and value.numel() and not torch.compiler.is_compiling() and (
            value.min() < 0 or value.max() >= vocab_size):  # data-dependent: eager only
        raise InputError(f"{name} must lie in [0, {vocab_size}), got values in "
                         f"[{int(value.min())}, {int(value.max())}]; is this the model's tokenizer?")


def require_token_ids(name: str, value: Any, *, vocab_size: int | None = None) -> torch.Tensor:
    """``value``, checked as :func:`check_token_ids` with ``required=True``.

    Raises:
        InputError: as :func:`check_token_ids`, or ``value`` is ``None``.
    """
    check_token_ids(name, value, required=True, vocab_size=vocab_size)
    return value


def check_same_shape(name: str, value: torch.Tensor | None, ref_name: str,
                     ref: torch.Tensor | None) -> None:
    if value is not None and ref is not None and tuple(value.shape) != tuple(ref.shape):
        raise InputError(f"{name} shape {tuple(value.shape)} differs from {ref_name} shape "
                         f"{tuple(ref.shape)}")


def check_pixel_values(value: Any, *, num_channels: int,
                       image_size: tuple[int, int] | None = None,
                       size_hint: str = "") -> torch.Tensor:
    """``value`` must be a float ``[batch, channels, height, width]`` tensor; it is returned.

    Raises:
        InputError: wrong type, rank, dtype, channel count, or (when fixed) spatial size.
    """
    if value is None:
        raise InputError("pixel_values is required: a float tensor [batch, channels, height, "
                         "width]; build it with the model's image processor")
    if not isinstance(value, torch.Tensor):
        raise InputError(f"pixel_values must be a torch.Tensor, got {type(value).__name__}; "
                         "build it with the model's image processor (AutoLoader.get_processor())")
    if value.dim() != 4:
        raise InputError(f"pixel_values must have shape [batch, channels, height, width], got "
                         f"{tuple(value.shape)}; add a batch dimension with .unsqueeze(0)")
    if not value.is_floating_point():
        raise InputError(f"pixel_values must be a float tensor, got {value.dtype}; rescale and "
                         "normalize the image first (the image processor does)")
    if value.shape[1] != num_channels:
        raise InputError(f"pixel_values has {value.shape[1]} channels, the model expects "
                         f"{num_channels}")
    if image_size is not None and tuple(value.shape[2:]) != tuple(image_size):
        raise InputError(f"pixel_values is {tuple(value.shape[2:])} pixels, the model expects "
                         f"{tuple(image_size)}; resize with the model's image processor{size_hint}")
    return value


def positions_from_mask(attention_mask: torch.Tensor | None, past_len: int, seq: int,
                        device: torch.device) -> torch.Tensor:
    """Position ids of the last ``seq`` tokens: ``[1, seq]`` counting on from ``past_len``
    without a mask, else ``[batch, seq]`` counting real tokens only (left padding)."""
    if attention_mask is None:
        return torch.arange(past_len, past_len + seq, device=device).unsqueeze(0)
    pos = attention_mask.long().cumsum(-1) - 1  # left padding: real tokens count from 0
    pos = pos.masked_fill(attention_mask == 0, 1)
    return pos[:, -seq:]


def check_decoder_inputs(input_ids: Any, attention_mask: torch.Tensor | None,
                         position_ids: torch.Tensor | None, past_key_values: Any, *,
                         vocab_size: int, num_layers: int, max_positions: int | None = None,
                         max_positions_name: str = "max_position_embeddings",
                         ) -> tuple[torch.Tensor, int]:
    """The inputs of a decoder-only ``forward`` with a KV cache, checked; returns
    ``(input_ids, past_len)`` (``past_len``: the tokens already in ``past_key_values``).

    Raises:
        InputError: wrong types or shapes, ids outside the vocabulary, a cache of another
            depth than ``num_layers``, a mask that does not cover past and new tokens, a
            sequence longer than ``max_positions`` (when the positions are a fixed table).
    """
    input_ids = require_token_ids("input_ids", input_ids, vocab_size=vocab_size)
    batch, seq = input_ids.shape
    past_len = past_key_values[0][0].shape[2] if past_key_values else 0
    if past_key_values is not None and len(past_key_values) != num_layers:
        raise InputError(f"past_key_values has {len(past_key_values)} layers, the model "
                         f"{num_layers}")
    if max_positions is not None and past_len + seq > max_positions:
        raise InputError(f"sequence of {past_len + seq} tokens exceeds {max_positions_name} "
                         f"{max_positions}; truncate the input")
    if attention_mask is not None:
        check_token_ids("attention_mask", attention_mask)
        if attention_mask.shape != (batch, past_len + seq):
            raise InputError(f"attention_mask must be [batch, past + seq] = "
                             f"{(batch, past_len + seq)}, got {tuple(attention_mask.shape)}")
    if position_ids is not None:
        check_token_ids("position_ids", position_ids)
        check_same_shape("position_ids", position_ids, "input_ids", input_ids)
    return input_ids, past_len
