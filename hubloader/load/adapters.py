"""LoRA adapters in the ``peft`` library's own format, merged into a hubloader model.

``peft``'s ``save_pretrained`` writes ``adapter_config.json`` and ``adapter_model.safetensors``
(or ``adapter_model.bin``) for a transformers model; the keys name that model's modules
(``base_model.model.<module>.lora_A.weight``). Each pair becomes a weight delta
``B @ A * scale`` (``scale = lora_alpha / r``, ``/ sqrt(r)`` with rsLoRA, per-module ``rank_pattern``
and ``alpha_pattern`` as peft reads them) in the publisher's layout, which then goes through the
family's checkpoint key rules (:meth:`BaseModel.convert_checkpoint`) like any checkpoint tensor
and is added to the weight it names. Other tensors of the adapter (``modules_to_save`` heads,
trained biases) replace the weights they name. The merged model is an ordinary model:
``save_pretrained`` writes the merged weights.

Refused with :class:`AdapterError`: adapter types other than LoRA, DoRA, and any adapter tensor
that names no weight of the model (an adapter of another family or size).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import AdapterError, ConfigError, WeightsError
from .config import read_config_file

__all__ = ["AdapterError", "find_adapter_files", "merge_adapter"]

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "adapter_config.json"
_WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)(?:\.[^.]+)?\.weight$")
_LORA_EMB = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?$")


def find_adapter_files(directory: Path) -> tuple[Path, Path]:
    """``(adapter_config.json, adapter weights)`` in ``directory``.

    Raises:
        AdapterError: either file is missing.
    """
    config = directory / ADAPTER_CONFIG_NAME
    weights = next((directory / n for n in _WEIGHT_NAMES if (directory / n).is_file()), None)
    if not config.is_file() or weights is None:
        raise AdapterError(f"{directory} is not a peft adapter: expected {ADAPTER_CONFIG_NAME} and "
                           f"{' or '.join(_WEIGHT_NAMES)} (written by peft's save_pretrained)")
    return config, weights


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = read_config_file(path)
    except ConfigError as err:
        raise AdapterError(str(err)) from err
    if data.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{path}: peft_type {data.get('peft_type')!r} is not supported; "
                           "hubloader merges LoRA adapters only")
    if data.get("use_dora"):
        raise AdapterError(f"{path}: DoRA adapters (use_dora=true) are not supported; merge it "
                           "with peft (merge_and_unload) and load the merged model")
    r, alpha = data.get("r"), data.get("lora_alpha")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0 or isinstance(alpha, bool) \
            or not isinstance(alpha, (int, float)):
        raise AdapterError(f"{path}: r must be a positive int and lora_alpha a number, got "
                           f"r={r!r}, lora_alpha={alpha!r}")
    return data


def _pattern_value(patterns: Any, module: str, default: float) -> float:
    """peft's per-module override: a key matching the end of the module's name."""
    if isinstance(patterns, dict):
        for key, value in patterns.items():
            if re.match(rf"(.*\.)?{key}$", module):
                return float(value)
    return default


def _scale(cfg: dict[str, Any], module: str) -> float:
    r = _pattern_value(cfg.get("rank_pattern"), module, float(cfg["r"]))
    alpha = _pattern_value(cfg.get("alpha_pattern"), module, float(cfg["lora_alpha"]))
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from .weights import read_weight_file

    return read_weight_file(path, "safetensors" if path.suffix == ".safetensors" else "bin")


def _adapter_deltas(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(deltas, replacements)`` keyed by the publisher's weight names."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    replace: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        name = key.removeprefix(_PREFIX)
        match = _LORA.match(name) or _LORA_EMB.match(name)
        if match:
            pairs.setdefault(match["module"], {})[match["kind"]] = tensor.float()
        else:
            replace[name.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")] = tensor
    deltas: dict[str, torch.Tensor] = {}
    for module, parts in pairs.items():
        scale = _scale(cfg, module)
        if "lora_A" in parts and "lora_B" in parts:
            delta = parts["lora_B"].flatten(1) @ parts["lora_A"].flatten(1)
            if cfg.get("fan_in_fan_out"):  # GPT-2's Conv1D keeps weights [in, out]
                delta = delta.T
        elif "lora_embedding_A" in parts and "lora_embedding_B" in parts:
            delta = (parts["lora_embedding_B"] @ parts["lora_embedding_A"]).T
        else:
            raise AdapterError(f"{where}: {module} has {sorted(parts)} but not both LoRA halves")
        deltas[f"{module}.weight"] = delta * scale
    return deltas, replace


def _to_ours(model: Any, state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    """The publisher's names → the model's parameter names, through its checkpoint rules."""
    if not state:
        return {}
    own = dict(model.state_dict(keep_vars=True))
    try:
        converted = model.convert_checkpoint(dict(state))
    except (KeyError, ValueError, RuntimeError) as err:
        raise AdapterError(f"{where}: the adapter's modules do not map onto "
                           f"{type(model).__name__}'s weights ({err})") from err
    prefix = getattr(model, "base_model_prefix", "")
    out: dict[str, torch.Tensor] = {}
    for key, tensor in converted.items():
        for candidate in (key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")):
            if candidate in own:
                out[candidate] = tensor
                break
        else:
            raise AdapterError(f"{where}: adapter weight {key!r} names no weight of "
                               f"{type(model).__name__}; is the adapter made for this model?")
    return out


def merge_adapter(model: Any, directory: str | Path) -> list[str]:
    """Merge the peft LoRA adapter in ``directory`` into ``model``'s weights, in place.

    Returns:
        The model's parameter names that changed, sorted.

    Raises:
        AdapterError: no adapter there, an unsupported adapter, or one not made for this model
            (a weight it names is missing or of another shape).
    """
    d = Path(directory)
    config_path, weights_path = find_adapter_files(d)
    cfg = _read_config(config_path)
    try:
        tensors = _read_tensors(weights_path)
    except (ConfigError, WeightsError) as err:
        raise AdapterError(f"{weights_path}: {err}") from err
    deltas, replace = _adapter_deltas(cfg, tensors, weights_path)
    ours_delta, ours_replace = _to_ours(model, deltas, d), _to_ours(model, replace, d)
    params = dict(model.state_dict(keep_vars=True))
    for name, value in [*ours_replace.items(), *ours_delta.items()]:
        if tuple(value.shape) != tuple(params[name].shape):
            raise AdapterError(f"{d}: the adapter's tensor for {name} is {tuple(value.shape)}, "
                               f"the weight {tuple(params[name].shape)}; the adapter is for "
                               "another model size")
    with torch.no_grad():
        # whole tensors first (a saved base layer), then the deltas on top of them
        for name, value in ours_replace.items():
            target = params[name]
            target.copy_(value.to(device=target.device, dtype=target.dtype))
        for name, delta in ours_delta.items():
            target = params[name]
            merged = target.float() + delta.to(target.device)  # summed in float32
            target.copy_(merged.to(target.dtype))
    changed = sorted(set(ours_delta) | set(ours_replace))
    logger.info("merged the LoRA adapter %s into %d weights", d, len(changed))
    return changed
