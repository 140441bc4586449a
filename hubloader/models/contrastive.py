"""Contrastive search (Su et al., "A Contrastive Framework for Neural Text Generation"), as
transformers runs it for ``generate(penalty_alpha=, top_k=)``.

Each step takes the ``top_k`` most likely next tokens, runs the model once on all of them
(the cache repeated ``top_k`` times), and keeps the one maximising
``(1 - alpha) * p(token) - alpha * max cos(h_token, h_context)``: the model's confidence
minus how much the token's last hidden state repeats one already in the text. Padding in the
prompt never counts as context.

It needs what :class:`~hubloader.models.generation.CausalLMMixin` has: a ``backbone`` that
returns ``hidden_states`` (what the head reads) and ``past_key_values`` (tensors with the batch
first), under an ``lm_head``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import GenerationArgumentError
from .logits import append_tokens

__all__ = ["contrastive_search", "check_contrastive_args"]


def check_contrastive_args(model: Any, penalty_alpha: Any, top_k: Any, do_sample: bool) -> None:
    """Refuse arguments contrastive search cannot honour, naming them.

    Raises:
        GenerationArgumentError: ``penalty_alpha`` outside [0, 1], no ``top_k``, sampling
            asked for, or a model that is not a decoder-only LM (``decoder_only``).
    """
    if isinstance(penalty_alpha, bool) or not isinstance(penalty_alpha, (int, float)) \
            or not 0 <= penalty_alpha <= 1:
        raise GenerationArgumentError(f"penalty_alpha must be a number in [0, 1], got "
                                      f"{penalty_alpha!r}")
    if top_k is None:
        raise GenerationArgumentError("contrastive search (penalty_alpha=) needs top_k, the "
                                      "number of candidates per step (e.g. top_k=4)")
    if do_sample:
        raise GenerationArgumentError("contrastive search is deterministic: drop do_sample=True "
                                      "or penalty_alpha=")
    if not getattr(model, "decoder_only", False):
        raise GenerationArgumentError(f"{type(model).__name__} is not a decoder-only language "
                                      "model; contrastive search serves those (GPT-2, OPT, Llama...)")


def _map_cache(cache: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(cache, torch.Tensor):
        return fn(cache)
    if isinstance(cache, (list, tuple)):
        return type(cache)(_map_cache(c, fn) for c in cache)
    return cache


def contrastive_search(model: Any, input_ids: torch.Tensor, *, penalty_alpha: float, top_k: int,
                       max_new_tokens: int, eos: list[int], pad_token_id: int,
                       attention_mask: torch.Tensor | None = None,
                       logits_hook: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                       streamer: Any = None) -> torch.Tensor:
    """Decode with contrastive search (arguments checked by the caller, ``generate``).

    Args:
        logits_hook: ``(logits, tokens) -> logits``, applied before the candidates are taken
            (the repetition penalty).

    Returns:
        ``[batch, seq + new]`` LongTensor: the prompt and the chosen tokens; rows that met an
        ``eos`` id are filled with ``pad_token_id`` after it.
    """
    backbone, head = model.backbone, model.lm_head
    batch, k = input_ids.shape[0], top_k
    enc = backbone(input_ids, attention_mask=attention_mask, use_cache=True)
    context = enc["hidden_states"]  # [batch, seq, dim]: every token's representation
    past = enc["past_key_values"]
    logits = head(context[:, -1])
    seen = (attention_mask.bool() if attention_mask is not None
            else torch.ones(input_ids.shape, dtype=torch.bool, device=input_ids.device))
    mask = attention_mask
    tokens = input_ids
    rows = torch.arange(batch, device=input_ids.device)
    eos_t = torch.tensor(eos, dtype=torch.long, device=tokens.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=tokens.device)
    if streamer is not None:
        streamer.put(tokens.cpu())
    for _ in range(max_new_tokens):
        if logits_hook is not None:
            logits = logits_hook(logits, tokens)
        probs = logits.float().softmax(dim=-1)
        top_p, top_ids = probs.topk(min(k, probs.shape[-1]), dim=-1)  # [batch, k]
        width = top_ids.shape[1]
        step_mask = None
        if mask is not None:
            step_mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1).repeat_interleave(width, 0)
        out = backbone(top_ids.reshape(-1, 1), attention_mask=step_mask,
                       past_key_values=_map_cache(past, lambda t: t.repeat_interleave(width, 0)),
                       use_cache=True)
        cand = out["hidden_states"][:, -1]  # [batch * k, dim]
        ctx = context.repeat_interleave(width, 0)
        ctx_n = ctx / ctx.norm(dim=2, keepdim=True)
        cand_n = cand / cand.norm(dim=1, keepdim=True)
        cosine = torch.matmul(ctx_n, cand_n[:, :, None]).squeeze(-1)  # [batch * k, len]
        cosine = cosine.masked_fill(~seen.repeat_interleave(width, 0), torch.finfo(cosine.dtype).min)
        penalty = cosine.max(dim=-1).values
        score = (1.0 - penalty_alpha) * top_p.reshape(-1) - penalty_alpha * penalty
        chosen = score.view(batch, width).argmax(dim=-1)
        flat = rows * width + chosen
        nxt = top_ids[rows, chosen]
        tokens = append_tokens(tokens, nxt, finished, pad_token_id=pad_token_id, eos_t=eos_t,
                               streamer=streamer)
        if eos and bool(finished.all()):
            break
        context = torch.cat([context, cand[flat][:, None]], dim=1)
        seen = torch.cat([seen, seen.new_ones(batch, 1)], dim=1)
        past = _map_cache(out["past_key_values"], lambda t: t[flat])
        logits = head(cand[flat])
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
    if streamer is not None:
        streamer.end()
    return tokens
