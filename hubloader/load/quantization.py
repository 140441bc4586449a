"""Weight-only quantized loading through ``torchao`` (and ``bitsandbytes`` on CUDA).

``from_pretrain(name, quantization="int8")`` loads the weights as usual, then quantizes every
``nn.Linear`` in place, one module at a time, so each float weight is released as its quantized
copy is made and the model ends at about one quantized copy of its linear weights. For
``"int8"`` and ``"int4"`` the token embeddings are quantized too, to int8 per row (torchao's
``IntxWeightOnlyConfig``, whose tensor serves both the lookup and a matmul), so a head tied to
an embedding keeps sharing its one quantized tensor; norms (and everything under a user's own
torchao config object but its linear layers) stay in float.

- ``"int8"``: torchao's ``Int8WeightOnlyConfig`` (per-channel int8, any device);
- ``"int4"``: on CUDA torchao's ``Int4WeightOnlyConfig`` (bfloat16, tile-packed, group 128); on
  the CPU ``IntxWeightOnlyConfig(int4, group 32)``, whose values are kept one per byte, so the
  memory is int8's and only the rounding is int4's;
- a torchao config object (``Int8WeightOnlyConfig()``, ``Float8WeightOnlyConfig()``...) as is;
- ``"bnb-int8"`` / ``"bnb-nf4"`` or transformers' ``BitsAndBytesConfig``: bitsandbytes'
  ``Linear8bitLt`` / ``Linear4bit``, CUDA only.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..errors import QuantizationError

__all__ = ["QuantizationError", "resolve_quantization", "quantize_model", "parameter_bytes"]

logger = logging.getLogger(__name__)

_NAMES = ("int8", "int4", "bnb-int8", "bnb-nf4")


def _torchao() -> Any:
    try:
        import torchao.quantization as q
    except ImportError as err:
        raise QuantizationError("quantization needs torchao: pip install 'hubloader[quant]'") from err
    return q


def resolve_quantization(spec: Any, *, device: torch.device) -> tuple[str, Any]:
    """``("torchao", config)`` or ``("bnb", "int8" | "nf4")`` for ``spec``.

    Raises:
        QuantizationError: an unknown name, torchao missing, or bitsandbytes without CUDA.
    """
    load_8 = getattr(spec, "load_in_8bit", None)
    load_4 = getattr(spec, "load_in_4bit", None)
    if load_8 or load_4:  # transformers' BitsAndBytesConfig
        spec = "bnb-int8" if load_8 else "bnb-nf4"
    quant_type = getattr(spec, "quant_type", None)
    if quant_type is not None and not isinstance(spec, str):  # transformers' TorchAoConfig
        spec = quant_type
    if isinstance(spec, str):
        name = spec.lower()
        if name not in _NAMES:
            raise QuantizationError(f"quantization={spec!r} is not known; use one of "
                                    f"{', '.join(_NAMES)} or a torchao config object")
        if name.startswith("bnb-"):
            if device.type != "cuda":
                raise QuantizationError(f"quantization={spec!r}: bitsandbytes needs a CUDA "
                                        "device (device='cuda'); on this device use 'int8' or "
                                        "'int4' (torchao)")
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as err:
                raise QuantizationError(f"quantization={spec!r} needs bitsandbytes: pip install "
                                        "bitsandbytes") from err
            return "bnb", name.removeprefix("bnb-")
        q = _torchao()
        if name == "int8":
            return "torchao", q.Int8WeightOnlyConfig()
        if device.type == "cuda":
            return "torchao", q.Int4WeightOnlyConfig(group_size=128,
                                                     int4_packing_format="tile_packed_to_4d")
        from torchao.quantization.granularity import PerGroup

        int4 = getattr(torch, "int4")  # present at run time; torch's type stubs lack it
        return "torchao", q.IntxWeightOnlyConfig(weight_dtype=int4,
                                                 granularity=PerGroup(32))
    _torchao()
    from torchao.core.config import AOBaseConfig

    if not isinstance(spec, AOBaseConfig):
        raise QuantizationError(f"quantization must be 'int8', 'int4', 'bnb-int8', 'bnb-nf4' or "
                                f"a torchao config object, got {type(spec).__name__}")
    return "torchao", spec


def _tied_ids(model: nn.Module) -> set[int]:
    """ids of parameters shared by several modules (a head tied to the embedding)."""
    seen: dict[int, int] = {}
    for _, module in model.named_modules():
        for p in module.parameters(recurse=False):
            seen[id(p)] = seen.get(id(p), 0) + 1
    return {k for k, n in seen.items() if n > 1}


def _linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    tied = _tied_ids(model)
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and id(m.weight) not in tied]


def _quantize_embeddings(model: nn.Module) -> int:
    """Quantize every ``nn.Embedding`` to int8 per row; a module that shared an embedding's
    weight (a tied head) is pointed at the quantized one, so the tie and its one copy stay."""
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis

    config = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    count = 0
    for name, emb in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]:
        old = emb.weight
        sharers = [(m, attr) for m in model.modules() if m is not emb
                   for attr, p in m.named_parameters(recurse=False) if p is old]
        try:
            quantize_(emb, config, filter_fn=lambda m, _: isinstance(m, nn.Embedding))
        except (RuntimeError, ValueError, NotImplementedError, AssertionError) as err:
            raise QuantizationError(f"torchao cannot quantize {name} ({type(err).__name__}: "
                                    f"{err})") from err
        for m, attr in sharers:
            setattr(m, attr, emb.weight)
        count += 1
        _release_freed_memory()
    return count


def _bnb_replace(model: nn.Module, kind: str) -> None:
    import bitsandbytes as bnb

    for name, linear in _linears(model):
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        dev = linear.weight.device
        if kind == "int8":
            new: nn.Module = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                                                 bias=linear.bias is not None,
                                                 has_fp16_weights=False)
            new.weight = bnb.nn.Int8Params(linear.weight.data.cpu(), requires_grad=False,
                                           has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(linear.in_features, linear.out_features,
                                    bias=linear.bias is not None, quant_type="nf4",
                                    compute_dtype=linear.weight.dtype)
            new.weight = bnb.nn.Params4bit(linear.weight.data.cpu(), requires_grad=False,
                                           quant_type="nf4")
        if linear.bias is not None:
            new.bias = nn.Parameter(linear.bias.data, requires_grad=False)
        setattr(owner, attr, new.to(dev))  # moving to CUDA quantizes; the float copy goes


def quantize_model(model: nn.Module, spec: Any, *, device: torch.device) -> nn.Module:
    """Quantize ``model``'s linear weights in place, module by module (see the module doc).

    Raises:
        QuantizationError: as :func:`resolve_quantization`, or torchao refuses a layer (its
            message is kept).
    """
    backend, config = resolve_quantization(spec, device=device)
    if backend == "bnb":
        _bnb_replace(model, config)
        return model
    from torchao.quantization import quantize_

    # embeddings first: a head tied to one is then quantized with it, not left in float
    named = isinstance(spec, str) or isinstance(getattr(spec, "quant_type", None), str)
    embeddings = _quantize_embeddings(model) if named else 0
    count = 0
    for name, linear in _linears(model):
        try:  # one module at a time: its float weight is freed before the next is quantized
            quantize_(linear, config, filter_fn=None)
        except (RuntimeError, ValueError, NotImplementedError, AssertionError,
                ImportError) as err:
            raise QuantizationError(f"torchao cannot quantize {name} ({type(err).__name__}: "
                                    f"{err}); try quantization='int8'") from err
        count += 1
        _release_freed_memory()
    # the weights left in float (embeddings, norms) still view the checkpoint's memory map,
    # which keeps the whole file mapped: a copy of them lets the mapping go
    with torch.no_grad():
        for p in model.parameters():
            if type(p.data) is torch.Tensor:
                p.data = p.data.clone()
    logger.info("quantized %d linear layers with %s and %d embeddings to int8", count,
                type(config).__name__, embeddings)
    return model


def _release_freed_memory() -> None:
    """Hand the quantizer's freed temporaries back to the system (glibc keeps large freed
    blocks on its heap, so the process would otherwise hold about a float copy more)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name and "libc" in name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
            pass


def parameter_bytes(model: nn.Module) -> int:
    """Bytes the parameters and buffers hold, counting a quantized tensor's inner tensors."""
    def nbytes(t: torch.Tensor) -> int:
        flatten = getattr(t, "__tensor_flatten__", None)
        if flatten is not None and type(t) not in (torch.Tensor, nn.Parameter):
            names, _ = flatten()
            return sum(nbytes(getattr(t, n)) for n in names
                       if isinstance(getattr(t, n, None), torch.Tensor))
        return t.numel() * t.element_size()

    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += nbytes(t.data if isinstance(t, nn.Parameter) else t)
    return total
