"""Shared layers (FlagAI's ``layer`` level): activations, attention, MLP, norms.

Blocks and models are assembled from these; every family reuses them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

__all__ = ["get_activation", "MultiHeadAttention", "FeedForward", "GatedFeedForward", "RMSNorm",
           "RelativePositionBias", "RotaryEmbedding", "apply_rotary", "rope_scaling_kind",
           "additive_mask", "init_standard", "run_decoder_blocks"]


class _NewGELU(nn.Module):  # the tanh approximation GPT-2 and BERT variants call gelu_new
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3.0))))


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": lambda: nn.GELU(),
    "gelu_python": lambda: nn.GELU(),
    "gelu_new": _NewGELU,
    "gelu_fast": _NewGELU,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "quick_gelu": lambda: _QuickGELU(),
}


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def get_activation(name: str) -> nn.Module:
    """An activation module by its Hugging Face config name."""
    try:
        return _ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; use one of {sorted(_ACTIVATIONS)}") from None


def additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``[batch, key_len]`` 1/0 mask → ``[batch, 1, 1, key_len]`` additive mask (0 or dtype min)."""
    if mask is None:
        return None
    if mask.dim() == 2:
        mask = mask[:, None, None, :]
    elif mask.dim() == 3:
        mask = mask[:, None, :, :]
    mask = mask.to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate ``query``/``key``/``value``/``out`` projections.

    Self-attention when ``context`` is ``None``, cross-attention otherwise; ``causal`` masks the
    future. ``scale=False`` skips the 1/sqrt(d) scaling (T5). ``past`` / ``use_cache`` carry a
    key/value cache for incremental decoding. ``num_kv_heads`` below ``num_heads`` is
    grouped-query attention (each key/value head serves a group of query heads);
    ``sliding_window`` lets a causal query see only its last N keys (Mistral); ``out_bias``
    sets the output projection's bias apart from ``bias`` (Qwen2 biases q/k/v only).
    """

    def __init__(self, hidden_size: int, num_heads: int, *, dropout: float = 0.0, bias: bool = True,
                 head_dim: int | None = None, causal: bool = False, scale: bool = True,
                 kv_size: int | None = None, num_kv_heads: int | None = None,
                 out_bias: bool | None = None, sliding_window: int | None = None):
        super().__init__()
        if head_dim is None:
            if hidden_size % num_heads:
                raise ConfigError(f"hidden_size {hidden_size} is not a multiple of "
                                  f"num_attention_heads {num_heads}")
            head_dim = hidden_size // num_heads
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads:
            raise ConfigError(f"num_attention_heads {num_heads} is not a multiple of "
                              f"num_key_value_heads {num_kv_heads}")
        inner = num_heads * head_dim
        kv_size = kv_size or hidden_size
        self.num_heads, self.head_dim, self.causal, self.dropout = num_heads, head_dim, causal, dropout
        self.num_kv_heads, self.sliding_window = num_kv_heads, sliding_window
        self.scale = 1.0 / math.sqrt(head_dim) if scale else 1.0
        self.query = nn.Linear(hidden_size, inner, bias=bias)
        self.key = nn.Linear(kv_size, num_kv_heads * head_dim, bias=bias)
        self.value = nn.Linear(kv_size, num_kv_heads * head_dim, bias=bias)
        self.out = nn.Linear(inner, hidden_size, bias=bias if out_bias is None else out_bias)

    def _heads(self, x: torch.Tensor, heads: int | None = None) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, heads or self.num_heads, self.head_dim).transpose(1, 2)

    def _causal_bias(self, q: torch.Tensor, k_len: int) -> torch.Tensor:
        q_len = q.shape[2]
        keep = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).tril(k_len - q_len)
        if self.sliding_window is not None:  # a query sees only the last `window` keys
            keep &= ~torch.ones_like(keep).tril(k_len - q_len - self.sliding_window)
        bias = torch.zeros(q_len, k_len, dtype=q.dtype, device=q.device)
        return bias.masked_fill_(~keep, torch.finfo(q.dtype).min)

    def forward(self, hidden: torch.Tensor, *, mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None, use_cache: bool = False,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Args:
            hidden: ``[batch, seq, hidden]``.
            mask: additive mask broadcastable to ``[batch, heads, seq, key_len]``.
            context: encoder states for cross-attention.
            bias: additive position bias (T5), broadcastable like ``mask``.
            past: cached ``(key, value)`` from earlier steps (``num_kv_heads`` heads).
            rotary: ``(cos, sin)`` of :class:`RotaryEmbedding` for the new positions, applied
                to queries and keys before the keys enter the cache.

        Returns:
            ``out`` or ``(out, (key, value))`` when ``use_cache``.
        """
        q = self._heads(self.query(hidden))
        if context is not None and past is not None:  # cross-attention cache is static
            k, v = past
        else:
            src = hidden if context is None else context
            k = self._heads(self.key(src), self.num_kv_heads)
            v = self._heads(self.value(src), self.num_kv_heads)
            if rotary is not None:
                q, k = apply_rotary(q, k, *rotary)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        cache = (k, v)
        attn_bias = None
        if bias is not None:
            attn_bias = bias
        if mask is not None:
            attn_bias = mask if attn_bias is None else attn_bias + mask
        is_causal = False
        if self.causal and context is None:
            q_len, k_len = q.shape[2], k.shape[2]
            if attn_bias is None and self.sliding_window is None and q_len == k_len:
                is_causal = True  # no mask to build, and flash kernels stay eligible on CUDA
            elif not (q_len == 1 and self.sliding_window is None):  # one query sees every key
                causal_bias = self._causal_bias(q, k_len)
                attn_bias = causal_bias if attn_bias is None else attn_bias + causal_bias
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)
        # grouped-query attention: SDPA shares each key/value head without copying it
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale, is_causal=is_causal,
            enable_gqa=self.num_kv_heads != self.num_heads)
        out = out.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
        out = self.out(out)
        return (out, cache) if use_cache else out


class FeedForward(nn.Module):
    """``fc_out(dropout?(act(fc_in(x))))`` — the transformer MLP."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str, *,
                 bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc_in = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.act = get_activation(activation)
        self.drop = nn.Dropout(dropout)
        self.fc_out = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.drop(self.act(self.fc_in(x))))


class GatedFeedForward(nn.Module):
    """``fc_out(dropout(act(fc_gate(x)) * fc_in(x)))`` — the gated MLP of T5 v1.1 and its kin
    (SwiGLU with ``silu``: Llama's ``gate_proj``/``up_proj``/``down_proj``)."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str, *,
                 bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.fc_gate = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.fc_in = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.act = get_activation(activation)
        self.drop = nn.Dropout(dropout)
        self.fc_out = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.drop(self.act(self.fc_gate(x)) * self.fc_in(x)))


class RelativePositionBias(nn.Module):
    """T5's bucketed relative position bias: a learned scalar per (bucket, head).

    Relative distances are bucketed exactly up to ``num_buckets // 2`` (halved again when
    ``bidirectional``) and logarithmically up to ``max_distance``.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, *, bidirectional: bool):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def _bucket(self, relative: torch.Tensor) -> torch.Tensor:
        buckets = torch.zeros_like(relative)
        n = self.num_buckets
        if self.bidirectional:
            n //= 2
            buckets = buckets + (relative > 0).long() * n
            relative = relative.abs()
        else:
            relative = -torch.clamp(relative, max=0)
        exact = n // 2
        large = exact + (torch.log(relative.float() / exact) / math.log(self.max_distance / exact)
                         * (n - exact)).long()
        large = torch.clamp(large, max=n - 1)
        return buckets + torch.where(relative < exact, relative, large)

    def forward(self, q_len: int, k_len: int, *, offset: int = 0,
                device: torch.device | None = None) -> torch.Tensor:
        """The bias for queries at positions ``offset .. offset + q_len`` over ``k_len`` keys.

        Returns:
            ``[1, heads, q_len, k_len]``.
        """
        device = device or self.embedding.weight.device
        q_pos = torch.arange(offset, offset + q_len, device=device)[:, None]
        k_pos = torch.arange(k_len, device=device)[None, :]
        values = self.embedding(self._bucket(k_pos - q_pos))  # [q, k, heads]
        return values.permute(2, 0, 1).unsqueeze(0)


class RMSNorm(nn.Module):
    """Root-mean-square norm without mean subtraction or bias (T5's layer norm)."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(var + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.to(self.weight.dtype)
        return self.weight * x


def _llama3_inv_freq(inv_freq: torch.Tensor, params: dict) -> torch.Tensor:
    """Llama 3.1's frequency scaling: long wavelengths divided by ``factor``, short ones kept,
    a smooth blend between."""
    factor = float(params["factor"])
    low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
    old_len = float(params["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return torch.where(medium, blended, scaled)


_ROPE_NEEDS: dict[str, tuple[str, ...]] = {
    "default": (), "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}


def rope_scaling_kind(scaling: dict | None) -> str:
    """The rope scaling type a config's ``rope_scaling`` / ``rope_parameters`` names.

    Raises:
        ConfigError: a type :class:`RotaryEmbedding` does not implement, or missing parameters.
    """
    scaling = scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in _ROPE_NEEDS:
        raise ConfigError(f"rope scaling {kind!r} is not supported; use one of "
                          f"{list(_ROPE_NEEDS)} (or load the model with transformers)")
    lacking = [k for k in _ROPE_NEEDS[kind] if k not in scaling]
    if lacking:
        raise ConfigError(f"rope scaling {kind!r} needs {', '.join(lacking)} in the config")
    return kind


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE): ``cos``/``sin`` tables for given positions.

    Args:
        dim: the rotated size (the head size).
        theta: the base wavelength (``rope_theta``).
        scaling: ``None`` or a ``rope_scaling`` dict whose ``rope_type`` (or ``type``) is
            ``"default"``, ``"linear"`` (positions divided by ``factor``) or ``"llama3"``.

    Raises:
        ConfigError: another scaling type, or one missing its parameters.
    """

    def __init__(self, dim: int, *, theta: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        self.dim, self.theta, self.scaling = dim, float(theta), dict(scaling or {})
        self.kind = rope_scaling_kind(self.scaling)
        # a plain attribute, not a buffer: built lazily (the model may be built on the meta
        # device) and kept in float32 whatever dtype the model is cast to
        self._inv_freq_cache: torch.Tensor | None = None

    def _inv_freq(self, device: torch.device) -> torch.Tensor:
        inv = self._inv_freq_cache
        if inv is None or inv.device != device:
            exponent = torch.arange(0, self.dim, 2, dtype=torch.int64, device=device).float()
            inv = 1.0 / (self.theta ** (exponent / self.dim))
            if self.kind == "linear":
                inv = inv / float(self.scaling["factor"])
            elif self.kind == "llama3":
                inv = _llama3_inv_freq(inv, self.scaling)
            if not torch.compiler.is_compiling():  # a traced tensor must not outlive the trace
                self._inv_freq_cache = inv
        return inv

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions``: ``[batch, seq]`` → ``(cos, sin)``, each ``[batch, seq, dim]``, computed
        in float32 and returned in ``dtype``."""
        inv = self._inv_freq(positions.device)
        freqs = positions[..., None].float() * inv  # [batch, seq, dim / 2]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``[batch, heads, seq, dim]`` queries and keys by ``[batch, seq, dim]`` tables
    (the half-split layout of Hugging Face checkpoints)."""
    cos, sin = cos[:, None], sin[:, None]
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def init_standard(module: nn.Module, std: float, *, truncated: bool = False) -> bool:
    """transformers' initialisation of the common layers: Linear and Conv2d weights from a
    normal (``truncated``: a truncated normal) of ``std`` with zero biases, Embedding rows from
    a normal (the padding row zeroed), LayerNorm and RMSNorm reset. Returns whether ``module``
    was one of them, so a family initialises only its own modules itself."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        (nn.init.trunc_normal_ if truncated else nn.init.normal_)(module.weight, 0.0, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, 0.0, std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, RMSNorm):
        module.reset_parameters()
    else:
        return False
    return True


def run_decoder_blocks(blocks: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor | None, *,
                       past_key_values: list[tuple[torch.Tensor, torch.Tensor]] | None,
                       use_cache: bool, output_hidden_states: bool,
                       final: Callable[[torch.Tensor], torch.Tensor],
                       **block_inputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                       ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Runs causal blocks (``block(x, mask, past=, use_cache=, **block_inputs)`` returning
    ``(x, (key, value) or None)``), then ``final`` (the closing norm, projections) on the last
    output.

    Returns:
        ``(x, extra)``: ``extra`` holds ``past_key_values`` with ``use_cache`` and
        ``all_hidden_states`` with ``output_hidden_states`` (the input, then every block's
        output; the last one after ``final``, as transformers gives it: what the head reads).
    """
    states = [x] if output_hidden_states else None
    cache = []
    for i, block in enumerate(blocks):
        past = past_key_values[i] if past_key_values else None
        x, kv = block(x, mask, past=past, use_cache=use_cache, **block_inputs)
        if use_cache:
            cache.append(kv)
        if states is not None:
            states.append(x)
    x = final(x)
    extra: dict[str, Any] = {}
    if use_cache:
        extra["past_key_values"] = cache
    if states is not None:
        states[-1] = x
        extra["all_hidden_states"] = tuple(states)
    return x, extra
