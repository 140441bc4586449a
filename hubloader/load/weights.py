"""Weights: find the checkpoint files in a model directory, read them safely and leanly,
and assign them into a model built on the meta device.

- ``model.safetensors`` is read through the ``safetensors`` library (``safe_open``: the file is
  memory-mapped copy-on-write and tensors view the mapping, so peak memory stays near one copy
  of the weights), after hubloader's own header checks, which name what is wrong in a typed
  error before the library sees the file.
- ``pytorch_model.bin`` goes through ``torch.load(weights_only=True, mmap=True)``; a pickle that
  would run code raises :class:`UnsafeWeightsError` and never runs.
- Sharded checkpoints (``*.index.json``) are read shard by shard.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import torch

from .. import settings
from ..errors import (UnsafeWeightsError, WeightsError, WeightsMismatchError,
                     WeightsNotFoundError)
from ..names import safe_join

if TYPE_CHECKING:
    from torch import nn

__all__ = ["WeightFiles", "LoadReport", "find_weight_files", "checkpoint_layout",
           "shard_names", "read_safetensors", "read_torch_bin", "read_weight_file",
           "read_state_dict", "assign_state_dict", "resolve_dtype", "resolve_device"]

logger = logging.getLogger(__name__)

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
if hasattr(torch, "float8_e4m3fn"):
    _ST_DTYPES.update({"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2})
_MAX_HEADER = 100 * 1024 * 1024
_MAX_EXTENT = 2**62  # product of a shape's dimensions (zeros as 1): strides stay in int64
_DTYPE_NAMES = {"float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
                "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}


@dataclass(frozen=True)
class WeightFiles:
    """The checkpoint files of a model directory, in load order."""

    format: str  # "safetensors" or "bin"
    files: tuple[Path, ...]
    index: Path | None = None


@dataclass
class LoadReport:
    """What a load did: kept on the model as ``model.load_report``."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    newly_initialized: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    #: the files read as they landed, while the fetch still brought the others
    read_as_landed: list[str] = field(default_factory=list)
    num_tensors: int = 0
    num_bytes: int = 0


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"float16"``/``torch.float16``/``None`` → a torch dtype (or ``None``)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    from ..errors import ConfigError

    raise ConfigError(f"torch_dtype {dtype!r} is not supported; use one of "
                      f"{sorted(_DTYPE_NAMES)} or a torch.dtype")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``/``"cuda:0"``/``torch.device`` → a device this process can use.

    Raises:
        ConfigError: not a device name, or a CUDA device this machine does not have.
    """
    from ..errors import ConfigError

    if not isinstance(device, (str, torch.device)) or isinstance(device, bool):
        raise ConfigError(f"device must be a string such as 'cpu' or 'cuda:0' (or a "
                          f"torch.device), got {device!r} ({type(device).__name__})")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"device {device!r} is not a device name; use 'cpu', 'cuda', "
                          "'cuda:N' or 'mps'") from err
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: CUDA is not available here; use 'cpu'")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s); "
                              f"use 'cuda:0'..'cuda:{count - 1}'")
    return parsed


def shard_names(index: Path) -> list[str]:
    """The shard files a ``*.index.json`` names, sorted.

    Raises:
        WeightsError: not a shard index.
    """
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise WeightsError(f"{index} is not a valid shard index ({err}); "
                           "it needs a 'weight_map' of tensor name -> shard file") from err
    bad = [v for v in weight_map.values() if not isinstance(v, str)]
    if bad:
        raise WeightsError(f"{index}: shard names must be strings, got {bad[0]!r}")
    return sorted(set(weight_map.values()))


def _shards_from_index(model_dir: Path, index: Path) -> tuple[Path, ...]:
    shards = []
    for name in shard_names(index):
        path = safe_join(model_dir, name)
        if not path.is_file():
            raise WeightsNotFoundError(f"shard {name!r} listed in {index.name} is missing from "
                                       f"{model_dir}; download the model again")
        shards.append(path)
    return tuple(shards)


#: where the weights are, in the order they are looked for: (format, the file, or the index
#: naming the shards)
_CHECKPOINT_LAYOUTS = (("safetensors", settings.SAFE_WEIGHTS_NAME, False),
                       ("safetensors", settings.SAFE_WEIGHTS_INDEX_NAME, True),
                       ("bin", settings.PT_WEIGHTS_NAME, False),
                       ("bin", settings.PT_WEIGHTS_INDEX_NAME, True))


def _first_layout(present: Callable[[str], bool]) -> tuple[str, str, bool] | None:
    return next((layout for layout in _CHECKPOINT_LAYOUTS if present(layout[1])), None)


def checkpoint_layout(names: Iterable[str]) -> tuple[str, str, bool] | None:
    """Among a directory's file ``names``, the checkpoint a load reads: ``(format, file,
    is_index)``, safetensors first; ``None`` without one."""
    return _first_layout(set(names).__contains__)


def find_weight_files(model_dir: str | Path) -> WeightFiles:
    """Locate the checkpoint in ``model_dir``; safetensors first.

    Raises:
        WeightsNotFoundError: no known weight file is there.
    """
    d = Path(model_dir)
    layout = _first_layout(lambda name: (d / name).is_file())
    if layout is not None:
        fmt, name, is_index = layout
        if is_index:
            return WeightFiles(fmt, _shards_from_index(d, d / name), d / name)
        return WeightFiles(fmt, (d / name,))
    raise WeightsNotFoundError(
        f"no weights in {d}: expected {settings.SAFE_WEIGHTS_NAME}, "
        f"{settings.SAFE_WEIGHTS_INDEX_NAME}, {settings.PT_WEIGHTS_NAME} or "
        f"{settings.PT_WEIGHTS_INDEX_NAME}; download the model again or check the path"
    )


def _read_header(path: Path, size: int, fh) -> tuple[dict, int]:
    if size < 8:
        raise WeightsError(f"{path} is truncated ({size} bytes): not a safetensors file; "
                           "delete it and download again")
    (n,) = struct.unpack("<Q", fh.read(8))
    if n > _MAX_HEADER or n > size - 8:
        raise WeightsError(f"{path}: safetensors header claims {n} bytes but the file has "
                           f"{size}; the file is truncated or corrupt — delete it and download again")
    try:
        header = json.loads(fh.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: safetensors header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: safetensors header is not a JSON object")
    return header, 8 + n


def _check_layout(path: Path, entries: list, data_len: int) -> None:
    """Refuse tensors that overlap, leave gaps or stop short of the file's end, as the
    ``safetensors`` library does: overlapping views would share memory, so writing one
    parameter would change another."""
    pos, prev = 0, None
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin != pos:
            kind = "overlaps" if begin < pos else "leaves a gap after"
            raise WeightsError(
                f"{path}: tensor {name!r} (bytes {begin}..{end}) {kind} "
                f"{repr(prev) if prev else 'the start of the data'} (which ends at {pos}); "
                "tensors must tile the data section in order — the file is corrupt or "
                "crafted, re-save it with safetensors")
        pos, prev = end, name
    if pos != data_len:
        raise WeightsError(f"{path}: the tensors cover {pos} of the data section's {data_len} "
                           "bytes; the file is corrupt or crafted — re-save it with safetensors")


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors viewing a safetensors file, through ``safetensors.safe_open`` (copy-on-write).

    Every tensor's dtype, shape and byte range is checked against the file before the library
    opens it, so a truncated file or a header claiming absurd sizes raises :class:`WeightsError`
    with what to do (the library's own refusals are :class:`WeightsError` too).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header, data_start = _read_header(path, size, fh)
        data_len = size - data_start
        entries = []
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype = _ST_DTYPES[info["dtype"]]
                shape = [int(s) for s in info["shape"]]
                begin, end = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise WeightsError(f"{path}: bad header entry for {name!r}: {err}") from err
            numel, extent = 1, 1
            for s in shape:
                if s < 0:
                    raise WeightsError(f"{path}: {name!r} has a negative dimension {shape}")
                numel *= s
                extent *= max(1, s)
            if extent > _MAX_EXTENT or len(shape) > 64:
                # even an empty tensor of this shape has strides torch cannot represent
                raise WeightsError(f"{path}: tensor {name!r} has an absurd shape {shape}; the "
                                   "file is corrupt or crafted — delete it and download again")
            itemsize = torch.empty((), dtype=dtype).element_size()
            if not (0 <= begin <= end <= data_len) or end - begin != numel * itemsize:
                raise WeightsError(
                    f"{path}: tensor {name!r} claims bytes {begin}..{end} ({shape}, "
                    f"{info['dtype']}) but the data section has {data_len} bytes; the file is "
                    "truncated or corrupt — delete it and download again")
            entries.append((name, dtype, shape, begin, end))
        _check_layout(path, entries, data_len)
        if not entries:
            return {}
    from safetensors import SafetensorError, safe_open

    try:  # the library maps the file (copy-on-write) and checks it once more on its own
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_tensor(name) for name, *_ in entries}
    except (SafetensorError, RuntimeError, OSError) as err:
        raise WeightsError(f"{path}: safetensors cannot read it ({err}); the file is corrupt "
                           "or changed while read — delete it and download again") from err


def read_torch_bin(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a PyTorch pickle checkpoint with ``weights_only=True`` (never runs code).

    Raises:
        UnsafeWeightsError: the pickle holds anything but tensors and plain containers.
        WeightsError: the file is corrupt or not a state dict.
    """
    path = Path(path)
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) format cannot be mmapped
            if "mmap" not in str(err).lower() and "zip" not in str(err).lower():
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeWeightsError(
            f"{path} was refused: its pickle would load objects other than tensors (it may run "
            f"code). It was not executed. Convert it to safetensors from a trusted source. ({err})"
        ) from err
    except (EOFError, RuntimeError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({err}); "
                           "delete it and download again") from err
    for wrapper in ("state_dict", "module"):  # Lightning's and DeepSpeed's (FlagAI's) wrappers
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj


def read_weight_file(path: Path, fmt: str) -> dict[str, torch.Tensor]:
    """One checkpoint file of format ``fmt`` (``"safetensors"`` or ``"bin"``)."""
    return read_safetensors(path) if fmt == "safetensors" else read_torch_bin(path)


def read_state_dict(files: WeightFiles,
                    staged: Callable[[Path], dict[str, torch.Tensor] | None] | None = None
                    ) -> dict[str, torch.Tensor]:
    """Read every file of a checkpoint into one name → tensor dict; ``staged(path)`` gives a
    file's tensors already read (as it landed, see :mod:`hubloader.load.landing`), or ``None``."""
    state: dict[str, torch.Tensor] = {}
    for f in files.files:
        early = staged(f) if staged is not None else None
        state.update(early if early is not None else read_weight_file(f, files.format))
    return state


def _fmt_keys(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def assign_state_dict(model: "nn.Module", state: dict[str, torch.Tensor], *, strict: bool = True,
                      device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                      report: LoadReport | None = None) -> LoadReport:
    """Assign checkpoint tensors into ``model`` (usually built on the meta device).

    The model may declare (see :class:`hubloader.load.modeling.BaseModel`):
    ``convert_checkpoint(state)`` for key renaming, ``base_model_prefix``,
    ``ignore_checkpoint_keys`` (regexes dropped silently), ``discard_checkpoint_keys`` (regexes
    of other heads' keys: dropped and reported), ``new_head_keys`` (regexes, each judged on its
    own: a group the checkpoint has none of is initialized fresh and reported), and
    ``tie_weights()``.

    Raises:
        WeightsMismatchError: with ``strict=True``, any missing, unexpected or mis-shaped key.
    """
    report = report or LoadReport()
    convert = getattr(model, "convert_checkpoint", None)
    state = convert(state) if convert else dict(state)
    ignore = [re.compile(p) for p in getattr(model, "ignore_checkpoint_keys", ())]
    state = {k: v for k, v in state.items() if not any(p.search(k) for p in ignore)}

    expected = model.state_dict(keep_vars=True)
    tied = dict(getattr(model, "tied_weights", {}) or {})
    if not getattr(getattr(model, "config", None), "tie_word_embeddings", True):
        tied = {}  # an untied head's weights are the checkpoint's own
    prefix = getattr(model, "base_model_prefix", "")
    has_prefix_module = bool(prefix) and hasattr(model, prefix)
    if prefix:
        ckpt_prefixed = any(k.startswith(prefix + ".") for k in state)
        if has_prefix_module and not ckpt_prefixed:  # base checkpoint → head model
            state = {(k if k in expected else f"{prefix}.{k}"): v for k, v in state.items()}
            state = {k: v for k, v in state.items() if not any(p.search(k) for p in ignore)}
        elif not has_prefix_module and ckpt_prefixed:  # head checkpoint → base model
            stripped = {}
            for k, v in state.items():
                if k.startswith(prefix + "."):
                    stripped[k[len(prefix) + 1:]] = v
                elif k not in expected:
                    report.discarded.append(k)
                else:
                    stripped[k] = v
            state = stripped

    discard = [re.compile(p) for p in getattr(model, "discard_checkpoint_keys", ())]
    to_load: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key not in expected:
            if any(p.search(key) for p in discard):  # another head of the family
                report.discarded.append(key)
            else:
                report.unexpected.append(key)
            continue
        if key in tied:  # filled by tie_weights from its source
            continue
        target = expected[key]
        if target.dtype.is_floating_point and not tensor.is_floating_point():
            raise WeightsError(
                f"checkpoint tensor {key!r} is {str(tensor.dtype).removeprefix('torch.')} but "
                f"{type(model).__name__} expects floating-point weights there; the checkpoint "
                "is corrupt or for another model — convert or re-save it")
        if tuple(tensor.shape) != tuple(target.shape):
            report.mismatched.append((key, tuple(tensor.shape), tuple(target.shape)))
            continue
        want = dtype if (dtype is not None and tensor.is_floating_point()) else (
            target.dtype if tensor.is_floating_point() and target.dtype.is_floating_point else tensor.dtype)
        tensor = tensor.to(device=device, dtype=want)
        if isinstance(target, torch.nn.Parameter):
            tensor = torch.nn.Parameter(tensor, requires_grad=target.requires_grad)
        to_load[key] = tensor
        report.num_tensors += 1
        report.num_bytes += tensor.numel() * tensor.element_size()

    missing = [k for k in expected if k not in to_load and k not in tied]
    for pattern in (re.compile(p) for p in getattr(model, "new_head_keys", ())):
        head_missing = [k for k in missing if pattern.search(k)]
        head_present = [k for k in to_load if pattern.search(k)]
        if head_missing and not head_present:  # the checkpoint has none of it: a new head
            report.newly_initialized.extend(head_missing)
            missing = [k for k in missing if k not in head_missing]
    report.newly_initialized.sort()
    report.missing = sorted(missing)
    report.unexpected = sorted(report.unexpected)
    report.mismatched = sorted(report.mismatched)
    report.discarded = sorted(report.discarded)

    if strict and (report.missing or report.unexpected or report.mismatched):
        parts = []
        if report.missing:
            parts.append(f"missing {len(report.missing)} key(s): {_fmt_keys(report.missing)}")
        if report.unexpected:
            parts.append(f"unexpected {len(report.unexpected)} key(s): {_fmt_keys(report.unexpected)}")
        if report.mismatched:
            mm = [f"{k} (checkpoint {a}, model {b})" for k, a, b in report.mismatched]
            parts.append(f"{len(mm)} shape mismatch(es): {_fmt_keys(mm)}")
        raise WeightsMismatchError(
            f"checkpoint does not fit {type(model).__name__}: " + "; ".join(parts) +
            ". Check the model class and config (e.g. num_labels), or pass strict=False to load "
            "anyway (the gaps are then logged and randomly initialized).",
            missing=report.missing, unexpected=report.unexpected, mismatched=report.mismatched)

    model.load_state_dict(to_load, strict=False, assign=True)
    fresh = report.missing + [k for k, _, _ in report.mismatched] + report.newly_initialized
    tie = getattr(model, "tie_weights", None)
    if tie is not None:  # tie first so tied targets need no storage of their own
        tie()
    _materialize(model, device=device, dtype=dtype)
    if report.missing or report.unexpected or report.mismatched:
        logger.warning("loaded %s with strict=False: randomly initialized %d key(s) [%s]; "
                       "ignored %d unexpected key(s) [%s]", type(model).__name__, len(fresh),
                       _fmt_keys(fresh), len(report.unexpected), _fmt_keys(report.unexpected))
    if report.newly_initialized:
        logger.warning("%s: newly initialized head %s (the checkpoint has none); fine-tune it "
                       "before use", type(model).__name__, _fmt_keys(report.newly_initialized))
    if report.discarded:
        logger.info("%s: discarded checkpoint head key(s) %s", type(model).__name__,
                    _fmt_keys(report.discarded))
    if tie is not None:
        tie()
    return report


def _materialize(model: "nn.Module", *, device, dtype) -> None:
    """Give every tensor still on the meta device real storage and its initial values.

    Tensors already loaded in the same module are left exactly as loaded: the module's
    initializer runs on placeholders for them, then they are put back.
    """
    init = getattr(model, "init_module_weights", None)
    for module in model.modules():
        slots = {**module._parameters, **module._buffers}
        metas = [n for n, t in slots.items() if t is not None and t.is_meta]
        if not metas:
            continue
        kept = {n: t for n, t in slots.items() if t is not None and not t.is_meta}
        for n, t in slots.items():
            if t is None:
                continue
            want = dtype if (dtype is not None and t.is_floating_point() and n in metas) else t.dtype
            fresh = torch.empty(t.shape, dtype=want, device=device if n in metas else t.device)
            if n in module._parameters:
                module._parameters[n] = torch.nn.Parameter(fresh, requires_grad=t.requires_grad)
            else:
                module._buffers[n] = fresh
        if init is not None:
            init(module)
        for n, t in kept.items():
            if n in module._parameters:
                module._parameters[n] = t  # type: ignore[assignment]  # the tensor kept as it was
            else:
                module._buffers[n] = t
