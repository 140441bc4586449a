"""Logit processors shared by every decoding strategy (greedy, sampling, beam search)."""

from __future__ import annotations

import torch

__all__ = ["penalize_repetition"]


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty, as transformers applies it: the logit of every token already
    in ``seen`` (``[batch, len]``) is divided by ``penalty`` when positive, multiplied when
    negative."""
    scores = logits.gather(-1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits.scatter(-1, seen, scores)
