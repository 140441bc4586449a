"""When a row of ``generate()`` stops besides its end-of-sequence ids: ``stop_strings`` and
user ``stopping_criteria`` (transformers' ``StoppingCriteria`` objects, or any callable of the
same shape).

Each check takes the rows so far, ``[rows, len]``, and the step's scores, and answers
``[rows]`` booleans. A stop string matches, as in transformers, when it ends inside the text of
the row's last token (the prompt's end included): a stop string further back does not stop the
row again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..errors import GenerationArgumentError

__all__ = ["StopCheck", "build_stop_checks", "any_stop"]

StopCheck = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class _StopStrings:
    """Rows whose decoded text holds one of ``strings`` overlapping the last token."""

    def __init__(self, strings: list[str], tokenizer: Any, prompt_len: int):
        self.strings, self.tokenizer, self.prompt_len = strings, tokenizer, prompt_len
        # a stop string spans at most one token per character, plus the token running into it
        self.window = max(len(s) for s in strings) + 1

    def __call__(self, rows: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        out = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
        start = max(0, rows.shape[1] - self.window)  # the prompt's end counts, as in transformers
        for r, ids in enumerate(rows[:, start:].tolist()):
            head = self.tokenizer.decode(ids[:-1]) if len(ids) > 1 else ""
            text = self.tokenizer.decode(ids)
            out[r] = any(s in text[max(0, len(head) - len(s) + 1):] for s in self.strings)
        return out


def _user_check(fn: Any) -> StopCheck:
    def check(rows: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
        got = fn(rows, scores)
        if isinstance(got, torch.Tensor):
            return got.to(device=rows.device, dtype=torch.bool).expand(rows.shape[0])
        return torch.full((rows.shape[0],), bool(got), dtype=torch.bool, device=rows.device)

    return check


def build_stop_checks(*, stop_strings: str | list[str] | None, tokenizer: Any,
                      stopping_criteria: Iterable[Any] | None, prompt_len: int) -> list[StopCheck]:
    """The checks ``generate()`` runs after each step.

    Raises:
        GenerationArgumentError: ``stop_strings`` without ``tokenizer`` (as transformers), an
            empty or non-string stop string, or a criterion that is not callable.
    """
    checks: list[StopCheck] = []
    if stop_strings is not None:
        strings = [stop_strings] if isinstance(stop_strings, str) else stop_strings
        if not isinstance(strings, (list, tuple)) or not strings or not all(
                isinstance(s, str) and s for s in strings):
            raise GenerationArgumentError(f"stop_strings must be a non-empty string or a list of "
                                          f"them, got {stop_strings!r}")
        if tokenizer is None or not callable(getattr(tokenizer, "decode", None)):
            raise GenerationArgumentError("stop_strings needs the model's tokenizer: pass "
                                          "generate(..., stop_strings=..., tokenizer=tok)")
        checks.append(_StopStrings(list(strings), tokenizer, prompt_len))
    for fn in stopping_criteria or ():
        if not callable(fn):
            raise GenerationArgumentError(f"stopping_criteria must hold callables "
                                          f"(input_ids, scores) -> bool tensor, got {fn!r}")
        checks.append(_user_check(fn))
    return checks


def any_stop(checks: list[StopCheck], rows: torch.Tensor,
             scores: torch.Tensor | None) -> torch.Tensor:
    """``[rows]``: whether any check stops each row."""
    out = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
    for check in checks:
        out |= check(rows, scores)
    return out
