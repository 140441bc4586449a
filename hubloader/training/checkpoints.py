"""Training checkpoints as model folders: what :class:`hubloader.Trainer` writes to
``save_dir/last/`` and ``save_dir/best/``, and reads back to resume.

A checkpoint is a folder ``AutoLoader`` and ``from_pretrain`` load: ``config.json``, the
weights, the tokenizer, a card, plus ``trainer_state.json`` (:class:`TrainerState`, readable)
and ``trainer_state.pt`` (optimizer, schedule and scaler state, read with
``torch.load(weights_only=True)``). It is written into a temporary folder and swapped in whole,
so a crash leaves the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import errno
import json
import logging
import pickle
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DiskFullError, HubLoaderError, WeightsError

__all__ = ["TrainerState", "save_checkpoint", "load_checkpoint", "STATE_JSON", "STATE_PT"]

logger = logging.getLogger(__name__)

STATE_JSON = "trainer_state.json"
STATE_PT = "trainer_state.pt"
# the files of a tokenizer (and an image processor) a checkpoint copies from the model's folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                   "sentence_bert_config.json", "preprocessor_config.json")


@dataclass
class TrainerState:
    """Where training stands; written as ``trainer_state.json`` with every checkpoint.

    Attributes:
        epoch: the epoch in progress (0-based); ``epochs`` once training ended.
        batches_in_epoch: micro-batches of ``epoch`` already trained (a resume skips them).
        global_step: optimizer steps taken.
        best_score: the best validation score so far (loss: lower; a metric: higher).
        best_metric: what ``best_score`` measures (``"loss"`` or the first metric's name).
        best_step: the ``global_step`` of ``best/``.
        history: one entry per evaluation (step, epoch, loss and metrics).
    """

    epoch: int = 0
    batches_in_epoch: int = 0
    global_step: int = 0
    best_score: float | None = None
    best_metric: str = "loss"
    best_step: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _state_from(data: dict[str, Any]) -> TrainerState:
    """A :class:`TrainerState` from ``trainer_state.json``, each field of its declared type."""
    state = TrainerState(**{k: v for k, v in data.items() if k in TrainerState.__dataclass_fields__})
    for name, value in asdict(state).items():
        default = getattr(TrainerState(), name)
        if isinstance(default, bool) or not isinstance(default, (int, float, list)):
            continue
        if isinstance(default, list):
            if not isinstance(value, list):
                raise TypeError(f"{name} is {type(value).__name__}, not a list")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} is {type(value).__name__}, not a number")
    return state


def _write(out: Path, *, model: nn.Module, optimizer, lr_scheduler, scaler,
           state: TrainerState, tokenizer: Any, settings: dict[str, Any]) -> None:
    from ..files import atomic_write_text
    from ..load.saving import write_safetensors

    # the tokenizer first: the model's card, written last, lists every file
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out)
    elif tokenizer is not None and Path(tokenizer).is_dir():
        for name in TOKENIZER_FILES:
            if (Path(tokenizer) / name).is_file():
                shutil.copyfile(Path(tokenizer) / name, out / name)
    torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                "scaler": scaler.state_dict()}, out / STATE_PT)
    atomic_write_text(out / STATE_JSON, json.dumps(
        {**asdict(state), "saved_at": time.time(), "trainer": settings},
        indent=2, sort_keys=True, default=str) + "\n")
    save = getattr(model, "save_pretrained", None)
    if callable(save):
        save(out)
    else:  # a plain nn.Module: its weights only
        write_safetensors(dict(model.state_dict()), out)


def save_checkpoint(folder: str | os.PathLike, *, model: nn.Module, optimizer, lr_scheduler,
                    scaler, state: TrainerState, tokenizer: Any = None,
                    settings: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint folder and swap it in place of ``folder``.

    Args:
        folder: ``save_dir/last`` or ``save_dir/best``.
        model: the (unwrapped) model; ``save_pretrained`` writes config, weights and card.
        optimizer, lr_scheduler, scaler: their ``state_dict()`` goes to ``trainer_state.pt``.
        state: goes to ``trainer_state.json``.
        tokenizer: a tokenizer with ``save_pretrained``, or a folder whose tokenizer files
            are copied (the model's own ``model_dir``), or ``None``.
        settings: the trainer's settings, recorded in ``trainer_state.json``.

    Returns:
        ``folder``.
    """
    final = Path(folder)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a crashed run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    old = final.with_name(f".{final.name}.old")
    tmp.mkdir()
    try:
        try:
            _write(tmp, model=model, optimizer=optimizer, lr_scheduler=lr_scheduler,
                   scaler=scaler, state=state, tokenizer=tokenizer, settings=settings or {})
        except (OSError, RuntimeError) as err:
            if not _out_of_space(err):
                raise
            raise DiskFullError(f"saving the checkpoint {final} failed: the disk is full or a "
                                f"file-size limit was reached ({err}); the previous checkpoint is "
                                "kept. Free space, or raise the limit (ulimit -f)") from err
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved %s (step %d)", final, state.global_step)
    return final


def _out_of_space(err: BaseException) -> bool:
    """Whether a write failed for want of room: ENOSPC, a quota, a file-size limit (torch's
    writer reports these as a RuntimeError naming the failed write)."""
    if isinstance(err, OSError) and not isinstance(err, HubLoaderError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return isinstance(err, RuntimeError) and any(
        mark in str(err) for mark in ("write failed", "unexpected pos", "iostream error",
                                      "No space left", "File too large"))


def _damaged(last: Path, name: str, err: BaseException, cls: type[HubLoaderError]) -> HubLoaderError:
    return cls(f"{last / name} is damaged or was changed ({type(err).__name__}: {err}); "
               "nothing of it was used. Delete the checkpoint folder, or pass resume=False, "
               "to start over")


def load_checkpoint(folder: str | os.PathLike, *, model: nn.Module, optimizer, lr_scheduler,
                    scaler) -> TrainerState | None:
    """Restore a checkpoint written by :func:`save_checkpoint` into the given objects.

    Args:
        folder: ``save_dir/last``; when a crash hit between the two renames of a save, its
            ``.last.old`` sibling is used.

    Returns:
        The saved :class:`TrainerState`, or ``None`` when there is no checkpoint.

    Raises:
        ConfigError: the checkpoint's weights do not fit ``model``.
    """
    from ..load.weights import find_weight_files, read_state_dict

    last = Path(folder)
    if not (last / STATE_JSON).is_file():
        last = last.with_name(f".{last.name}.old")
        if not (last / STATE_JSON).is_file():
            return None
    try:
        data = json.loads((last / STATE_JSON).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        state = _state_from(data)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as err:
        raise _damaged(last, STATE_JSON, err, ConfigError) from err
    weights = read_state_dict(find_weight_files(last))
    convert = getattr(model, "convert_checkpoint", None)  # saved in the publisher's names
    if callable(convert):
        weights = convert(weights)
    ignore = [re.compile(p) for p in getattr(model, "ignore_checkpoint_keys", ())]
    weights = {k: v for k, v in weights.items() if not any(p.search(k) for p in ignore)}
    # copied into the model's own parameters, which the optimizer already holds
    try:
        result = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise ConfigError(f"{last} does not fit this model ({err}); train into another "
                          "save_dir or pass resume=False") from err
    tied = set(getattr(model, "tied_weights", {}))
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise ConfigError(f"{last} does not fit this model (missing {missing[:5]}, unexpected "
                          f"{list(result.unexpected_keys)[:5]}); train into another save_dir "
                          "or pass resume=False")
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()
    try:
        extra = torch.load(last / STATE_PT, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        lr_scheduler.load_state_dict(extra["lr_scheduler"])
        scaler.load_state_dict(extra["scaler"])
    except FileNotFoundError as err:
        raise _damaged(last, STATE_PT, err, WeightsError) from err
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError, ValueError,
            IndexError, AttributeError) as err:
        # (the optimizer's own state may be partly loaded: the caller starts over or stops)
        raise _damaged(last, STATE_PT, err, WeightsError) from err
    logger.info("resumed from %s: epoch %d, step %d", last, state.epoch, state.global_step)
    return state
