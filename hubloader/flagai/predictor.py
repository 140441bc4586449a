"""``Predictor``: FlagAI's one-call inference over a model and tokenizer from
:class:`~hubloader.AutoLoader`, with FlagAI's method names and decoding rules, so FlagAI scripts
keep working: classification and semantic matching, NER (token labels, CRF, GlobalPointer),
beam search and sampling for GLM, BERT/RoBERTa seq2seq, GPT-2 and T5, embeddings, masked LM.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["Predictor", "beam_search", "sample", "decode_labels"]

logger = logging.getLogger(__name__)


def decode_labels(labels: Sequence[int], target: Sequence[str]) -> list[tuple[list[int], str]]:
    """Token label ids → entities ``([token positions], type)``: a ``B-`` label opens one,
    the labels after it extend it until an ``O`` (id 0), as FlagAI reads BIO tags."""
    entities: list[tuple[list[int], str]] = []
    open_entity = False
    for i, label in enumerate(int(x) for x in labels):
        if label > 0:
            name = target[label]
            if name[0] == "B":
                open_entity = True
                entities.append(([i], name[2:]))
            elif open_entity:
                entities[-1][0].append(i)
        else:
            open_entity = False
    return entities


def beam_search(score: Callable[[torch.Tensor], torch.Tensor], *, beam_size: int,
                max_length: int, end_id: int,
                banned: Sequence[int] = ()) -> list[int]:
    """FlagAI's beam search: keep the ``beam_size`` best cumulative log-probabilities, drop a
    beam once it emits ``end_id``, stop when the best beam has.

    Args:
        score: output ids so far ``[beams, n]`` → next-token logits ``[beams, vocab]``.
        banned: ids never generated.

    Returns:
        The best beam's ids, without ``end_id``.
    """
    out = torch.zeros(1, 0, dtype=torch.long)
    scores = torch.zeros(1)
    for _ in range(max_length):
        logp = F.log_softmax(score(out).float().cpu(), dim=-1)
        if banned:
            logp[:, list(banned)] = -float("inf")
        vocab = logp.shape[-1]
        top = torch.topk((scores[:, None] + logp).reshape(-1), beam_size)
        rows, cols = top.indices // vocab, top.indices % vocab
        scores = top.values
        out = torch.cat([out[rows], cols[:, None]], dim=1)
        ended = (out == end_id).sum(dim=1)
        best = int(scores.argmax())
        if ended[best] == 1:
            return out[best, :-1].tolist()
        keep = ended < 1
        if not bool(keep.all()):
            out, scores = out[keep], scores[keep]
            beam_size = int(keep.sum())
    return out[int(scores.argmax())].tolist()


def sample(score: Callable[[torch.Tensor], torch.Tensor], *, max_length: int, end_id: int,
           top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
           temperature: float = 1.0, banned: Sequence[int] = (), context: Sequence[int] = (),
           generator: torch.Generator | None = None) -> list[int]:
    """Draw tokens one by one until ``end_id`` (not kept) or ``max_length``.

    As FlagAI's logits processors do: on the log-probabilities, ``repetition_penalty``
    multiplies those of the tokens in ``context`` (the prompt) or already drawn, then
    ``temperature``, ``top_k`` (0: off) and ``top_p`` (0 or 1: off) shape the distribution.

    Raises:
        GenerationArgumentError: an argument out of range.
    """
    from ..errors import GenerationArgumentError
    from ..models.generation import select_next_tokens

    if isinstance(repetition_penalty, bool) or not isinstance(repetition_penalty, (int, float)) \
            or repetition_penalty <= 0:
        raise GenerationArgumentError(f"repetition_penalty must be a number > 0, got "
                                      f"{repetition_penalty!r}")
    out = torch.zeros(1, 0, dtype=torch.long)
    prompt = torch.tensor(list(context), dtype=torch.long)
    for _ in range(max_length):
        logits = F.log_softmax(score(out).float().cpu(), dim=-1)
        if banned:
            logits[:, list(banned)] = -float("inf")
        seen = torch.cat([prompt, out[0]]).unique()
        if repetition_penalty != 1.0 and seen.numel():
            vals = logits[0, seen]
            logits[0, seen] = torch.where(vals < 0, vals * repetition_penalty,
                                          vals / repetition_penalty)
        nxt = select_next_tokens(logits, do_sample=True, temperature=temperature,
                                 top_k=top_k or None,
                                 top_p=top_p if 0 < top_p < 1 else None, generator=generator)
        if int(nxt) == end_id:
            break
        out = torch.cat([out, nxt[:, None]], dim=1)
    return out[0].tolist()


# the causal decoders the Predictor continues text with (by class name, as FlagAI dispatches)
_CAUSAL = ("gpt2", "cpm", "opt", "galactica")


class Predictor:
    """FlagAI's ``Predictor`` for hubloader models.

    Example:
        >>> loader = AutoLoader("semantic-matching", model_name="RoBERTa-base-ch", class_num=2)
        >>> Predictor(loader.get_model(), loader.get_tokenizer()).predict_cls_classifier(["a", "b"])
        1
    """

    def __init__(self, model: Any, tokenizer: Any = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.class_name = type(model).__name__

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, text: str, pair: str | None = None, *, maxlen: int) -> dict[str, Any]:
        """One text (or pair) as ``[1, seq]`` tensors on the model's device, cut to ``maxlen``."""
        enc = self.tokenizer(text, pair, truncation=True, max_length=maxlen, return_tensors="pt")
        return {k: v.to(self._device) for k, v in enc.items()}

    # -- classification ---------------------------------------------------------------------
    @torch.no_grad()
    def predict_cls_classifier(self, text: str | Sequence[str], maxlen: int = 512) -> int:
        """The label id of ``text``, or of a text pair ``[a, b]`` (semantic matching)."""
        if isinstance(text, str):
            batch = self._encode(text, maxlen=maxlen)
        elif len(text) == 2:
            batch = self._encode(text[0], text[1], maxlen=maxlen)
        else:
            raise InputError("predict_cls_classifier takes a text or a pair [text_a, text_b]")
        return int(self.model(**batch)["logits"][0].argmax(-1))

    # -- NER --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_ner(self, text: str, target: Sequence[str], maxlen: int = 256) -> list[tuple[int, int, str]]:
        """Entities ``(first char, last char, type)`` of ``text``; ``target`` names the labels
        (``["O", "B-LOC", "I-LOC", ...]``). A CRF head decodes with Viterbi, a GlobalPointer
        head takes the spans scoring above 0, a token classifier the arg-max labels."""
        enc = self.tokenizer.backend.encode(text, add_special_tokens=False)
        ids, offsets = enc.ids[:maxlen], enc.offsets[:maxlen]
        mapping = [list(range(a, b)) for a, b in offsets]
        token_ids = torch.tensor([ids], dtype=torch.long, device=self._device)
        out = self.model(input_ids=token_ids, attention_mask=torch.ones_like(token_ids))
        logits = out["logits"][0].cpu()
        if hasattr(self.model, "global_pointer"):
            scores = logits.clone()
            scores[:, [0, -1]] = -float("inf")  # FlagAI leaves out the first and last token
            scores[:, :, [0, -1]] = -float("inf")
            return [(mapping[s][0], mapping[e][-1], target[t])
                    for t, s, e in (scores > 0).nonzero().tolist() if mapping[s] and mapping[e]]
        if hasattr(self.model, "crf"):
            labels = self.model.decode(logits[None])[0]
        else:
            labels = logits.argmax(-1).tolist()
        return [(mapping[w[0]][0], mapping[w[-1]][-1], name)
                for w, name in decode_labels(labels, target) if mapping[w[0]] and mapping[w[-1]]]

    # -- generation -------------------------------------------------------------------------
    def _scorer(self, text: str, input_max_length: int, *, glm_block: int):
        """``(score, end_id, banned, decode, prompt)`` for decoding after ``text``: ``score``
        maps the output ids so far (``[beams, n]``) to next-token logits, as each family reads
        them; ``prompt`` is the ids the model reads first."""
        tok, dev, model = self.tokenizer, self._device, self.model
        name = self.class_name.lower()
        if name.startswith(("glm", "alm")):
            sample = tok.encode_plus(text)
            prompt = torch.tensor([sample["input_ids"]], device=dev)
            pos = torch.tensor([sample["position_ids"]], device=dev)
            n = prompt.shape[1]

            def glm(out: torch.Tensor) -> torch.Tensor:
                beams, k = out.shape
                ids = torch.cat([prompt.expand(beams, n), out.to(dev)], dim=1)
                extra = torch.stack([torch.arange(n, n + k, device=dev),
                                     torch.full((k,), glm_block, dtype=torch.long, device=dev)])
                p = torch.cat([pos, extra[None]], dim=2).expand(beams, 2, n + k)
                sep = torch.full((beams,), sample["attention_mask"], dtype=torch.long, device=dev)
                return model(ids, p, sep)["logits"][:, -1]

            return (glm, tok.get_command_id("eop"), tok.CommandTokenIds(exception=["eop", "gMASK"]),
                    tok.DecodeIds, sample["input_ids"])
        if "seq2seq" in name and ("bert" in name or "roberta" in name):
            prompt = torch.tensor([tok.encode(text)[:input_max_length]], device=dev)
            n = prompt.shape[1]

            def unilm(out: torch.Tensor) -> torch.Tensor:
                beams = out.shape[0]
                ids = torch.cat([prompt.expand(beams, n), out.to(dev)], dim=1)
                seg = torch.cat([torch.zeros(beams, n, dtype=torch.long, device=dev),
                                 torch.ones_like(out, device=dev)], dim=1)
                return model(input_ids=ids, segment_ids=seg)["logits"][:, -1]

            return unilm, self._end_id("[SEP]"), [], tok.decode, prompt[0].tolist()
        if name.startswith(_CAUSAL):
            ids = tok.encode(text)[:input_max_length]
            end = self._end_id("[SEP]")
            if ids and ids[-1] == end:  # a WordPiece vocabulary closes the prompt with [SEP]
                ids = ids[:-1]
            prompt = torch.tensor([ids], device=dev)

            def causal(out: torch.Tensor) -> torch.Tensor:
                ids_ = torch.cat([prompt.expand(out.shape[0], -1), out.to(dev)], dim=1)
                return model(ids_)["logits"][:, -1]

            return causal, end, [], tok.decode, ids
        if name.startswith("t5"):
            src = torch.tensor([tok.encode(text)[:input_max_length]], device=dev)
            start = model.config.start_token_id

            def enc_dec(out: torch.Tensor) -> torch.Tensor:
                beams = out.shape[0]
                dec = torch.cat([torch.full((beams, 1), start, device=dev), out.to(dev)], dim=1)
                return model(input_ids=src.expand(beams, -1), decoder_input_ids=dec)["logits"][:, -1]

            eos = model.config.eos_token_id
            return (enc_dec, eos[0] if isinstance(eos, list) else eos, [], tok.decode,
                    src[0].tolist())
        raise InputError(f"the Predictor generates with GLM/ALM, BERT/RoBERTa seq2seq, GPT-2/CPM, "
                         f"OPT/Galactica and T5 models, not {type(model).__name__}")

    def _end_id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            eos = getattr(self.model.config, "eos_token_id", None)
            found = eos[0] if isinstance(eos, list) else eos
        if found is None:
            raise InputError(f"decoding ends at {token}, which this tokenizer lacks, and the "
                             "config names no eos_token_id")
        return int(found)

    @torch.no_grad()
    def predict_generate_beamsearch(self, text: str, input_max_length: int = 256,
                                    out_max_length: int = 100, beam_size: int = 1) -> str:
        """Beam search from ``text`` (:func:`beam_search`): GLM as FlagAI's GLM seq2seq
        (``<|startofpiece|> text [SEP]``, command tokens banned but ``<|endofpiece|>``),
        BERT/RoBERTa seq2seq as UniLM (``[CLS] text [SEP]``, ending at ``[SEP]``), GPT-2
        continuing ``text``, T5 decoding from it."""
        score, end, banned, decode, _ = self._scorer(text, input_max_length, glm_block=1)
        return decode(beam_search(score, beam_size=beam_size, max_length=out_max_length,
                                  end_id=end, banned=banned))

    @torch.no_grad()
    def predict_generate_contrastive_search(self, text: str, input_max_length: int = 256,
                                            out_max_length: int = 100, beam_size: int = 1, *,
                                            penalty_alpha: float = 0.6) -> str:
        """Contrastive search from ``text`` (FlagAI's arguments: ``beam_size`` candidates per
        step, FlagAI's ``alpha`` of 0.6 as ``penalty_alpha``) with GPT-2, CPM, OPT and
        Galactica: ``generate(penalty_alpha=, top_k=beam_size)``, as transformers runs it
        (the degeneration penalty compares last hidden states). Returns the new text only.

        Raises:
            InputError: a model that is not one of those causal decoders.
        """
        if not self.class_name.lower().startswith(_CAUSAL):
            raise InputError(f"contrastive search serves GPT-2, CPM, OPT and Galactica models, "
                             f"not {self.class_name}")
        _, end, _, decode, prompt = self._scorer(text, input_max_length, glm_block=0)
        ids = torch.tensor([prompt], device=self._device)
        out = self.model.generate(ids, max_new_tokens=out_max_length, penalty_alpha=penalty_alpha,
                                  top_k=beam_size, eos_token_id=end)
        new = out[0, ids.shape[1]:].tolist()
        return decode(new[:-1] if new and new[-1] == end else new)

    @torch.no_grad()
    def predict_generate_randomsample(self, text: str, input_max_length: int = 256,
                                      out_max_length: int = 200, top_k: int = 30,
                                      top_p: float = 1.0, repetition_penalty: float = 1.0,
                                      temperature: float = 1.0,
                                      generator: torch.Generator | None = None) -> str:
        """Sampling from ``text`` with FlagAI's arguments (``top_k=0`` and ``top_p`` 0 or 1
        switch those filters off). GLM text holding ``[MASK]``/``[sMASK]``/``[gMASK]`` fills
        the blanks (:meth:`GLMModel.generate`) and returns the whole text, as FlagAI does.
        Samples follow the same distribution as FlagAI's, not the same random draws."""
        if self.class_name.lower().startswith(("glm", "alm")) and "MASK]" in text:
            return self._glm_fill_blanks(text, out_max_length, top_k, temperature, generator)
        score, end, banned, decode, prompt = self._scorer(text, input_max_length, glm_block=0)
        return decode(sample(score, max_length=out_max_length, end_id=end, banned=banned,
                             top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                             temperature=temperature, context=prompt, generator=generator))

    def _glm_fill_blanks(self, text: str, out_max_length: int, top_k: int, temperature: float,
                         generator: torch.Generator | None) -> str:
        tok = self.tokenizer
        ids = [tok.get_command_id("cls")] + tok.EncodeAsIds(text)
        if not text.endswith("[gMASK]"):
            ids.append(tok.get_command_id("eos"))
        out = self.model.generate(
            torch.tensor([ids], device=self._device), max_new_tokens=out_max_length,
            do_sample=True, top_k=top_k or None, temperature=temperature,
            mask_token_ids=[tok.get_command_id(n) for n in ("mask", "sMASK", "gMASK")],
            sop_token_id=tok.get_command_id("sop"), eos_token_id=tok.get_command_id("eop"),
            generator=generator)
        return tok.DecodeIds(out[0].tolist())

    # -- embeddings and masked LM ----------------------------------------------------------
    @torch.no_grad()
    def predict_embedding(self, text: str, maxlen: int = 256) -> torch.Tensor:
        """The sentence vector of ``text`` (the embedding model's pooled output)."""
        return self.model(**self._encode(text, maxlen=maxlen))["logits"][0].cpu()

    @torch.no_grad()
    def predict_masklm(self, text: str, maxlen: int = 512) -> str:
        """Every position's most likely token, decoded (FlagAI's reading of ``[MASK]``s)."""
        logits = self.model(**self._encode(text, maxlen=maxlen))["logits"][0]
        return self.tokenizer.decode(logits.argmax(-1))
