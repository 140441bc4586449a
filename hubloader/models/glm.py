"""GLM (FlagAI's and THUDM's General Language Model): word embeddings plus GLM's 2-D position
encoding (a token's position and its position inside a blank), pre-norm blocks (layer → block →
model), a final norm, and logits tied to the word embeddings. The task classes carry FlagAI's
names and ``forward`` arguments: :class:`GLMModel`, :class:`GLMForSeq2Seq`,
:class:`GLMForSingleTokenCloze`, :class:`GLMForMultiTokenCloze`,
:class:`GLMForSequenceClassification`.

``attention_mask`` comes in FlagAI's form, the separation index of each sample (tokens before it
see each other, tokens after it see the past only), or as a full 0/1 mask. ``mems`` is FlagAI's
memory: the input of every block (and the final block's output) for earlier tokens; keys and
values are recomputed from it, so the same list serves FlagAI's predictors and
:meth:`GLMModel.generate`.

Checkpoints load as FlagAI publishes them (``transformer.layers.N.attention.query_key_value``,
no prefix or ``model.``) and as THUDM does (``glm.``-prefixed, sharded for GLM-10b): the fused
query/key/value projection is split in :meth:`_GLMBase.convert_checkpoint`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..load.checkpoint_keys import invert_key_rules, rename_keys
from ..load.config import ModelConfig
from ..errors import ConfigError, GenerationArgumentError, InputError
from ..load.features import FeatureEntry, token_features
from ..load.modeling import BaseModel
from ..load.registry import register_model
from ._inputs import check_token_ids
from .generation import _check_args, select_next_tokens
from .layers import FeedForward, MultiHeadAttention, init_standard

__all__ = ["GLMConfig", "GLMBlock", "GLMModel", "GLMForSeq2Seq", "GLMForSingleTokenCloze",
           "GLMForMultiTokenCloze", "GLMForSequenceClassification"]

Mems = list[torch.Tensor]


@dataclass
class GLMConfig(ModelConfig):
    """FlagAI's and THUDM's GLM ``config.json`` fields, under their names."""

    model_type = "glm"

    vocab_size: int = 50048
    hidden_size: int = 1024
    num_layers: int = 24
    num_attention_heads: int = 16
    embedding_dropout_prob: float = 0.1
    attention_dropout_prob: float = 0.1
    output_dropout_prob: float = 0.1
    max_sequence_length: int = 1024
    max_memory_length: int = 0
    checkpoint_activations: bool = False
    checkpoint_num_layers: int = 1
    parallel_output: bool = True
    relative_encoding: bool = False
    block_position_encoding: bool = True
    output_predict: bool = True
    spell_length: int | None = None
    spell_func: str = "lstm"
    attention_scale: float = 1.0
    layernorm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    # GLMForSequenceClassification: FlagAI calls the label count class_num
    num_labels: int | None = None
    class_num: int | None = None
    pool_token: str = "cls"
    hidden_dropout: float = 0.1
    # GLMForMultiTokenCloze / GLMForSingleTokenCloze / GLMForSeq2Seq
    take_softmax: bool | None = None
    length_penalty: float = 0.0
    # blank infilling (GLMModel.generate); the tokenizer knows them, config.json may not
    mask_token_id: int | None = None
    smask_token_id: int | None = None
    gmask_token_id: int | None = None
    sop_token_id: int | None = None
    eop_token_id: int | None = None
    pad_token_id: int | None = None

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads",
                     "max_sequence_length"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be a multiple of "
                              f"num_attention_heads {self.num_attention_heads}")
        if self.relative_encoding:
            raise ConfigError("relative_encoding (Transformer-XL positions) is not supported by "
                              "hubloader's GLM; no published GLM checkpoint uses it — set it to false")
        if self.spell_length is not None:
            raise ConfigError("spell_length (P-tuning prompt embeddings) is not supported by "
                              "hubloader's GLM; set it to null")
        if self.pool_token not in ("cls", "start", "pad"):
            raise ConfigError(f"pool_token must be 'cls', 'start' or 'pad', got {self.pool_token!r}")
        if self.num_labels is None:
            self.num_labels = self.class_num if self.class_num is not None else 2
        if self.class_num is not None and self.class_num != self.num_labels:
            raise ConfigError(f"class_num {self.class_num} and num_labels {self.num_labels} "
                              "disagree; give one of them")
        if self.num_labels <= 0:
            raise ConfigError(f"num_labels must be positive, got {self.num_labels}")
        self.class_num = self.num_labels


# -- masks ----------------------------------------------------------------------------------
def glm_attention_mask(attention_mask: torch.Tensor | None, *, batch: int, query_len: int,
                       memory_len: int, dtype: torch.dtype,
                       device: torch.device) -> torch.Tensor:
    """FlagAI's mask forms → an additive ``[batch, 1, query_len, memory_len + query_len]`` mask.

    A separation index (a scalar or one int per sample) lets the tokens before it see each other
    and the tokens after it see the ones before themselves; memory is always visible. A full
    0/1 mask (``[batch, key_len]``, ``[batch, query, key]`` or ``[batch, 1, query, key]``)
    is cut to the last ``memory_len + query_len`` keys, as FlagAI does.
    """
    key_len = memory_len + query_len
    if attention_mask is None:
        keep = torch.ones(batch, 1, query_len, key_len, device=device)
    elif attention_mask.numel() in (1, batch) and attention_mask.dim() <= 1:
        sep = attention_mask.reshape(-1).to(device).expand(batch)
        ids = torch.arange(query_len, device=device)
        keep = (ids[None, :, None] >= ids[None, None, :]) | (ids[None, None, :] < sep[:, None, None])
        keep = keep[:, None].float()
        if memory_len:
            keep = torch.cat([keep.new_ones(batch, 1, query_len, memory_len), keep], dim=-1)
    else:
        m = attention_mask.to(device)
        if m.dim() == 2:
            m = m[:, None, None, :]
        elif m.dim() == 3:
            m = m[:, None]
        if m.dim() != 4:
            raise InputError(f"attention_mask must be a separation index ([batch] ints) or a "
                             f"0/1 mask of rank 2-4, got shape {tuple(attention_mask.shape)}")
        keep = m[..., -key_len:].float()
    return (1.0 - keep.to(dtype)) * torch.finfo(dtype).min


# -- block level ----------------------------------------------------------------------------
class GLMBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``. The memory (earlier
    tokens' block input) goes through the same norm and provides extra keys and values."""

    def __init__(self, config: GLMConfig):
        super().__init__()
        eps = config.layernorm_epsilon
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_dropout_prob)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        # GLM's gelu is the tanh approximation (FlagAI's gelu_impl)
        self.mlp = FeedForward(config.hidden_size, 4 * config.hidden_size, "gelu_new")
        self.drop = nn.Dropout(config.output_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                mem: torch.Tensor | None = None) -> torch.Tensor:
        h = self.attention_norm(x)
        past = None
        if mem is not None and mem.shape[1]:
            m = self.attention_norm(mem)
            att = self.attention
            past = (att._heads(att.key(m)), att._heads(att.value(m)))
        x = x + self.drop(self.attention(h, mask=mask, past=past))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


# -- model level ----------------------------------------------------------------------------
_RULES: tuple[tuple[str, str], ...] = (
    (r"^transformer\.position_embeddings\.", "position_embeddings."),
    (r"^transformer\.block_position_embeddings\.", "block_position_embeddings."),
    (r"^transformer\.final_layernorm\.", "final_norm."),
    (r"^transformer\.layers\.(\d+)\.input_layernorm\.", r"blocks.\1.attention_norm."),
    (r"^transformer\.layers\.(\d+)\.attention\.dense\.", r"blocks.\1.attention.out."),
    (r"^transformer\.layers\.(\d+)\.post_attention_layernorm\.", r"blocks.\1.mlp_norm."),
    (r"^transformer\.layers\.(\d+)\.mlp\.dense_h_to_4h\.", r"blocks.\1.mlp.fc_in."),
    (r"^transformer\.layers\.(\d+)\.mlp\.dense_4h_to_h\.", r"blocks.\1.mlp.fc_out."),
)
_QKV = re.compile(r"^transformer\.layers\.(\d+)\.attention\.query_key_value\.(weight|bias)$")
_SPLIT_QKV = re.compile(r"^blocks\.(\d+)\.attention\.(query|key|value)\.(weight|bias)$")
# FlagAI saves a task model's backbone under "model." (or bare), THUDM under "glm."
_OWN_PREFIX = re.compile(r"^(?:module\.)?(?:model|glm)\.")
_HEAD_KEYS = (r"^pool_layer\.", r"^multichoice_head\.")


class _GLMBase(BaseModel):
    config_class = GLMConfig
    config: GLMConfig
    ignore_checkpoint_keys = (r"(^|\.)position_ids$",)

    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """FlagAI / THUDM names → ours; the fused ``query_key_value`` splits in three."""
        prefix = cls.base_model_prefix + "." if cls.base_model_prefix else ""
        rules = [(re.compile(p), r) for p, r in _RULES]
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            own = bool(_OWN_PREFIX.match(key))
            key = _OWN_PREFIX.sub("", key)
            if any(re.match(p, key) for p in _HEAD_KEYS):
                out[key] = value
                continue
            match = _QKV.match(key)
            if match:
                layer, kind = match.groups()
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{prefix}blocks.{layer}.attention.{name}.{kind}"] = part
                continue
            for pattern, repl in rules:
                key = pattern.sub(repl, key)
            if prefix and (own or not key.startswith(prefix)):
                key = prefix + key
            out[key] = value
        return out

    @classmethod
    def export_checkpoint(cls, state: dict[str, torch.Tensor],
                          config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
        """Ours → FlagAI's names (what its ``GLMModel`` and heads load): the inverse of
        :meth:`convert_checkpoint`; ``query``, ``key`` and ``value`` fuse back into
        ``query_key_value``, a classifier's backbone is ``model.``."""
        prefix = cls.base_model_prefix + "." if cls.base_model_prefix else ""
        backbone: dict[str, torch.Tensor] = {}
        heads: dict[str, torch.Tensor] = {}
        qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            if prefix and not key.startswith(prefix):
                heads[key] = value
                continue
            key = key[len(prefix):]
            match = _SPLIT_QKV.match(key)
            if match:
                layer, name, kind = match.groups()
                qkv.setdefault((layer, kind), {})[name] = value
            else:
                backbone[key] = value
        for (layer, kind), parts in qkv.items():
            backbone[f"transformer.layers.{layer}.attention.query_key_value.{kind}"] = torch.cat(
                [parts["query"], parts["key"], parts["value"]], dim=0)
        named = rename_keys(backbone, invert_key_rules(_RULES))
        return {**{("model." if prefix else "") + k: v for k, v in named.items()}, **heads}

    def init_module_weights(self, module: nn.Module) -> None:
        init_standard(module, self.config.initializer_range)

    def feature_entries(self) -> list[FeatureEntry]:
        """The output of every block: ``[batch, seq, hidden_size]``."""
        prefix = self._module_prefix()
        return [token_features(f"{prefix}blocks.{i}", self.config.hidden_size)
                for i in range(self.config.num_layers)]


@register_model("glm", "base")
@register_model("glm", "text-generation")  # FlagAI's glm_lm
class GLMModel(_GLMBase):
    """The GLM transformer. ``forward`` returns ``logits`` (vocabulary logits when the config's
    ``output_predict``, else the final hidden states), ``hidden_states`` (FlagAI's memory: the
    input of every block plus the last block's output, earlier ``mems`` prepended),
    ``last_hidden_state`` and, with ``labels``, ``loss`` (cross entropy over every position)."""

    discard_checkpoint_keys = _HEAD_KEYS

    def __init__(self, config: GLMConfig, *, output_predict: bool | None = None):
        super().__init__(config)
        self.output_predict = config.output_predict if output_predict is None else output_predict
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        n_pos = config.max_sequence_length + (1 if config.block_position_encoding else 0)
        self.position_embeddings = nn.Embedding(n_pos, config.hidden_size)
        self.block_position_embeddings = (nn.Embedding(n_pos, config.hidden_size)
                                          if config.block_position_encoding else None)
        self.drop = nn.Dropout(config.embedding_dropout_prob)
        self.blocks = nn.ModuleList(GLMBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layernorm_epsilon)

    def _positions(self, position_ids: torch.Tensor | None, batch: int, seq: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        if position_ids is None:
            pos = torch.arange(seq, device=device).expand(batch, seq)
            return pos, torch.zeros_like(pos) if self.block_position_embeddings is not None else None
        if not isinstance(position_ids, torch.Tensor) or position_ids.is_floating_point():
            raise InputError("position_ids must be an integer tensor: [batch, 2, seq] (positions "
                             "and block positions) for GLM")
        if self.block_position_embeddings is not None:
            if position_ids.dim() != 3 or position_ids.shape[1] != 2 or position_ids.shape[2] != seq:
                raise InputError(f"position_ids must have shape [batch, 2, {seq}] (positions and "
                                 f"block positions), got {tuple(position_ids.shape)}")
            return position_ids[:, 0], position_ids[:, 1]
        return position_ids, None

    def forward(self, input_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, mems: Mems | None = None,
                return_memory: bool = False, detach_memory: bool = True,
                labels: torch.Tensor | None = None, prompt_pos: Any = None,
                **kwargs: Any) -> dict[str, Any]:
        """Args (FlagAI's):
            input_ids: ``[batch, seq]``.
            position_ids: ``[batch, 2, seq]``: positions and block positions (default: 0..seq-1
                and zeros).
            attention_mask: the separation index per sample (``[batch]`` ints, or one int), or a
                full 0/1 mask; default: every token sees every token.
            mems: FlagAI's memory from an earlier call (``hidden_states`` of its output).
            return_memory, detach_memory: as FlagAI (memory is always returned).
            labels: ``[batch, seq]`` target ids → ``loss``.
        """
        if prompt_pos is not None:
            raise InputError("prompt_pos (P-tuning prompts) is not supported by hubloader's GLM")
        check_token_ids("input_ids", input_ids, required=True, vocab_size=self.config.vocab_size)
        assert input_ids is not None
        batch, seq = input_ids.shape
        mems = list(mems or [])
        if mems and len(mems) != len(self.blocks) + 1:
            raise InputError(f"mems must hold {len(self.blocks) + 1} tensors (one per block plus "
                             f"the last output), got {len(mems)}")
        memory_len = mems[0].shape[1] if mems else 0
        pos, block_pos = self._positions(position_ids, batch, seq, input_ids.device)
        limit = self.position_embeddings.num_embeddings
        for name, value in (("positions", pos), ("block positions", block_pos)):
            if value is not None and value.numel() and not torch.compiler.is_compiling() and (
                    value.min() < 0 or value.max() >= limit):  # data-dependent: eager only
                raise InputError(f"position_ids: {name} must lie in [0, {limit}), got "
                                 f"[{int(value.min())}, {int(value.max())}]; the sequence is "
                                 f"longer than max_sequence_length")
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)
        if block_pos is not None and self.block_position_embeddings is not None:
            x = x + self.block_position_embeddings(block_pos)
        x = self.drop(x)
        mask = glm_attention_mask(attention_mask, batch=batch, query_len=seq,
                                  memory_len=memory_len, dtype=x.dtype, device=x.device)
        layers = [x]
        for i, block in enumerate(self.blocks):
            x = block(x, mask, mems[i] if mems else None)
            layers.append(x)
        out = self.final_norm(x)
        new_mems = self._update_mems(layers, mems, return_memory=return_memory)
        if detach_memory:
            new_mems = [m.detach() for m in new_mems]
        logits = F.linear(out, self.word_embeddings.weight) if self.output_predict else out
        loss = None
        if labels is not None:
            if not self.output_predict:
                raise InputError("labels need vocabulary logits: this GLMModel has "
                                 "output_predict=False")
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                   labels.reshape(-1).long())
        return self._outputs(logits, new_mems, loss, last_hidden_state=out)

    def _update_mems(self, layers: Mems, mems: Mems, *, return_memory: bool) -> Mems:
        """FlagAI's memory update: earlier memory plus this call's states, cut to
        ``max_memory_length`` unless ``return_memory``."""
        memory_len = mems[0].shape[1] if mems else 0
        query_len = layers[0].shape[1]
        keep = memory_len + query_len
        if not return_memory and self.config.max_memory_length > 0:
            keep = min(self.config.max_memory_length, keep)
        if keep <= query_len:
            return [h[:, -keep:] for h in layers]
        return [torch.cat([m[:, -(keep - query_len):], h], dim=1) for m, h in zip(mems, layers)]

    # -- blank infilling ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_token_id: int | list[int] | None = None, mask_token_ids: list[int] | None = None,
                 sop_token_id: int | None = None, pad_token_id: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill every ``[MASK]``/``[sMASK]``/``[gMASK]`` of ``input_ids``, left to right.

        GLM's protocol, as FlagAI's GLM predictors run it: the context is read once,
        bidirectionally, into the memory; each blank is then decoded causally from
        ``<|startofpiece|>``, its tokens at position (the mask's position, 1, 2, ...), until
        ``<|endofpiece|>`` (not kept) or ``max_new_tokens``; a later blank sees the earlier
        blanks' tokens through the memory.

        Args:
            input_ids: ``[batch, seq]`` context ids (``[CLS] text [gMASK]`` ...), no padding.
            max_new_tokens: tokens per blank at most (>= 1).
            do_sample, temperature, top_k, top_p, generator: as :meth:`GenerationMixin.generate`.
            eos_token_id: ends a blank (default: the config's ``eop_token_id``).
            mask_token_ids: the blank tokens (default: the config's mask / smask / gmask ids).
            sop_token_id: starts a blank (default: the config's ``sop_token_id``).
            pad_token_id: fills rows that finished with fewer tokens (default: the config's, else 0).

        Returns:
            ``[batch, total]``: the context, then for each blank ``<|startofpiece|>`` and its
            tokens (FlagAI's output layout).

        Raises:
            InputError: bad ``input_ids``, or a row without a blank.
            GenerationArgumentError: an argument out of range, or a special token id unknown.
        """
        cfg = self.config
        eos_id = eos_token_id if eos_token_id is not None else cfg.eop_token_id
        eos = _check_args(max_new_tokens, temperature, top_k, top_p, eos_id)
        check_token_ids("input_ids", input_ids, required=True, vocab_size=cfg.vocab_size)
        masks = mask_token_ids if mask_token_ids is not None else [
            t for t in (cfg.mask_token_id, cfg.smask_token_id, cfg.gmask_token_id) if t is not None]
        sop = sop_token_id if sop_token_id is not None else cfg.sop_token_id
        if not masks or sop is None:
            raise GenerationArgumentError(
                "GLM blank infilling needs the [MASK]/[sMASK]/[gMASK] and <|startofpiece|> ids: "
                "pass mask_token_ids= and sop_token_id= (tokenizer.mask_token_ids, "
                "tokenizer.sop_token_id) or set them in config.json")
        if not self.output_predict:
            raise GenerationArgumentError("generate() needs vocabulary logits; this model has "
                                          "output_predict=False")
        pad = pad_token_id if pad_token_id is not None else (cfg.pad_token_id or 0)
        rows = [self._fill_blanks(row[None], masks, sop, eos, max_new_tokens=max_new_tokens,
                                  do_sample=do_sample, temperature=temperature, top_k=top_k,
                                  top_p=top_p, generator=generator) for row in input_ids]
        width = max(r.shape[1] for r in rows)
        return torch.cat([F.pad(r, (0, width - r.shape[1]), value=pad) for r in rows])

    def _fill_blanks(self, tokens: torch.Tensor, masks: list[int], sop: int, eos: list[int], *,
                     max_new_tokens: int, **pick: Any) -> torch.Tensor:
        context_len = tokens.shape[1]
        positions = [i for i, t in enumerate(tokens[0].tolist()) if t in masks]
        if not positions:
            raise InputError(f"input_ids hold no blank token ({masks}); add [gMASK] (generate "
                             "after the text) or [MASK] where a span should go")
        device = tokens.device
        pos = torch.stack([torch.arange(context_len, device=device),
                           torch.zeros(context_len, dtype=torch.long, device=device)])[None]
        sep = torch.tensor([context_len], device=device)
        mems = self(tokens, pos, sep, return_memory=True)["hidden_states"]
        zero = torch.zeros(1, dtype=torch.long, device=device)
        for mask_pos in positions:
            step = torch.tensor([[sop]], device=device)
            tokens = torch.cat([tokens, step], dim=1)
            for i in range(max_new_tokens):
                step_pos = torch.tensor([[[mask_pos], [i + 1]]], device=device)
                out = self(step, step_pos, zero, mems=mems, return_memory=True)
                mems = out["hidden_states"]
                nxt = select_next_tokens(out["logits"][:, -1], **pick)
                if int(nxt) in eos:
                    break
                step = nxt[:, None]
                tokens = torch.cat([tokens, step], dim=1)
        return tokens


@register_model("glm", "text2text-generation")
class GLMForSeq2Seq(GLMModel):
    """GLM with vocabulary logits for blank infilling, title and poetry generation. With
    ``target_ids`` and ``loss_mask`` (FlagAI's seq2seq batch), ``logits`` are flattened to
    ``[batch * seq, vocab]`` and ``loss`` is the masked cross entropy (id 0 ignored)."""

    task = "text2text-generation"

    def __init__(self, config: GLMConfig):
        super().__init__(config, output_predict=True)

    def forward(self, input_ids: torch.Tensor | None = None,  # type: ignore[override]
                position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None,
                target_ids: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        out = super().forward(input_ids, position_ids, attention_mask, **kwargs)
        if target_ids is None:
            return out
        if loss_mask is None:
            raise InputError("GLMForSeq2Seq needs loss_mask with target_ids (1 where a target "
                             "token counts)")
        logits = out["logits"].reshape(-1, out["logits"].shape[-1])
        weight = loss_mask.reshape(-1).float()
        per_token = F.cross_entropy(logits, target_ids.reshape(-1), ignore_index=0,
                                    reduction="none")
        loss = (per_token * weight).sum() / weight.sum()
        return self._outputs(logits, out["hidden_states"], loss,
                             last_hidden_state=out["last_hidden_state"])


@register_model("glm", "fill-mask")
class GLMForSingleTokenCloze(GLMModel):
    """Scores candidate tokens at each sample's blank. With ``target_ids`` (``[batch,
    candidates]``), ``logits`` are the candidates' scores at position ``attention_mask`` (the
    blank's index, as FlagAI passes it); ``labels`` → cross entropy over candidates."""

    task = "fill-mask"

    def __init__(self, config: GLMConfig):
        super().__init__(config, output_predict=True)

    def forward(self, input_ids: torch.Tensor | None = None,  # type: ignore[override]
                position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, target_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        if target_ids is None:
            return super().forward(input_ids, position_ids, attention_mask, labels=labels, **kwargs)
        if attention_mask is None or attention_mask.dim() != 1:
            raise InputError("GLMForSingleTokenCloze with target_ids needs attention_mask as the "
                             "blank's index per sample ([batch] ints)")
        out = super().forward(input_ids, position_ids, attention_mask, **kwargs)
        rows = torch.arange(out["logits"].shape[0], device=out["logits"].device)
        target_logits = out["logits"][rows, attention_mask]
        take_softmax = bool(self.config.take_softmax)  # FlagAI's default: False
        probs = F.log_softmax(target_logits, dim=-1) if take_softmax else target_logits
        logits = probs[rows[:, None].expand_as(target_ids), target_ids]
        loss = F.cross_entropy(logits.float(), labels.long()) if labels is not None else None
        return self._outputs(logits, out["hidden_states"], loss, target_logits=target_logits)


@register_model("glm", "multiple-choice")
class GLMForMultiTokenCloze(GLMModel):
    """Scores multi-token candidates: ``input_ids`` ``[batch, choices, seq]`` (or ``[batch,
    seq]``), ``target_ids`` and ``logit_mask`` alike; a choice's score is the sum of its target
    tokens' log-probabilities (``length_penalty`` divides by its length to that power)."""

    task = "multiple-choice"

    def __init__(self, config: GLMConfig):
        super().__init__(config, output_predict=True)

    def forward(self, input_ids: torch.Tensor | None = None,  # type: ignore[override]
                position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, target_ids: torch.Tensor | None = None,
                logit_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        if target_ids is None:
            return super().forward(input_ids, position_ids, attention_mask, labels=labels, **kwargs)
        if logit_mask is None or input_ids is None or attention_mask is None:
            raise InputError("GLMForMultiTokenCloze with target_ids needs input_ids, "
                             "attention_mask and logit_mask")
        choices = 1
        if input_ids.dim() == 3:
            choices = input_ids.shape[1]
            input_ids = input_ids.reshape(-1, input_ids.shape[-1])
            attention_mask = attention_mask.reshape(-1, *attention_mask.shape[2:])
            if position_ids is not None:
                position_ids = position_ids.reshape(-1, *position_ids.shape[2:])
            target_ids = target_ids.reshape(-1, target_ids.shape[-1])
            logit_mask = logit_mask.reshape(-1, logit_mask.shape[-1])
        out = super().forward(input_ids, position_ids, attention_mask, **kwargs)
        scores = out["logits"]
        take_softmax = self.config.take_softmax is not False  # FlagAI's default: True
        if take_softmax:
            scores = F.log_softmax(scores, dim=-1)
        rows = torch.arange(target_ids.shape[0], device=target_ids.device)[:, None]
        cols = torch.arange(target_ids.shape[1], device=target_ids.device)[None, :]
        picked = scores[rows.expand_as(target_ids), cols.expand_as(target_ids), target_ids]
        logits = (picked * logit_mask).sum(dim=1)
        if self.config.length_penalty > 0.0:
            logits = logits / logit_mask.sum(dim=1) ** self.config.length_penalty
        logits = logits.view(-1, choices)
        loss = None
        if labels is not None:
            if logits.shape[1] == 1:
                logits = logits.squeeze(1)
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels.long())
        return self._outputs(logits, out["hidden_states"], loss)


@register_model("glm", "text-classification")
class GLMForSequenceClassification(_GLMBase):
    """GLM → the pooled token (``pool_token``: ``cls`` = first, ``start`` = at the
    separation index, ``pad`` = before it) → tanh(``pool_layer``) → dropout →
    ``multichoice_head`` (``num_labels`` = FlagAI's ``class_num``). ``input_ids`` may be
    ``[batch, choices, seq]`` with one label (multiple choice)."""

    task = "text-classification"
    base_model_prefix = "backbone"
    new_head_keys = _HEAD_KEYS

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.backbone = GLMModel(config, output_predict=False)
        self.pool_layer = nn.Linear(config.hidden_size, config.hidden_size)
        self.multichoice_dropout = nn.Dropout(config.hidden_dropout)
        assert config.num_labels is not None
        self.multichoice_head = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        choices = None
        if input_ids is not None and input_ids.dim() == 3:
            if self.config.num_labels != 1:
                raise InputError("[batch, choices, seq] input_ids need num_labels=1 (one score "
                                 "per choice)")
            choices = input_ids.shape[1]
            input_ids = input_ids.reshape(-1, input_ids.shape[-1])
            if attention_mask is not None:
                attention_mask = attention_mask.reshape(-1, *attention_mask.shape[2:])
            if position_ids is not None:
                position_ids = position_ids.reshape(-1, *position_ids.shape[2:])
        out = self.backbone(input_ids, position_ids, attention_mask, **kwargs)
        h = out["logits"]
        if self.config.pool_token == "cls":
            pooled = h[:, 0]
        else:
            if attention_mask is None or attention_mask.dim() != 1:
                raise InputError(f"pool_token {self.config.pool_token!r} needs attention_mask as "
                                 "the separation index ([batch] ints)")
            rows = torch.arange(h.shape[0], device=h.device)
            at = attention_mask if self.config.pool_token == "start" else attention_mask - 1
            pooled = h[rows, at]
        logits = self.multichoice_head(self.multichoice_dropout(torch.tanh(self.pool_layer(pooled))))
        if choices is not None:
            logits = logits.view(-1, choices)
        loss = None
        if labels is not None:
            if logits.shape[1] == 1:
                logits = logits.squeeze(1)
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels.long())
        return self._outputs(logits, out["hidden_states"], loss,
                             last_hidden_state=out["last_hidden_state"])
