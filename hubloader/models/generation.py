"""``generate()``: greedy and sampling decoding with a KV cache, shared by every generative family.

A family fills two hooks:

- ``_generation_begin(input_ids, attention_mask) -> (tokens, state)``: the sequence the output
  starts from (the prompt for decoders, the decoder start token for encoder-decoders) and the
  decoding state (cache, masks, encoder output);
- ``_generation_step(state, step_ids) -> (logits, state)``: run the model on ``step_ids``
  (``tokens`` on the first step, then the last chosen token) and return the logits of the last
  position, ``[batch, vocab]``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol, cast

import torch

from ..errors import ConfigError, GenerationArgumentError, InputError
from .contrastive import check_contrastive_args, contrastive_search
from .logits import append_tokens, penalize_repetition

__all__ = ["GenerationMixin", "CausalLMMixin", "TokenStreamer", "select_next_tokens", "penalize_repetition",
           "read_generation_ids"]

logger = logging.getLogger(__name__)


def _as_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenerationArgumentError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise GenerationArgumentError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_args(max_new_tokens, temperature, top_k, top_p, eos_token_id) -> list[int]:
    _as_int("max_new_tokens", max_new_tokens, minimum=1)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise GenerationArgumentError(f"temperature must be a number > 0, got {temperature!r}; "
                                      "use do_sample=False for greedy decoding")
    if top_k is not None:
        _as_int("top_k", top_k, minimum=1)
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise GenerationArgumentError(f"top_p must be in (0, 1], got {top_p!r}")
    if eos_token_id is None:
        return []
    ids = [eos_token_id] if not isinstance(eos_token_id, (list, tuple)) else list(eos_token_id)
    for i in ids:
        _as_int("eos_token_id", i, minimum=0)
    return ids


def _check_ids(input_ids: Any, vocab_size: int | None) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise InputError(f"input_ids must be a torch.Tensor of shape [batch, seq], got "
                         f"{type(input_ids).__name__}; call the tokenizer with return_tensors='pt'")
    if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise InputError(f"input_ids must have shape [batch, seq] with batch, seq >= 1, got "
                         f"{tuple(input_ids.shape)}; add a batch dimension with .unsqueeze(0)")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise InputError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if vocab_size is not None and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
        raise InputError(f"input_ids must lie in [0, {vocab_size}), got values in "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")


class TokenStreamer(Protocol):
    """What ``generate(streamer=)`` feeds as it goes (the shape of transformers' streamers):
    ``put`` gets the prompt ids first, then each step's ``[batch]`` new ids; ``end`` once."""

    def put(self, value: torch.Tensor) -> None: ...

    def end(self) -> None: ...


def select_next_tokens(logits: torch.Tensor, *, do_sample: bool, temperature: float = 1.0,
                       top_k: int | None = None, top_p: float | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of ``logits`` (``[batch, vocab]``).

    Greedy is the arg-max. Sampling scales by ``1 / temperature``, keeps the ``top_k`` best,
    then the smallest set whose probability reaches ``top_p`` (always at least one token), and
    draws from what is left.

    Returns:
        ``[batch]`` LongTensor.
    """
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(scores, dim=-1, descending=False)
        cum = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cum <= (1 - top_p)
        drop[..., -1] = False  # keep the most likely token
        scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def read_generation_ids(model_dir: Path | None) -> dict[str, Any]:
    """The ``eos_token_id`` (an int or a list) and ``pad_token_id`` of ``generation_config.json``
    in ``model_dir``; entries of the wrong type, or an unreadable file, are left out (logged)."""
    path = Path(model_dir) / "generation_config.json" if model_dir is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("ignoring %s: %s", path, err)
        return {}
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        return out
    eos = data.get("eos_token_id")
    if isinstance(eos, int) and not isinstance(eos, bool) or (
            isinstance(eos, list) and eos and all(isinstance(i, int) and not isinstance(i, bool)
                                                  for i in eos)):
        out["eos_token_id"] = eos
    pad = data.get("pad_token_id")
    if isinstance(pad, int) and not isinstance(pad, bool):
        out["pad_token_id"] = pad
    return out


class GenerationMixin:
    """Adds :meth:`generate` to a model that fills ``_generation_begin`` / ``_generation_step``."""

    def _generation_begin(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        raise NotImplementedError

    def _generation_step(self, state: Any, step_ids: torch.Tensor):
        raise NotImplementedError

    @property
    def generation_config(self) -> Any:
        """The decoding defaults ``generate()`` falls back on (:class:`GenerationConfig`): the
        checkpoint's ``generation_config.json`` (chat models list their end-of-turn ids there),
        else the config's token ids; read once, assignable, written by ``save_pretrained``."""
        from .generation_config import GenerationConfig

        cached = self.__dict__.get("_generation_config")
        if cached is None:
            cfg, model_dir = getattr(self, "config", None), getattr(self, "model_dir", None)
            try:
                cached = (GenerationConfig.from_pretrained(model_dir, config=cfg)
                          if model_dir is not None else GenerationConfig.from_model_config(cfg))
            except ConfigError as err:  # a broken file must not stop the model generating
                logger.warning("ignoring generation_config.json: %s", err)
                cached = GenerationConfig.from_model_config(cfg)
            self.__dict__["_generation_config"] = cached
        return cached

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.__dict__["_generation_config"] = value

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, *,
                 generation_config: Any = None, max_new_tokens: int | None = None,
                 max_length: int | None = None, min_new_tokens: int | None = None,
                 min_length: int | None = None, do_sample: bool | None = None,
                 temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, num_beams: int | None = None,
                 length_penalty: float | None = None, early_stopping: bool | str | None = None,
                 num_return_sequences: int | None = None,
                 eos_token_id: int | list[int] | None = None,
                 attention_mask: torch.Tensor | None = None, pad_token_id: int | None = None,
                 generator: torch.Generator | None = None, repetition_penalty: float | None = None,
                 streamer: TokenStreamer | None = None, stop_strings: str | list[str] | None = None,
                 tokenizer: Any = None, stopping_criteria: Any = None,
                 penalty_alpha: float | None = None, **unsupported: Any) -> torch.Tensor:
        """Generate token ids; every argument not given comes from ``generation_config`` (the
        argument, else :attr:`generation_config`), as in transformers.

        Args:
            input_ids: ``[batch, seq]`` prompt ids (decoder models) or source ids (T5).
            max_new_tokens: how many tokens to add at most (>= 1); wins over ``max_length``.
            max_length: the total length at most (prompt included; for encoder-decoders, the
                decoder ids). Not given, the configuration's ``max_length`` (20 by default)
                counts new tokens, within the model's positions, as in transformers 5.
            min_new_tokens, min_length: the end-of-sequence ids are barred until the output
                has this many new tokens / this total length.
            do_sample: sample instead of greedy arg-max (or beam search with ``num_beams``).
            temperature: logits are divided by it before sampling (> 0).
            top_k: sample only among the ``top_k`` most likely tokens (>= 1; the default
                configuration's is 50, as transformers'; ``generation_config.top_k = None``
                lifts the limit).
            top_p: nucleus sampling: the smallest set of tokens reaching this mass, in (0, 1].
            num_beams: beam search over this many beams (1: greedy or sampling), the ids equal
                to transformers'; ``length_penalty`` and ``early_stopping`` as there.
            num_return_sequences: sequences per prompt row (beam search: the best ones,
                ``<= num_beams``; sampling: independent draws).
            eos_token_id: stop a row once it emits this id (or any of these ids; ``[]``: none);
                later positions of a finished row hold ``pad_token_id``.
            attention_mask: ``[batch, seq]`` 1/0 mask for padded prompts (pad on the left for
                decoder models).
            pad_token_id: filler after a row finished (default: the configuration's, else the
                eos id).
            generator: a ``torch.Generator`` making sampling reproducible.
            repetition_penalty: > 1 discourages tokens already in the sequence (prompt
                included), as transformers does; 1 turns it off.
            streamer: receives the prompt, then each step's new tokens as they are chosen
                (see :class:`TokenStreamer`; not with beam search).
            stop_strings: stop a row once its text ends in one of these (needs ``tokenizer``).
            stopping_criteria: callables ``(input_ids, scores) -> bool [batch]`` (transformers'
                ``StoppingCriteriaList`` works); a row stops once one says so.
            penalty_alpha: contrastive search (with the ``top_k`` given here as the candidates
                per step), as transformers runs it: see :mod:`hubloader.models.contrastive`.

        Returns:
            ``[batch * num_return_sequences, total]`` LongTensor: prompt plus new tokens for
            decoder models, the decoder ids (start token first) for encoder-decoder models.

        Raises:
            InputError: ``input_ids`` or ``attention_mask`` of the wrong type or shape.
            GenerationArgumentError: an argument out of range, or one hubloader does not
                support (named).
        """
        if input_ids is None and "inputs" in unsupported:  # transformers' first argument's name
            input_ids = unsupported.pop("inputs")
        if unsupported:
            raise GenerationArgumentError(
                f"generate() does not support {', '.join(sorted(unsupported))}; it takes "
                "input_ids, attention_mask and the decoding arguments listed in its docstring")
        gen = self.generation_config if generation_config is None else generation_config

        def pick(value: Any, name: str) -> Any:
            return value if value is not None else getattr(gen, name, None)

        cfg = getattr(self, "config", None)
        top_k_given = top_k
        max_new_tokens = pick(max_new_tokens, "max_new_tokens")
        do_sample, num_beams = bool(pick(do_sample, "do_sample")), pick(num_beams, "num_beams") or 1
        temperature = pick(temperature, "temperature")
        top_k, top_p = pick(top_k, "top_k"), pick(top_p, "top_p")
        repetition_penalty = pick(repetition_penalty, "repetition_penalty")
        repetition_penalty = 1.0 if repetition_penalty is None else repetition_penalty
        returns = pick(num_return_sequences, "num_return_sequences") or 1
        if eos_token_id is None:
            eos_token_id = pick(None, "eos_token_id")
        if eos_token_id is None:
            eos_token_id = getattr(cfg, "eos_token_id", None)
        _check_ids(input_ids, getattr(cfg, "vocab_size", None))
        input_ids = cast(torch.Tensor, input_ids)  # checked just above
        if max_new_tokens is None:
            start_len = 1 if hasattr(type(cfg), "start_token_id") else input_ids.shape[1]
            if max_length is None:  # transformers 5: the configuration's max_length new tokens
                max_new_tokens = _as_int("max_length", getattr(gen, "max_length", None) or 20,
                                         minimum=1)
                limit = getattr(cfg, "max_position_embeddings", None) or getattr(
                    cfg, "n_positions", None)
                if isinstance(limit, int) and start_len < limit:
                    max_new_tokens = min(max_new_tokens, limit - start_len)
            else:  # an explicit max_length counts the whole output
                max_new_tokens = _as_int("max_length", max_length, minimum=1) - start_len
                if max_new_tokens < 1:
                    raise GenerationArgumentError(
                        f"the input is {start_len} tokens long but max_length is {max_length}; "
                        "increase max_length or, better, give max_new_tokens")
        eos = _check_args(max_new_tokens, 1.0 if temperature is None else temperature,
                          top_k, top_p, eos_token_id)
        temperature = 1.0 if temperature is None else temperature
        _as_int("num_beams", num_beams, minimum=1)
        _as_int("num_return_sequences", returns, minimum=1)
        if isinstance(repetition_penalty, bool) or not isinstance(repetition_penalty, (int, float)) \
                or not repetition_penalty > 0:
            raise GenerationArgumentError(f"repetition_penalty must be a number > 0, got "
                                          f"{repetition_penalty!r}; 1.0 turns it off")
        if attention_mask is not None and (not isinstance(attention_mask, torch.Tensor)
                                           or attention_mask.shape != input_ids.shape):
            raise InputError("attention_mask must be a tensor shaped like input_ids "
                             f"{tuple(input_ids.shape)}")
        if pad_token_id is None:
            pad_token_id = pick(None, "pad_token_id")
        if pad_token_id is None:
            pad_token_id = getattr(cfg, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = eos[0] if eos else 0
        if penalty_alpha is not None:  # its own arguments, as given (top_k is required)
            check_contrastive_args(self, penalty_alpha, top_k_given, do_sample)
            hook = (None if repetition_penalty == 1.0 else
                    lambda lg, seen: penalize_repetition(lg, seen, float(repetition_penalty)))
            return contrastive_search(self, input_ids, penalty_alpha=float(penalty_alpha),
                                      top_k=int(top_k_given or 1), max_new_tokens=max_new_tokens,
                                      eos=eos, pad_token_id=pad_token_id,
                                      attention_mask=attention_mask, logits_hook=hook,
                                      streamer=streamer)
        min_new = _as_int("min_new_tokens", pick(min_new_tokens, "min_new_tokens") or 0, minimum=0)
        min_total = _as_int("min_length", pick(min_length, "min_length") or 0, minimum=0)
        from .stopping import any_stop, build_stop_checks

        checks = build_stop_checks(stop_strings=pick(stop_strings, "stop_strings"),
                                   tokenizer=tokenizer, stopping_criteria=stopping_criteria,
                                   prompt_len=input_ids.shape[1])
        if num_beams > 1:
            if do_sample:
                raise GenerationArgumentError("do_sample=True with num_beams > 1 (beam sampling) "
                                              "is not supported; use one or the other")
            if streamer is not None:
                raise GenerationArgumentError("streamer cannot be used with beam search "
                                              "(num_beams > 1), as in transformers")
            if returns > num_beams:
                raise GenerationArgumentError(f"num_return_sequences ({returns}) must be <= "
                                              f"num_beams ({num_beams})")
            from .beam_search import beam_search

            early = pick(early_stopping, "early_stopping")
            lp = pick(length_penalty, "length_penalty")
            return beam_search(self, input_ids, attention_mask, num_beams=num_beams,
                               max_new_tokens=max_new_tokens, min_new_tokens=min_new,
                               eos=eos, pad_token_id=pad_token_id,
                               length_penalty=1.0 if lp is None else float(lp),
                               early_stopping=False if early is None else early,
                               num_return_sequences=returns,
                               repetition_penalty=float(repetition_penalty), stop_checks=checks)
        if returns > 1:
            if not do_sample:
                raise GenerationArgumentError("num_return_sequences > 1 needs do_sample=True or "
                                              "num_beams > 1 (greedy decoding gives one answer)")
            input_ids = input_ids.repeat_interleave(returns, dim=0)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat_interleave(returns, dim=0)
        tokens, state = self._generation_begin(input_ids, attention_mask)
        start_len = tokens.shape[1]
        min_new = max(min_new, min_total - start_len)
        step_ids = tokens
        eos_t = torch.tensor(eos, dtype=torch.long, device=tokens.device)
        finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        if streamer is not None:
            streamer.put(tokens.cpu())
        for _ in range(max_new_tokens):
            logits, state = self._generation_step(state, step_ids)
            if repetition_penalty != 1.0:
                logits = penalize_repetition(logits, tokens, float(repetition_penalty))
            if eos and tokens.shape[1] - start_len < min_new:
                logits = logits.index_fill(-1, eos_t, float("-inf"))
            nxt = select_next_tokens(logits, do_sample=do_sample, temperature=temperature,
                                     top_k=top_k, top_p=top_p, generator=generator)
            tokens = append_tokens(tokens, nxt, finished, pad_token_id=pad_token_id, eos_t=eos_t,
                                   streamer=streamer)
            if checks:
                finished |= any_stop(checks, tokens, logits)
            if (eos or checks) and bool(finished.all()):
                break
            step_ids = nxt[:, None]
        if streamer is not None:
            streamer.end()
        return tokens


class CausalLMMixin(GenerationMixin):
    """A decoder ``self.backbone`` under a next-token head ``self.lm_head``: the forward with
    its shifted loss, and the generation hooks over the backbone's KV cache."""

    backbone: Any
    lm_head: Any
    decoder_only = True  # what contrastive search needs: next-token logits over the backbone

    def forward(self, input_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **inputs: Any) -> dict[str, Any]:
        """As the backbone's ``forward``; ``logits`` are ``[batch, seq, vocab]``.

        Args:
            labels: ``[batch, seq]`` target ids (usually ``input_ids``; -100 is ignored).
        """
        from .heads import causal_lm_loss

        enc = self.backbone(input_ids, **inputs)
        logits = self.lm_head(enc["hidden_states"])
        loss = causal_lm_loss(logits, labels, input_ids) if labels is not None else None
        extra = {k: v for k, v in enc.items() if k not in ("logits", "hidden_states")}
        return self._outputs(logits, enc["hidden_states"], loss, **extra)  # type: ignore[attr-defined]

    def _add_lm_head(self, backbone: Any, width: int, embeddings: str) -> None:
        """Sets ``backbone`` and a bias-free ``lm_head`` from ``width`` to the vocabulary, tied
        to ``backbone.<embeddings>`` when the config says so (per instance: it depends on the
        checkpoint's config)."""
        config = self.config  # type: ignore[attr-defined]
        self.backbone = backbone
        self.lm_head = torch.nn.Linear(width, config.vocab_size, bias=False)
        self.tied_weights = ({"lm_head.weight": f"backbone.{embeddings}.weight"}
                             if config.tie_word_embeddings else {})

    def _generation_begin(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        return input_ids, {"past": None, "mask": attention_mask}

    def _generation_step(self, state: Any, step_ids: torch.Tensor):
        mask = state["mask"]
        if mask is not None and state["past"] is not None:
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], step_ids.shape[1])], dim=1)
        enc = self.backbone(step_ids, attention_mask=mask, past_key_values=state["past"],
                            use_cache=True)
        logits = self.lm_head(enc["hidden_states"][:, -1])  # only the next token's logits
        return logits, {"past": enc["past_key_values"], "mask": mask}
