"""``hubloader convert SRC DST``: a checkpoint (``pytorch_model.bin``, sharded ``.bin``, or
safetensors) into a hubloader model directory: safetensors (optionally sharded and cast), keys
renamed through the model class's declared mapping (``checkpoint_key_rules``,
``base_model_prefix``...), loaded strictly into that class to prove the result, plus
``config.json`` and a card. Pickles are read only with ``torch.load(weights_only=True)``: one
that would run code is refused before anything runs.

With ``raw=True`` (or a source without a ``config.json`` model type) the tensors are written
as they are, under their own names.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import settings
from ..errors import ConfigError, WeightsNotFoundError

__all__ = ["ConvertResult", "convert"]

logger = logging.getLogger(__name__)

#: files a model directory may carry besides config, card and weights; copied as they are
_COPY = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
         "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model",
         "preprocessor_config.json", "added_tokens.json")


@dataclass
class ConvertResult:
    """What :func:`convert` wrote."""

    directory: Path
    files: list[str] = field(default_factory=list)
    num_tensors: int = 0
    num_bytes: int = 0
    model_class: str | None = None


def _read_source(src: Path):
    from ..load.weights import WeightFiles, find_weight_files, read_state_dict

    if src.is_file():
        kind = "safetensors" if src.suffix == ".safetensors" else "bin"
        return read_state_dict(WeightFiles(kind, (src,))), None
    if not src.is_dir():
        raise WeightsNotFoundError(f"{src} is neither a checkpoint file nor a model directory")
    return read_state_dict(find_weight_files(src)), src


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, dtype: str | None = None,
            max_shard_size: int | str | None = None, model_type: str | None = None,
            raw: bool = False, strict: bool = True) -> ConvertResult:
    """Convert a checkpoint into a safetensors model directory.

    Args:
        src: a model directory (``config.json`` + weights) or a single ``.bin``/``.safetensors``.
        dst: the output directory.
        dtype: cast floating tensors (``"float16"``, ``"bfloat16"``, ``"float32"``).
        max_shard_size: shard the output (``"500MB"``).
        model_type: the family when ``src`` has no ``config.json`` model type.
        raw: keep keys as they are (no model class).
        strict: with a model class, every key must map (else :class:`WeightsMismatchError`).

    Returns:
        A :class:`ConvertResult`.

    Raises:
        UnsafeWeightsError: a pickle that would run code (it was not run).
        WeightsError, WeightsNotFoundError, WeightsMismatchError, ConfigError.

    Example:
        >>> convert("hf-bert/", "bert-st/", dtype="float16", max_shard_size="200MB")
    """
    from ..load.config import read_config_file
    from ..load.saving import write_card, write_safetensors
    from ..load.weights import assign_state_dict, resolve_dtype

    src_p, out = Path(src), Path(dst)
    if out.exists() and any(out.iterdir()) and out.resolve() != src_p.resolve():
        logger.info("writing into non-empty %s", out)
    if out.resolve() == src_p.resolve():
        raise ConfigError(f"convert writes a new directory; {out} is the source itself")
    cast = resolve_dtype(dtype)
    state, src_dir = _read_source(src_p)  # weights_only: refuses code-running pickles
    data = {}
    if src_dir is not None and (src_dir / settings.CONFIG_NAME).is_file():
        data = read_config_file(src_dir / settings.CONFIG_NAME)
    mtype = model_type or data.get("model_type")
    result = ConvertResult(out)
    if raw or not mtype:
        if not raw:
            logger.warning("no model type for %s: writing tensors under their own names "
                           "(give --model-type to rename through a model class)", src)
        tensors = {k: (v.to(cast) if cast is not None and v.is_floating_point() else v)
                   for k, v in state.items()}
        files = write_safetensors(tensors, out, max_shard_size=max_shard_size)
        if data:
            shutil.copyfile(src_dir / settings.CONFIG_NAME, out / settings.CONFIG_NAME)
        result.num_tensors = len(tensors)
        result.num_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        result.files = [f.name for f in files]
    else:
        from ..load.modeling import BaseModel, skip_init_on_meta
        from ..load.plan import resolve_config

        target, config = resolve_config({**data, "model_type": mtype}, BaseModel, str(src))
        with skip_init_on_meta():
            model = target(config)
        report = assign_state_dict(model, state, strict=strict, dtype=cast)
        model.save_pretrained(out, max_shard_size=max_shard_size)
        result.num_tensors, result.num_bytes = report.num_tensors, report.num_bytes
        result.model_class = type(model).__name__
        result.files = sorted(p.name for p in out.iterdir() if p.name != settings.CARD_NAME)
    if src_dir is not None:
        for name in _COPY:
            if (src_dir / name).is_file():
                shutil.copyfile(src_dir / name, out / name)
                result.files.append(name)
    if result.model_class is not None or (out / settings.CONFIG_NAME).is_file():
        meta = {"name": out.resolve().name, "tasks": [getattr(model, "task", "base")]
                if result.model_class else ["base"], "license": "other", "author": "unknown",
                "architecture": mtype or "unknown"}
        if (out / settings.CARD_NAME).is_file():  # keep what save_pretrained wrote, re-list files
            from ..catalogue.cards import load_card

            card = load_card(out)
            meta.update(name=card.name, tasks=list(card.tasks), license=card.license,
                        author=card.author, architecture=card.architecture)
        write_card(out, meta, body=f"Converted from `{src_p.name}` by hubloader convert.\n")
    logger.info("converted %s -> %s (%d tensors)", src, out, result.num_tensors)
    return result
