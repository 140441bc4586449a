"""How big a model will be before it is allocated: the bytes of its parameters and buffers,
counted on a meta-device build, against a cap (``HUBLOADER_MAX_PARAM_BYTES``) or, for CPU
loads, the memory available. A ``config.json`` asking for ``hidden_size=40000`` or
``num_labels=10**8`` is refused with a :class:`ConfigError` instead of exhausting memory.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch

from .. import settings
from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["parameter_bytes", "available_memory", "check_model_size"]

logger = logging.getLogger(__name__)


def parameter_bytes(model: "nn.Module", *, dtype: torch.dtype | None = None) -> int:
    """Bytes the model's parameters and buffers take once materialized (tied tensors once);
    floating tensors counted at ``dtype`` when given. Works on the meta device."""
    seen: set[int] = set()
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        size = dtype.itemsize if dtype is not None and tensor.is_floating_point() \
            else tensor.element_size()
        total += tensor.numel() * size
    return total


def available_memory() -> int | None:
    """Bytes of memory the system can still give (``MemAvailable``), or ``None`` unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.2f} GiB"


def check_model_size(model: "nn.Module", *, dtype: torch.dtype | None, device, where: str) -> int:
    """Refuse a model (built on the meta device) whose tensors would not fit.

    The cap is ``HUBLOADER_MAX_PARAM_BYTES`` when set; without it, CPU loads are bounded by
    the memory available now (another device's memory is its own business).

    Returns:
        The estimated bytes.

    Raises:
        ConfigError: the estimate exceeds the cap or the available memory.
    """
    need = parameter_bytes(model, dtype=dtype)
    cap = settings.max_param_bytes()
    name = type(model).__name__
    if cap is not None and need > cap:
        raise ConfigError(
            f"{where}: {name} would need {_gib(need)} for its weights, above "
            f"HUBLOADER_MAX_PARAM_BYTES={cap:,}; check the config's sizes (hidden_size, "
            "vocab_size, num_labels...) or raise the cap")
    if cap is None and torch.device(device).type == "cpu":
        free = available_memory()
        if free is not None and need > free:
            raise ConfigError(
                f"{where}: {name} would need {_gib(need)} for its weights but only "
                f"{_gib(free)} of memory is available; check the config's sizes (hidden_size, "
                "vocab_size, num_labels...), or set HUBLOADER_MAX_PARAM_BYTES to decide the "
                "cap yourself")
    logger.debug("%s: %s of weights expected", name, _gib(need))
    return need
