"""BERT and RoBERTa: embeddings + post-norm encoder blocks (layer → block → model), and the
task heads: sequence classification, token classification, masked LM, sentence embedding.

Hugging Face checkpoints (``bert.encoder.layer.N.attention.self.query.weight``...) load
directly through ``checkpoint_key_rules``, and ``save_pretrained`` writes them back under
those names, so transformers' ``BertModel``/``RobertaModel`` and heads load a saved directory.
``BertForSentenceEmbedding`` has no transformers class: it saves in the ``bert.``-prefixed
layout of transformers' heads, which ``transformers.AutoModel`` reads as a ``BertModel``
without its pooler (sentence-transformers' publishers use the same encoder weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..load.checkpoint_keys import invert_key_rules
from ..load.config import ModelConfig
from ..errors import ConfigError
from ..load.features import FeatureEntry, token_features
from ..load.modeling import BaseModel
from ..load.registry import TokenizerDefaults, register_model
from ._inputs import check_same_shape, check_token_ids, require_token_ids
from .heads import classification_loss, labels_count, num_labels
from .layers import FeedForward, MultiHeadAttention, additive_mask, get_activation, init_standard

__all__ = ["BertConfig", "RobertaConfig", "BertBlock", "BertModel", "BertForSequenceClassification",
           "BertForTokenClassification", "BertForMaskedLM", "BertForSentenceEmbedding",
           "RobertaModel", "RobertaForSequenceClassification", "RobertaForTokenClassification",
           "RobertaForMaskedLM", "RobertaForSentenceEmbedding"]


@dataclass
class BertConfig(ModelConfig):
    model_type = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    classifier_dropout: float | None = None
    num_labels: int | None = None
    id2label: dict | None = None
    label2id: dict | None = None
    problem_type: str | None = None
    pooling: str = "mean"
    normalize_embeddings: bool = True
    inner_dim: int = 64  # the GlobalPointer head's per-type size (FlagAI's ner-gp)

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be a multiple of "
                              f"num_attention_heads {self.num_attention_heads}")
        if self.position_embedding_type != "absolute":
            raise ConfigError(f"position_embedding_type {self.position_embedding_type!r} is not "
                              "supported; only 'absolute'")
        if self.pooling not in ("mean", "cls", "max"):
            raise ConfigError(f"pooling must be 'mean', 'cls' or 'max', got {self.pooling!r}")
        if self.num_labels is None and isinstance(self.extra.get("class_num"), int):
            self.num_labels = self.extra["class_num"]  # FlagAI's name, in its configs
        self.num_labels = labels_count(self.num_labels, self.id2label)
        get_activation(self.hidden_act)

    @property
    def position_offset(self) -> int:
        return 0


@dataclass
class RobertaConfig(BertConfig):
    model_type = "roberta"

    vocab_size: int = 50265
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int | None = 1

    @property
    def position_offset(self) -> int:  # RoBERTa counts positions from pad_token_id + 1
        return (self.pad_token_id or 0) + 1


# -- layer level ----------------------------------------------------------------------------
class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)
        self.offset = config.position_offset
        self.pad_token_id = config.pad_token_id

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        b, s = input_ids.shape
        if position_ids is None:
            if self.offset:  # RoBERTa: padding keeps position pad_token_id
                keep = input_ids.ne(self.pad_token_id or 0).int()
                position_ids = (torch.cumsum(keep, dim=1) * keep).long() + (self.offset - 1)
            else:
                position_ids = torch.arange(s, device=input_ids.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
             + self.token_type_embeddings(token_type_ids))
        return self.drop(self.norm(x))


# -- block level ----------------------------------------------------------------------------
class BertBlock(nn.Module):
    """Post-norm transformer encoder block: attention → add & norm → MLP → add & norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_probs_dropout_prob)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, config.hidden_act)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attention_norm(x + self.drop(self.attention(x, mask=mask)))
        return self.mlp_norm(x + self.drop(self.mlp(x)))


# -- model level ----------------------------------------------------------------------------
# transformers' names → ours; each part but the aliases is inverted to save (checkpoint_keys)
_ENCODER_ALIASES: tuple[tuple[str, str], ...] = (  # read only
    (r"\.gamma$", ".weight"),
    (r"\.beta$", ".bias"),
    (r"^(bert|roberta)\.", "backbone."),
)
_ENCODER_LAYOUT: tuple[tuple[str, str], ...] = (
    (r"embeddings\.LayerNorm\.", "embeddings.norm."),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.", r"blocks.\1.attention.\2."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attention.out."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"blocks.\1.attention_norm."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc_in."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc_out."),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"blocks.\1.mlp_norm."),
)
_BERT_MLM: tuple[tuple[str, str], ...] = (  # BERT's cls.predictions.*
    (r"^cls\.predictions\.transform\.dense\.", "mlm_head.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm_head.norm."),
    (r"^cls\.predictions\.decoder\.weight$", "mlm_head.decoder.weight"),
    (r"^cls\.predictions\.bias$", "mlm_head.decoder.bias"),
)
_ROBERTA_MLM: tuple[tuple[str, str], ...] = (  # RoBERTa's lm_head.*
    (r"^lm_head\.dense\.", "mlm_head.dense."),
    (r"^lm_head\.layer_norm\.", "mlm_head.norm."),
    (r"^lm_head\.decoder\.weight$", "mlm_head.decoder.weight"),
    (r"^lm_head\.bias$", "mlm_head.decoder.bias"),
)
_ENCODER_RULES = _ENCODER_ALIASES + _ENCODER_LAYOUT + _BERT_MLM + _ROBERTA_MLM


def _write_rules(prefix: str, mlm: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Ours → transformers' for one family: the inverted layout, then the backbone prefix."""
    return invert_key_rules(_ENCODER_LAYOUT + mlm) + ((r"^backbone\.", f"{prefix}."),)


_ENCODER_IGNORE: tuple[str, ...] = (r"embeddings\.position_ids$", r"embeddings\.token_type_ids$",
                   r"^cls\.predictions\.decoder\.bias$", r"^lm_head\.decoder\.bias$",
                   r"^cls\.seq_relationship\.")


# FlagAI's own names for its BERT heads (its trainer saves these)
_FLAGAI_HEADS = (("final_dense.", "classifier."), ("out_layer.", "classifier."),
                 ("crf_layer.", "crf."), ("gp.", "global_pointer."))


def _flagai_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FlagAI's BERT checkpoint names → Hugging Face's: ``model.`` is the encoder, the fused
    ``query_key_value`` splits in three, FlagAI's head names map to ours."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("model."):
            key = "bert." + key[len("model."):]
        for old, new in _FLAGAI_HEADS:
            if key.startswith(old):
                key = new + key[len(old):]
        if ".attention.self.query_key_value." in key:
            stem, kind = key.split(".attention.self.query_key_value.")
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[f"{stem}.attention.self.{name}.{kind}"] = part
            continue
        out[key] = value
    # FlagAI's masked-LM decoder keeps its own bias (Hugging Face's sits beside it)
    if "cls.predictions.decoder.bias" in out and "cls.predictions.bias" not in out:
        out["cls.predictions.bias"] = out.pop("cls.predictions.decoder.bias")
    return out


class _BertBase(BaseModel[BertConfig]):
    """Shared declarations of the BERT family."""

    config_class = BertConfig
    base_model_prefix = "backbone"
    checkpoint_key_rules = _ENCODER_RULES
    checkpoint_write_rules = _write_rules("bert", _BERT_MLM)
    ignore_checkpoint_keys = _ENCODER_IGNORE
    discard_checkpoint_keys = (r"^mlm_head\.", r"^classifier\.", r"^cls\.", r"^lm_head\.",
                               r"^qa_outputs\.", r"^crf\.", r"^global_pointer\.")

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return super().convert_checkpoint(_flagai_names(state))

    def init_module_weights(self, module: nn.Module) -> None:
        init_standard(module, self.config.initializer_range)

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every encoder block: ``[batch, seq, hidden_size]``."""
        prefix = self._module_prefix()
        return [token_features(f"{prefix}blocks.{i}", self.config.hidden_size)
                for i in range(self.config.num_hidden_layers)]

    def _dropout(self) -> float:
        c = self.config
        return c.classifier_dropout if c.classifier_dropout is not None else c.hidden_dropout_prob



# transformers' BertTokenizer
_BERT_TOKENIZER = TokenizerDefaults(
    "BertTokenizer", {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "cls_token": "[CLS]", "mask_token": "[MASK]"})
# transformers' RobertaTokenizer (byte-level BPE; no token types)
_ROBERTA_TOKENIZER = TokenizerDefaults(
    "RobertaTokenizer", {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                         "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                         "mask_token": "<mask>"}, token_type_ids=False)


@register_model("bert", "base", tokenizer=_BERT_TOKENIZER)
class BertModel(_BertBase):
    """The BERT encoder. ``forward`` returns ``logits`` (= last hidden states),
    ``hidden_states`` (last layer), ``pooled`` (tanh pooler on the first token, if present)
    and, with ``output_hidden_states=True``, ``all_hidden_states``."""

    new_head_keys = (r"^pooler\.",)
    add_pooler = True

    def __init__(self, config: BertConfig, add_pooler: bool | None = None):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.blocks = nn.ModuleList(BertBlock(config) for _ in range(config.num_hidden_layers))
        use_pooler = self.add_pooler if add_pooler is None else add_pooler
        self.pooler = nn.ModuleDict({"dense": nn.Linear(config.hidden_size, config.hidden_size)}) \
            if use_pooler else None

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                output_hidden_states: bool = False, **kwargs: Any) -> dict[str, Any]:
        if token_type_ids is None:  # FlagAI's name for them
            token_type_ids = kwargs.get("segment_ids")
        input_ids = require_token_ids("input_ids", input_ids, vocab_size=self.config.vocab_size)
        check_token_ids("token_type_ids", token_type_ids, vocab_size=self.config.type_vocab_size)
        check_token_ids("attention_mask", attention_mask)
        for name, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            check_same_shape(name, value, "input_ids", input_ids)
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = additive_mask(attention_mask, x.dtype)
        states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, mask)
            if states is not None:
                states.append(x)
        out = self._outputs(x, x)
        if self.pooler is not None:
            out["pooled"] = torch.tanh(self.pooler["dense"](x[:, 0]))
        if states is not None:
            out["all_hidden_states"] = tuple(states)
        return out


class _BertHead(_BertBase):
    """A head on a ``backbone`` encoder without pooler (unless ``backbone_pooler``)."""

    backbone_pooler = False
    ignore_checkpoint_keys = _ENCODER_IGNORE + (r"^backbone\.pooler\.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        base_cls = self._base_class()
        self.backbone = base_cls(config, add_pooler=self.backbone_pooler)

    @classmethod
    def _base_class(cls) -> type[BertModel]:
        return RobertaModel if issubclass(cls.config_class, RobertaConfig) else BertModel

    def _encode(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self.backbone(**inputs)


class _BertLinearHead(_BertHead):
    """A head ending in dropout → ``classifier`` (hidden size → ``num_labels``)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.drop = nn.Dropout(self._dropout())
        self.classifier: nn.Module = nn.Linear(config.hidden_size, num_labels(config))


@register_model("bert", "text-classification")
class BertForSequenceClassification(_BertLinearHead):
    """Pooler → dropout → linear. Tasks: classification, semantic-matching, text-classification."""

    backbone_pooler = True
    ignore_checkpoint_keys = _ENCODER_IGNORE
    new_head_keys = (r"^classifier\.", r"^backbone\.pooler\.")

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> dict[str, Any]:
        enc = self._encode(inputs)
        logits = self.classifier(self.drop(enc["pooled"]))
        loss = classification_loss(self.config, logits, labels) if labels is not None else None
        return self._outputs(logits, enc["hidden_states"], loss)


@register_model("bert", "token-classification")
class BertForTokenClassification(_BertLinearHead):
    """Dropout → linear on every token. Tasks: ner, sequence-labeling, token-classification."""

    new_head_keys = (r"^classifier\.",)

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> dict[str, Any]:
        enc = self._encode(inputs)
        logits = self.classifier(self.drop(enc["hidden_states"]))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, num_labels(self.config)), labels.view(-1),
                                   ignore_index=-100)
        return self._outputs(logits, enc["hidden_states"], loss)


class MaskedLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(x))))


@register_model("bert", "fill-mask")
class BertForMaskedLM(_BertHead):
    """Transform → norm → decoder tied to the word embeddings. Tasks: masklm, fill-mask."""

    new_head_keys = (r"^mlm_head\.",)
    tied_weights = {"mlm_head.decoder.weight": "backbone.embeddings.word_embeddings.weight"}

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.mlm_head = MaskedLMHead(config)

    @classmethod
    def export_checkpoint(cls, state: dict[str, torch.Tensor],
                          config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
        """As the base class; untied, the decoder's bias is also written under the decoder's
        own name, as transformers writes (and, untied, expects) it."""
        out = super().export_checkpoint(state, config)
        if config is not None and not config.tie_word_embeddings:
            for bias in ("cls.predictions.bias", "lm_head.bias"):
                if bias in out:
                    out[bias.replace(".bias", ".decoder.bias")] = out[bias]
        return out

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> dict[str, Any]:
        enc = self._encode(inputs)
        logits = self.mlm_head(enc["hidden_states"])
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1),
                                   ignore_index=-100)
        return self._outputs(logits, enc["hidden_states"], loss)


@register_model("bert", "feature-extraction")
class BertForSentenceEmbedding(_BertHead):
    """Sentence vectors: mean (or cls/max) pooling over the attention mask, L2-normalized when
    ``normalize_embeddings``. Output ``embeddings`` (also ``logits``). Tasks: embedding,
    feature-extraction."""


    def forward(self, **inputs: Any) -> dict[str, Any]:
        enc = self._encode(inputs)
        h = enc["hidden_states"]
        mask = inputs.get("attention_mask")
        mask = torch.ones(h.shape[:2], device=h.device) if mask is None else mask
        m = mask.unsqueeze(-1).to(h.dtype)
        if self.config.pooling == "cls":
            emb = h[:, 0]
        elif self.config.pooling == "max":
            emb = h.masked_fill(m == 0, torch.finfo(h.dtype).min).max(dim=1).values
        else:
            emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        if self.config.normalize_embeddings:
            emb = F.normalize(emb, p=2, dim=-1)
        return self._outputs(emb, h, embeddings=emb)


# -- RoBERTa: same blocks, positions offset by padding, its own classification head -------------
@register_model("roberta", "base", tokenizer=_ROBERTA_TOKENIZER)
class RobertaModel(BertModel):
    config_class = RobertaConfig
    checkpoint_write_rules = _write_rules("roberta", _ROBERTA_MLM)


class RobertaClassificationHead(nn.Module):
    def __init__(self, config: BertConfig, dropout: float):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.drop = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, num_labels(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.drop(x[:, 0])))
        return self.out_proj(self.drop(x))


@register_model("roberta", "text-classification")
class RobertaForSequenceClassification(BertForSequenceClassification):
    config_class = RobertaConfig
    checkpoint_write_rules = RobertaModel.checkpoint_write_rules
    backbone_pooler = False
    ignore_checkpoint_keys = _ENCODER_IGNORE + (r"^backbone\.pooler\.",)

    def __init__(self, config: RobertaConfig):
        _BertHead.__init__(self, config)
        self.classifier = RobertaClassificationHead(config, self._dropout())

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> dict[str, Any]:
        enc = self._encode(inputs)
        logits = self.classifier(enc["hidden_states"])
        loss = classification_loss(self.config, logits, labels) if labels is not None else None
        return self._outputs(logits, enc["hidden_states"], loss)


@register_model("roberta", "token-classification")
class RobertaForTokenClassification(BertForTokenClassification):
    config_class = RobertaConfig
    checkpoint_write_rules = RobertaModel.checkpoint_write_rules


@register_model("roberta", "fill-mask")
class RobertaForMaskedLM(BertForMaskedLM):
    config_class = RobertaConfig
    checkpoint_write_rules = RobertaModel.checkpoint_write_rules


@register_model("roberta", "feature-extraction")
class RobertaForSentenceEmbedding(BertForSentenceEmbedding):
    config_class = RobertaConfig
    checkpoint_write_rules = RobertaModel.checkpoint_write_rules
