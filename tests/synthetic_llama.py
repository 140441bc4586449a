"""A synthetic Llama checkpoint of any size, in Hugging Face's sharded safetensors layout, written
tensor by tensor (the writer never holds more than one tensor): for the memory test and the
benchmark. The weights are small random values, so a forward pass stays finite."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

__all__ = ["TINYLLAMA_SHAPE", "llama_tensor_shapes", "write_synthetic_llama"]

# TinyLlama 1.1B's shape: 2.2 GB in bf16
TINYLLAMA_SHAPE = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                       num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4)


def llama_tensor_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Hugging Face key -> shape for a LlamaForCausalLM with these config fields."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    head = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * head
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                       p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (v, h)
    return shapes


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def write_synthetic_llama(out: Path, cfg: dict | None = None, *, shards: int = 4,
                          seed: int = 0) -> int:
    """Write ``config.json``, ``shards`` bf16 safetensors files and their index into ``out``.

    Returns:
        The weights' bytes.
    """
    cfg = {**TINYLLAMA_SHAPE, **(cfg or {})}
    out.mkdir(parents=True, exist_ok=True)
    shapes = llama_tensor_shapes(cfg)
    total = sum(_numel(s) for s in shapes.values()) * 2
    # one random pool; every matrix is a slice of it (distinct values are not needed)
    pool = (torch.randn(max(_numel(s) for s in shapes.values()),
                        generator=torch.Generator().manual_seed(seed)) * 0.02).to(torch.bfloat16)
    ones = torch.ones(cfg["hidden_size"], dtype=torch.bfloat16)
    groups: list[list[str]] = [[] for _ in range(shards)]
    size, budget = 0, total / shards
    for name, shape in shapes.items():  # in order, cut into shards of about equal bytes
        k = min(int(size // budget), shards - 1)
        groups[k].append(name)
        size += _numel(shape) * 2
    weight_map = {}
    for k, names in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name in names:
            nbytes = _numel(shapes[name]) * 2
            header[name] = {"dtype": "BF16", "shape": list(shapes[name]),
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)  # the data section starts 8-aligned
        with open(out / fname, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            for name in names:
                shape = shapes[name]
                t = ones if len(shape) == 1 else pool[:_numel(shape)]
                fh.write(memoryview(t.view(torch.uint8).numpy()))
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps({
        **cfg, "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "torch_dtype": "bfloat16", "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "max_position_embeddings": 2048}))
    return total
