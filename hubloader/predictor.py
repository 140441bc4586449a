"""``Predictor``: FlagAI's one-call inference over a model and tokenizer from
:class:`~hubloader.AutoLoader`, with FlagAI's method names and decoding rules, so FlagAI scripts
keep working: classification and semantic matching, NER (token labels, CRF, GlobalPointer),
and beam search for GLM and BERT seq2seq (title generation).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = ["Predictor", "beam_search", "decode_labels"]

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

    # -- classification ---------------------------------------------------------------------
    @torch.no_grad()
    def predict_cls_classifier(self, text: str | Sequence[str], maxlen: int = 512) -> int:
        """The label id of ``text``, or of a text pair ``[a, b]`` (semantic matching)."""
        if isinstance(text, str):
            batch = self.tokenizer(text, max_length=maxlen)
        elif len(text) == 2:
            batch = self.tokenizer(text[0], text[1], max_length=maxlen)
        else:
            raise InputError("predict_cls_classifier takes a text or a pair [text_a, text_b]")
        batch = {k: v.to(self._device) for k, v in batch.items()}
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
    @torch.no_grad()
    def predict_generate_beamsearch(self, text: str, input_max_length: int = 256,
                                    out_max_length: int = 100, beam_size: int = 1) -> str:
        """Beam search from ``text``: GLM as FlagAI's GLM seq2seq (``<|startofpiece|> text
        [SEP]``, causal, command tokens banned but ``<|endofpiece|>``), BERT/RoBERTa seq2seq
        as UniLM (``[CLS] text [SEP]``, ending at ``[SEP]``)."""
        name = self.class_name.lower()
        if name.startswith("glm"):
            return self._glm_beamsearch(text, out_max_length, beam_size)
        if "seq2seq" in name and ("bert" in name or "roberta" in name):
            return self._bert_beamsearch(text, input_max_length, out_max_length, beam_size)
        raise InputError(f"predict_generate_beamsearch serves GLM and BERT seq2seq models, not "
                         f"{type(self.model).__name__}; use model.generate()")

    def _glm_beamsearch(self, text: str, out_max_length: int, beam_size: int) -> str:
        tok, dev = self.tokenizer, self._device
        sample = tok.encode_plus(text)
        prompt = torch.tensor([sample["input_ids"]], device=dev)
        pos = torch.tensor([sample["position_ids"]], device=dev)
        n = prompt.shape[1]

        def score(out: torch.Tensor) -> torch.Tensor:
            beams, k = out.shape
            ids = torch.cat([prompt.expand(beams, n), out.to(dev)], dim=1)
            extra = torch.stack([torch.arange(n, n + k, device=dev),
                                 torch.ones(k, dtype=torch.long, device=dev)])
            p = torch.cat([pos, extra[None]], dim=2).expand(beams, 2, n + k)
            sep = torch.zeros(beams, dtype=torch.long, device=dev)
            return self.model(ids, p, sep)["logits"][:, -1]

        ids = beam_search(score, beam_size=beam_size, max_length=out_max_length,
                          end_id=tok.get_command_id("eop"),
                          banned=tok.CommandTokenIds(exception=["eop", "gMASK"]))
        return tok.DecodeIds(ids)

    def _bert_beamsearch(self, text: str, input_max_length: int, out_max_length: int,
                         beam_size: int) -> str:
        tok, dev = self.tokenizer, self._device
        prompt = torch.tensor([tok.encode(text)[:input_max_length]], device=dev)
        sep = tok.token_to_id("[SEP]")
        if sep is None:
            raise InputError("BERT seq2seq decoding ends at [SEP], which this tokenizer lacks")
        n = prompt.shape[1]

        def score(out: torch.Tensor) -> torch.Tensor:
            beams = out.shape[0]
            ids = torch.cat([prompt.expand(beams, n), out.to(dev)], dim=1)
            seg = torch.cat([torch.zeros(beams, n, dtype=torch.long, device=dev),
                             torch.ones_like(out, device=dev)], dim=1)
            return self.model(input_ids=ids, segment_ids=seg)["logits"][:, -1]

        ids = beam_search(score, beam_size=beam_size, max_length=out_max_length, end_id=sep)
        return tok.decode(ids)
