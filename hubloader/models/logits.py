"""What every decoding strategy (greedy, sampling, beam and contrastive search) shares: logit
processors and the step that appends the chosen tokens."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["penalize_repetition", "append_tokens"]


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty, as transformers applies it: the logit of every token already
    in ``seen`` (``[batch, len]``) is divided by ``penalty`` when positive, multiplied when
    negative."""
    scores = logits.gather(-1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits.scatter(-1, seen, scores)


def append_tokens(tokens: torch.Tensor, nxt: torch.Tensor, finished: torch.Tensor, *,
                  pad_token_id: int, eos_t: torch.Tensor, streamer: Any = None) -> torch.Tensor:
    """``tokens`` (``[batch, len]``) with ``nxt`` (``[batch]``) appended, ``pad_token_id`` in
    the rows already ``finished``; the new tokens go to ``streamer``, and the rows whose new
    token is one of ``eos_t`` are marked in ``finished`` (in place)."""
    nxt = torch.where(finished, torch.full_like(nxt, pad_token_id), nxt)
    if streamer is not None:
        streamer.put(nxt.cpu())
    if eos_t.numel():
        finished |= torch.isin(nxt, eos_t)
    return torch.cat([tokens, nxt[:, None]], dim=1)
