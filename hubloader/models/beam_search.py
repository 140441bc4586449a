"""Beam search for ``generate(num_beams=N)``, step for step as transformers' (so the ids are
the same): accumulated log-probabilities, ``max(2, 1 + #eos) * N`` candidates a step, finished
hypotheses scored by ``sum_logprobs / new_len ** length_penalty``, and its early-stop heuristic.

The decoding state a family's ``_generation_step`` returns is reordered between steps by
selecting, in every tensor whose first dimension is the beam rows, the rows the beams came from.
"""

from __future__ import annotations

from typing import Any

import torch

from .logits import penalize_repetition
from .stopping import StopCheck, any_stop

__all__ = ["beam_search"]

_NEG = -1.0e9


def _reorder(obj: Any, index: torch.Tensor, rows: int) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.index_select(0, index) if obj.dim() and obj.shape[0] == rows else obj
    if isinstance(obj, dict):
        return {k: _reorder(v, index, rows) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_reorder(v, index, rows) for v in obj)
    return obj


def _gather(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


def beam_search(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *,
                num_beams: int, max_new_tokens: int, min_new_tokens: int, eos: list[int],
                pad_token_id: int | None, length_penalty: float, early_stopping: bool | str,
                num_return_sequences: int, repetition_penalty: float,
                stop_checks: list[StopCheck]) -> torch.Tensor:
    """``[batch * num_return_sequences, len]`` ids: the best finished beams of each row."""

    batch = input_ids.shape[0]
    input_ids = input_ids.repeat_interleave(num_beams, dim=0)
    if attention_mask is not None:
        attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)
    flat, state = model._generation_begin(input_ids, attention_mask)
    dev, rows = flat.device, batch * num_beams
    cur_len = prompt_len = flat.shape[1]
    max_length = prompt_len + max_new_tokens
    fill = (pad_token_id or eos[0]) if eos else -1  # transformers' fill value, quirks included
    running = torch.full((batch, num_beams, max_length), fill, dtype=torch.long, device=dev)
    running[:, :, :cur_len] = flat.view(batch, num_beams, -1)
    sequences = running.clone()
    running_scores = torch.zeros(batch, num_beams, device=dev)
    running_scores[:, 1:] = _NEG
    beam_scores = torch.full((batch, num_beams), _NEG, device=dev)
    finished = torch.zeros(batch, num_beams, dtype=torch.bool, device=dev)
    improvable = torch.ones(batch, 1, dtype=torch.bool, device=dev)
    running_idx = torch.full((batch, num_beams, max_new_tokens), -1, dtype=torch.long, device=dev)
    beam_idx = running_idx.clone()
    keep = max(2, 1 + len(eos)) * num_beams
    top_mask = torch.arange(keep, device=dev) < num_beams
    eos_t = torch.tensor(eos, dtype=torch.long, device=dev)
    offset = torch.arange(batch, device=dev).view(-1, 1) * num_beams
    step_ids = flat
    while True:
        logits, state = model._generation_step(state, step_ids)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        seen = running[:, :, :cur_len].reshape(rows, -1)
        if repetition_penalty != 1.0:
            log_probs = penalize_repetition(log_probs, seen, repetition_penalty)
        if eos and cur_len - prompt_len < min_new_tokens:
            log_probs[:, eos_t] = float("-inf")
        vocab = log_probs.shape[-1]
        acc = (log_probs.view(batch, num_beams, vocab) + running_scores[:, :, None]).view(batch, -1)
        top_scores, top_index = torch.topk(acc, k=keep)
        from_beam = top_index // vocab
        cand_idx = _gather(running_idx, from_beam)
        cand = _gather(running, from_beam)
        cand[:, :, cur_len] = top_index % vocab
        cand_idx[:, :, cur_len - prompt_len] = from_beam + offset
        cand_rows = cand[:, :, :cur_len + 1].reshape(batch * keep, -1)
        hits = cand_rows.shape[1] >= max_length
        stop = torch.full((batch * keep,), hits, dtype=torch.bool, device=dev)
        if eos:
            stop |= torch.isin(cand_rows[:, -1], eos_t)
        if stop_checks:
            stop |= any_stop(stop_checks, cand_rows, None)
        stop = stop.view(batch, keep)
        # the best candidates that did not stop run on
        live_scores = top_scores + stop.float() * _NEG
        nxt = torch.topk(live_scores, k=num_beams)[1]
        running = _gather(cand, nxt)
        running_scores = _gather(live_scores, nxt)
        running_idx = _gather(cand_idx, nxt)
        # the candidates among the best num_beams that stopped join the finished hypotheses
        just_done = stop & top_mask[None, :]
        scored = top_scores / ((cur_len + 1 - prompt_len) ** length_penalty)
        full = finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        scored = scored + full.float() * _NEG + (~improvable).float() * _NEG + (~just_done) * _NEG
        merged = torch.topk(torch.cat([beam_scores, scored], 1), k=num_beams)[1]
        sequences = _gather(torch.cat([sequences, cand], 1), merged)
        beam_scores = _gather(torch.cat([beam_scores, scored], 1), merged)
        beam_idx = _gather(torch.cat([beam_idx, cand_idx], 1), merged)
        finished = _gather(torch.cat([finished, just_done], 1), merged)
        order = running_idx[:, :, cur_len - prompt_len].reshape(-1)
        state = _reorder(state, order, rows)
        step_ids = running[:, :, cur_len].reshape(rows, 1)
        cur_len += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_length - prompt_len
        else:
            best_len = cur_len - prompt_len
        best_running = running_scores[:, :1] / (best_len ** length_penalty)
        worst_done = torch.where(finished, beam_scores.min(dim=1, keepdim=True)[0],
                                 torch.full_like(beam_scores, _NEG))
        improvable = improvable & (best_running > worst_done).any(dim=-1, keepdim=True)
        open_beams = not (bool(finished.all()) and early_stopping is True)
        if not (bool(improvable.any()) and open_beams and not bool(stop.all())):
            break
    n = num_return_sequences
    sequences = sequences[:, :n].reshape(batch * n, -1)
    generated = int((beam_idx[:, :n].reshape(batch * n, -1) >= 0).sum(dim=1).max())
    return sequences[:, :prompt_len + generated]
