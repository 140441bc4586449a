"""transformers' ``from_pretrained`` keyword arguments, translated to hubloader's load.

A transformers user writes ``from_pretrained(name, dtype=torch.bfloat16, device_map="auto")``;
this module reads those spellings once, does what transformers does with each, and leaves an
argument hubloader cannot honour to fail, named, as a config override it does not know.

- ``dtype`` (transformers 5) and ``torch_dtype`` (earlier): a dtype, its name, or ``"auto"``
  (the dtype the config declares, else the checkpoint's own);
- ``device_map``: a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, an int, a ``torch.device``,
  ``{"": device}``) puts the whole model there; ``"auto"``/``"balanced"``/``"sequential"``
  uses the one device there is, and with several GPUs places the model over them through
  ``accelerate`` as transformers does; a ``{module: device}`` map goes through
  ``accelerate.dispatch_model``;
- ``quantization_config`` (``BitsAndBytesConfig``, ``TorchAoConfig``) is hubloader's
  ``quantization=`` (see :mod:`hubloader.quantization`);
- ``local_files_only=True`` is hubloader's ``offline=True``; ``attn_implementation`` accepts
  ``"sdpa"`` (what hubloader runs) and ``"eager"`` (the same arithmetic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["LoadSpellings", "take_load_spellings", "dispatch_over_devices"]

logger = logging.getLogger(__name__)

_AUTO_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
_SIZE_UNITS = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
               "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


@dataclass
class LoadSpellings:
    """What the transformers spellings of one call resolve to."""

    device: str | torch.device = "cpu"
    torch_dtype: str | torch.dtype | None = None  # may be "auto"
    offline: bool | None = None
    device_map: Any = None  # what accelerate places after loading, else None
    quantization: Any = None  # transformers' quantization_config (see hubloader.quantization)
    extra: dict[str, Any] = field(default_factory=dict)


def _one_device(value: Any) -> str | torch.device | None:
    """The single device ``value`` names, or ``None`` when it is a placement plan."""
    if isinstance(value, bool):
        raise ConfigError(f"device_map must be a device, 'auto' or a dict, got {value!r}")
    if isinstance(value, int):
        return f"cuda:{value}"
    if isinstance(value, torch.device):
        return value
    if isinstance(value, str):
        return None if value in _AUTO_MAPS else value
    if isinstance(value, dict):
        if "disk" in value.values():
            raise ConfigError("device_map: offloading to 'disk' is not supported; place every "
                              "module on a device")
        devices = {str(torch.device(d)) if d is not None else None
                   for d in map(_one_device, value.values())}
        if len(devices) == 1 and None not in devices:
            return next(iter(devices))
        return None
    raise ConfigError(f"device_map must be a device, 'auto' or a dict, got "
                      f"{type(value).__name__}")


def _visible_devices() -> list[str]:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def take_load_spellings(kwargs: dict[str, Any], *, device: str | torch.device,
                        torch_dtype: str | torch.dtype | None,
                        offline: bool | None) -> LoadSpellings:
    """Pop transformers' loading arguments from ``kwargs`` (the rest stay config overrides).

    Raises:
        ConfigError: ``dtype`` and ``torch_dtype`` disagree, ``device_map`` and ``device``
            disagree, a bad ``device_map``, a placement over several devices without
            ``accelerate``, or an ``attn_implementation`` hubloader does not run.
    """
    out = LoadSpellings(device=device, torch_dtype=torch_dtype, offline=offline)
    if "dtype" in kwargs:
        dtype = kwargs.pop("dtype")
        if torch_dtype is not None and dtype is not None and dtype != torch_dtype:
            raise ConfigError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give "
                              "one (dtype is transformers 5's name)")
        out.torch_dtype = dtype if dtype is not None else torch_dtype
    if kwargs.get("quantization_config") is not None:
        out.quantization = kwargs.pop("quantization_config")
    if "local_files_only" in kwargs:
        only = kwargs.pop("local_files_only")
        if only:
            out.offline = True
    impl = kwargs.pop("attn_implementation", None)
    if impl not in (None, "sdpa", "eager"):
        raise ConfigError(f"attn_implementation={impl!r} is not supported: hubloader runs "
                          "torch's scaled_dot_product_attention ('sdpa'); drop the argument")
    if "device_map" in kwargs and kwargs["device_map"] is not None:
        value = kwargs.pop("device_map")
        one = _one_device(value)
        if one is None and isinstance(value, str):  # "auto": the one device there is
            visible = _visible_devices()
            if len(visible) == 1:
                one = visible[0]
            else:
                out.device_map = value
        elif one is None:
            out.device_map = value  # a {module: device} map over several devices
        if one is not None:
            if str(device) not in ("cpu", str(one)):
                raise ConfigError(f"device={device!r} and device_map={value!r} disagree; give "
                                  "one")
            out.device = one
        elif out.device_map is not None:
            try:
                import accelerate  # noqa: F401
            except ImportError as err:
                raise ConfigError(f"device_map={value!r} places the model over several devices, "
                                  "which needs accelerate: pip install accelerate (or give one "
                                  "device, e.g. device_map='cuda:0')") from err
            out.device = "cpu"  # built here, then dispatched
    else:
        kwargs.pop("device_map", None)
    return out


def _no_split_classes(model: torch.nn.Module) -> list[str]:
    """The classes of repeated blocks (what ``ModuleList`` holds): a block stays on one device."""
    names = {type(block).__name__ for m in model.modules() if isinstance(m, torch.nn.ModuleList)
             for block in m}
    return sorted(names)


def dispatch_over_devices(model: torch.nn.Module, device_map: Any) -> torch.nn.Module:
    """Place ``model`` (loaded on the CPU) over devices as transformers does with accelerate:
    ``"auto"``-like plans are inferred from free memory, block by block; a dict is used as
    given. The plan is kept in ``model.hf_device_map``.

    Raises:
        ConfigError: accelerate rejects the plan (a module it does not name, say).
    """
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if isinstance(device_map, str):
        no_split = _no_split_classes(model)
        max_memory = None
        if device_map != "sequential":
            max_memory = get_balanced_memory(model, no_split_module_classes=no_split,
                                             low_zero=device_map == "balanced_low_0")
        device_map = infer_auto_device_map(model, max_memory=max_memory,
                                           no_split_module_classes=no_split)
    try:
        model = dispatch_model(model, device_map=device_map)
    except (ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"device_map {device_map!r} cannot place this model ({err}); name "
                          "every top-level module, or use device_map='auto'") from err
    model.hf_device_map = device_map  # transformers' attribute: where each module went
    return model
