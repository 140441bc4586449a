"""FlagAI's BERT task heads that have no Hugging Face counterpart, under FlagAI's names:

- :class:`BertForSeq2seq` (FlagAI's title generation): the encoder with the UniLM mask
  (bidirectional over the source, segment 0; causal over the target, segment 1) and the
  masked-LM head, with :meth:`~BertForSeq2seq.generate`;
- :class:`BertForSequenceLabelingCRF` (``ner-crf``): token logits plus a CRF's transitions,
  the CRF's loss and Viterbi decoding as FlagAI computes them;
- :class:`BertForSequenceLabelingGP` (``ner-gp``): the GlobalPointer span scorer (RoPE on
  per-type query/key projections) and its multi-label loss.

They take FlagAI's inputs (``input_ids``, ``segment_ids``, ``labels``; padding is id 0 unless
``attention_mask`` says otherwise) and read FlagAI's checkpoints (``model.``-prefixed keys, the
fused ``query_key_value``, ``final_dense``, ``crf_layer.trans``, ``gp.dense``) as well as
Hugging Face's.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..load.registry import register_model
from ._inputs import check_token_ids
from .bert import BertConfig, MaskedLMHead, RobertaConfig, _BertHead
from .generation import GenerationMixin

__all__ = ["CRF", "GlobalPointer", "viterbi_decode", "BertForSeq2seq",
           "BertForSequenceLabelingCRF", "BertForSequenceLabelingGP", "RobertaForSeq2seq",
           "RobertaForSequenceLabelingCRF", "RobertaForSequenceLabelingGP"]


# -- layer level ----------------------------------------------------------------------------
class CRF(nn.Module):
    """A linear-chain CRF's transition scores ``trans[from, to]`` with FlagAI's loss (negative
    log-likelihood per sequence, padding masked) and decoding."""

    def __init__(self, num_labels: int):
        super().__init__()
        self.num_labels = num_labels
        self.trans = nn.Parameter(torch.empty(num_labels, num_labels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.trans, -0.1, 0.1)

    def forward(self, emissions: torch.Tensor, labels: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``labels`` per sequence: ``[batch]``.

        Args:
            emissions: ``[batch, seq, num_labels]``; labels, mask: ``[batch, seq]``.
        """
        m = mask.to(emissions.dtype)[..., None]
        onehot = F.one_hot(labels.long(), self.num_labels).to(emissions.dtype)
        em, onehot = emissions * m, onehot * m
        target = (torch.einsum("bni,bni->b", em, onehot)
                  + torch.einsum("bni,ij,bnj->b", onehot[:, :-1], self.trans, onehot[:, 1:]))
        state = em[:, 0]
        for t in range(1, em.shape[1]):
            step = torch.logsumexp(state[:, :, None] + self.trans[None], dim=1) + em[:, t]
            state = m[:, t] * step + (1 - m[:, t]) * state
        return torch.logsumexp(state, dim=1) - target


def viterbi_decode(emissions: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """The best label path of one sequence (``emissions``: ``[seq, num_labels]``), starting
    from label 0 (``O``) as FlagAI's NER predictor does. Returns ``[seq]`` label ids."""
    scores = emissions[0].clone()
    scores[1:] -= 100000
    labels = torch.arange(emissions.shape[1], device=emissions.device)[None]
    path = labels
    for t in range(1, emissions.shape[0]):
        total = scores[:, None] + trans + emissions[t][None]
        scores, best = total.max(0)
        path = torch.cat([path[:, best], labels], dim=0)
    return path[:, scores.argmax()]


class GlobalPointer(nn.Module):
    """Span scores ``[batch, types, seq, seq]``: per-type query/key projections with rotary
    positions; spans ending before they start and padded positions score -1e12."""

    def __init__(self, hidden_size: int, num_types: int, inner_dim: int):
        super().__init__()
        self.num_types, self.inner_dim = num_types, inner_dim
        self.dense = nn.Linear(hidden_size, num_types * inner_dim * 2)

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        seq, dim = x.shape[1], self.inner_dim
        pos = torch.arange(seq, dtype=torch.float, device=x.device)[:, None]
        freq = torch.pow(10000, -2 * torch.arange(dim // 2, dtype=torch.float, device=x.device) / dim)
        angles = pos * freq  # [seq, dim/2]
        cos = angles.cos().repeat_interleave(2, dim=-1)[None, :, None, :].to(x.dtype)
        sin = angles.sin().repeat_interleave(2, dim=-1)[None, :, None, :].to(x.dtype)
        rotated = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
        return x * cos + rotated * sin

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        b, s, _ = hidden.shape
        out = self.dense(hidden).view(b, s, self.num_types, 2 * self.inner_dim)
        q, k = self._rope(out[..., :self.inner_dim]), self._rope(out[..., self.inner_dim:])
        logits = torch.einsum("bmhd,bnhd->bhmn", q, k)
        pad = padding_mask.to(logits.dtype)[:, None, None, :].expand_as(logits)
        logits = logits * pad - (1 - pad) * 1e12
        logits = logits - torch.tril(torch.ones_like(logits), -1) * 1e12
        return logits / math.sqrt(self.inner_dim)

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The multi-label cross entropy over all spans of each (sample, type)."""
        pred = logits.reshape(logits.shape[0] * logits.shape[1], -1)
        gold = labels.reshape(pred.shape).to(pred.dtype)
        pred = (1 - 2 * gold) * pred
        zeros = torch.zeros_like(pred[..., :1])
        neg = torch.cat([pred - gold * 1e12, zeros], dim=-1)
        pos = torch.cat([pred - (1 - gold) * 1e12, zeros], dim=-1)
        return (torch.logsumexp(neg, dim=-1) + torch.logsumexp(pos, dim=-1)).mean()


# -- model level ----------------------------------------------------------------------------
class _FlagAIBertHead(_BertHead):
    """Takes FlagAI's inputs (``segment_ids``; padding is id 0 unless a mask is given)."""

    config: BertConfig

    def _padding_mask(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is not None:
            return attention_mask
        pad = self.config.pad_token_id or 0
        return input_ids.ne(pad).long()

    def _encode_masked(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                       keep: torch.Tensor) -> torch.Tensor:
        """The encoder under a ``[batch, seq, seq]`` 0/1 mask (BertModel takes 2-D masks)."""
        backbone = self.backbone
        x = backbone.embeddings(input_ids, token_type_ids)
        mask = (1.0 - keep[:, None].to(x.dtype)) * torch.finfo(x.dtype).min
        for block in backbone.blocks:
            x = block(x, mask)
        return x


class _LabelingBase(_FlagAIBertHead):
    new_head_keys: ClassVar[tuple[str, ...]] = (r"^classifier\.",)

    def _emissions(self, input_ids, segment_ids, token_type_ids, attention_mask):
        check_token_ids("input_ids", input_ids, required=True, vocab_size=self.config.vocab_size)
        mask = self._padding_mask(input_ids, attention_mask)
        tt = token_type_ids if token_type_ids is not None else segment_ids
        h = self.backbone(input_ids, attention_mask=mask, token_type_ids=tt)["hidden_states"]
        return h, mask


@register_model("bert", "token-classification-crf")
class BertForSequenceLabelingCRF(_LabelingBase):
    """Token logits (``classifier`` = FlagAI's ``final_dense``) and a CRF (``crf`` = FlagAI's
    ``crf_layer``). ``loss``: the CRF's mean negative log-likelihood; :meth:`decode`: Viterbi.
    Tasks: ner-crf, sequence-labeling-crf."""

    task = "token-classification-crf"
    new_head_keys = (r"^classifier\.", r"^crf\.")

    def __init__(self, config: BertConfig):
        super().__init__(config)
        assert config.num_labels is not None
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.crf = CRF(config.num_labels)

    def forward(self, input_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        h, mask = self._emissions(input_ids, segment_ids, token_type_ids, attention_mask)
        logits = self.classifier(h)
        loss = self.crf(logits, labels, mask).mean() if labels is not None else None
        return self._outputs(logits, h, loss)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[list[int]]:
        """The best label path of each sequence (its unpadded length when a mask is given)."""
        if logits.dim() != 3:
            raise InputError(f"decode takes logits [batch, seq, num_labels], got {tuple(logits.shape)}")
        lengths = ([logits.shape[1]] * logits.shape[0] if attention_mask is None
                   else attention_mask.sum(dim=1).tolist())
        return [viterbi_decode(row[:int(n)], self.crf.trans).tolist()
                for row, n in zip(logits, lengths)]


@register_model("bert", "token-classification-gp")
class BertForSequenceLabelingGP(_LabelingBase):
    """GlobalPointer span scores ``logits`` ``[batch, num_labels, seq, seq]`` (``inner_dim``
    per type); ``labels`` the same shape, 1 for gold spans. Tasks: ner-gp, sequence-labeling-gp."""

    task = "token-classification-gp"
    new_head_keys = (r"^global_pointer\.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        assert config.num_labels is not None
        self.global_pointer = GlobalPointer(config.hidden_size, config.num_labels, config.inner_dim)

    def forward(self, input_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        h, mask = self._emissions(input_ids, segment_ids, token_type_ids, attention_mask)
        logits = self.global_pointer(h, mask)
        loss = GlobalPointer.loss(logits, labels) if labels is not None else None
        return self._outputs(logits, h, loss)


@register_model("bert", "text2text-generation")
class BertForSeq2seq(GenerationMixin, _FlagAIBertHead):
    """UniLM: source (segment 0) read bidirectionally, target (segment 1) causally, one
    encoder; vocabulary logits from the masked-LM head (its decoder untied, as FlagAI keeps
    it). ``labels`` (the ids shifted left) → FlagAI's loss over target positions. Tasks:
    seq2seq, title-generation."""

    task = "text2text-generation"
    new_head_keys = (r"^mlm_head\.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.mlm_head = MaskedLMHead(config)

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().convert_checkpoint(state)
        # a checkpoint that ties the decoder to the embeddings (and so stores it once)
        if "mlm_head.decoder.weight" not in out and "mlm_head.dense.weight" in out:
            emb = out.get("backbone.embeddings.word_embeddings.weight")
            if emb is not None:
                out["mlm_head.decoder.weight"] = emb
        return out

    @staticmethod
    def unilm_mask(segment_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, seq, seq]`` 1/0: every token sees the source, target tokens also the
        target tokens up to themselves."""
        seq = segment_ids.shape[1]
        causal = torch.ones(seq, seq, device=segment_ids.device).tril()
        key = segment_ids[:, None, :].float()
        query = segment_ids[:, :, None].float()
        return (1.0 - key) * (1.0 - query) + query * causal

    def forward(self, input_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        check_token_ids("input_ids", input_ids, required=True, vocab_size=self.config.vocab_size)
        assert input_ids is not None
        seg = token_type_ids if token_type_ids is not None else segment_ids
        if seg is None:
            raise InputError("BertForSeq2seq needs segment_ids: 0 on the source, 1 on the target")
        check_token_ids("segment_ids", seg, vocab_size=self.config.type_vocab_size)
        keep = self.unilm_mask(seg) * self._padding_mask(input_ids, attention_mask)[:, None, :]
        h = self._encode_masked(input_ids, seg, keep)
        logits = self.mlm_head(h)
        loss = None
        if labels is not None:
            weight = seg[:, 1:].reshape(-1).float()
            per_token = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                        labels.reshape(-1), ignore_index=0, reduction="none")
            loss = (per_token * weight).sum() / weight.sum()
        return self._outputs(logits, h, loss)

    # -- generation: the target grows at the end with segment 1; the source never sees it,
    # so every step reruns the (short) sequence under the UniLM mask
    def _generation_begin(self, input_ids, attention_mask):
        seg = torch.zeros_like(input_ids)
        return input_ids, {"ids": input_ids[:, :0], "seg": seg[:, :0], "mask": attention_mask}

    def _generation_step(self, state, step_ids):
        ids = torch.cat([state["ids"], step_ids], dim=1)
        new_seg = torch.ones_like(step_ids) if state["ids"].shape[1] else torch.zeros_like(step_ids)
        seg = torch.cat([state["seg"], new_seg], dim=1)
        mask = state["mask"]
        if mask is not None and mask.shape[1] < ids.shape[1]:
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], ids.shape[1] - mask.shape[1])], 1)
        out = self(ids, segment_ids=seg, attention_mask=mask if mask is not None
                   else torch.ones_like(ids))
        return out["logits"][:, -1], {"ids": ids, "seg": seg, "mask": mask}


@register_model("roberta", "text2text-generation")
class RobertaForSeq2seq(BertForSeq2seq):
    config_class = RobertaConfig


@register_model("roberta", "token-classification-crf")
class RobertaForSequenceLabelingCRF(BertForSequenceLabelingCRF):
    config_class = RobertaConfig


@register_model("roberta", "token-classification-gp")
class RobertaForSequenceLabelingGP(BertForSequenceLabelingGP):
    config_class = RobertaConfig
