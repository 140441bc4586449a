"""``get_model`` and ``inference_model``, as mmpretrain's.

    >>> model = get_model("resnet18_8xb32_in1k", pretrained=True)        # doctest: +SKIP
    >>> inference_model(model, "demo.jpg")["pred_class"]                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ConfigError, InputError, IntegrityError
from ..catalogue.model_index import find_model_index_entry, model_index_info
from .checkpoint import load_mm_checkpoint
from .config import Config, merge_configs
from .pipeline import apply_pipeline
from .registry import MODELS

__all__ = ["get_model", "inference_model", "build_config", "fetch_weights"]

logger = logging.getLogger(__name__)

#: torch.hub's rule: ``name-<hex digest prefix>.ext``
_DIGEST = re.compile(r"-([a-f0-9]{8,64})\.[A-Za-z0-9]+$")
_URL = re.compile(r"^(https?|s3|file)://", re.IGNORECASE)


def build_config(model: Any) -> tuple[Config, Any]:
    """``(config, model-index entry or None)`` for a name, a config path, a Config or a dict.

    Raises:
        ModelNotFoundError: a name that no model-index entry has.
        ConfigError: a config without ``model``, or an unreadable config.
        InputError: a value of another type.
    """
    if isinstance(model, Config):
        return model, None
    if isinstance(model, Mapping):
        return Config(model), None
    if isinstance(model, (str, os.PathLike)):
        text = os.fspath(model)
        if Path(text).suffix in (".py", ".json", ".yaml", ".yml") and Path(text).exists():
            return Config.fromfile(text), None
        if find_model_index_entry(text) is None and \
                Path(text).suffix in (".py", ".json", ".yaml", ".yml"):
            raise ConfigError(f"config file {text} does not exist")
        entry = model_index_info(text)  # ModelNotFoundError names close ones
        return Config.fromfile(entry.config), entry
    raise InputError(f"model must be a model-index name, a config path, a Config or a dict, "
                     f"got {type(model).__name__}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_weights(url_or_path: str | os.PathLike, *, offline: bool | None = None) -> Path:
    """The local path of a checkpoint: a URL fetched through the verified cache (a file name
    with a digest, ``...-fbbb1da6.pth``, counts as fixed content: a cached copy is used with no
    request), or a local path as it is. The digest is checked as a sha256 prefix, as torch.hub.

    Raises:
        IntegrityError: the file's sha256 does not start with the digest in its name.
        WeightsError: a local path that does not exist.
        LocalEntryNotFoundError, NetworkError, RemoteNotFoundError: see ``fetch_url``.
    """
    from ..errors import WeightsError
    from ..hub import fetch_url

    text = os.fspath(url_or_path)
    match = _DIGEST.search(text.split("?", 1)[0])
    if _URL.match(text):
        path = fetch_url(text, offline=offline, immutable=match is not None)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise WeightsError(f"checkpoint {path} does not exist; give a file or a URL")
    if match is not None:
        digest = _sha256(path)
        if not digest.startswith(match.group(1)):
            raise IntegrityError(f"{path} has sha256 {digest[:16]}..., but its name promises "
                                 f"{match.group(1)}; the file is not the published one. Remove "
                                 "it ('hubloader cache rm') and fetch it again",
                                 path=str(path), expected=match.group(1), actual=digest)
    return path


def get_model(model: Any, pretrained: bool | str | os.PathLike = False,
              device: str | torch.device = "cpu", **overrides: Any) -> nn.Module:
    """Build an mmpretrain model, as ``mmpretrain.get_model``.

    Args:
        model: a model-index name (``resnet18_8xb32_in1k``), a config file, a :class:`Config`
            or a dict with a ``model`` key.
        pretrained: ``True``: the entry's ``Weights`` (or the config's ``load_from``) through
            the verified cache; a path or URL: that checkpoint; ``False``: random weights.
        device: where the model goes.
        overrides: merged into ``config.model`` (``backbone=dict(out_indices=(0, 1, 2, 3))``).

    Returns:
        The model in eval mode; ``model.cfg`` holds its config and ``model.dataset_meta`` the
        checkpoint's ``dataset_meta`` (class names), if any.

    Raises:
        ModelNotFoundError, ConfigError, InputError: see :func:`build_config` and the registry.
        WeightsMismatchError: the checkpoint does not fit the config (loading is strict).
        IntegrityError, LocalEntryNotFoundError, NetworkError: fetching the weights.
    """
    config, entry = build_config(model)
    if "model" not in config:
        raise ConfigError("the config has no 'model'; add model = dict(type=..., ...)")
    cfg = Config(config.to_dict(), filename=config.filename)
    if overrides:
        cfg["model"] = Config(merge_configs(overrides, cfg.to_dict()["model"],
                                            where="get_model overrides"))
    model_cfg = cfg.to_dict()["model"]
    if "data_preprocessor" in cfg and "data_preprocessor" not in model_cfg:
        model_cfg["data_preprocessor"] = cfg.to_dict()["data_preprocessor"]
    weights: Any = None
    if pretrained is True:
        weights = entry.weights if entry is not None else cfg.get("load_from")
        if weights is None:
            logger.warning("no pretrained weights are known for %s; the model is random", model)
    elif pretrained is not False and pretrained is not None:
        if not isinstance(pretrained, (str, os.PathLike)):
            raise InputError(f"pretrained must be True, False, a path or a URL, got {pretrained!r}")
        weights = pretrained
    built = MODELS.build(model_cfg, path="model")
    if weights is not None:
        meta = load_mm_checkpoint(built, fetch_weights(weights))
        built.dataset_meta = dict(meta.get("dataset_meta") or {})
    else:
        built.dataset_meta = {}
    built.cfg = cfg
    return built.to(torch.device(device)).eval()


def _pipeline(model: nn.Module) -> list:
    cfg = getattr(model, "cfg", None) or {}
    steps = cfg.get("test_pipeline")
    if steps is None:
        steps = (((cfg.get("test_dataloader") or {}).get("dataset") or {}).get("pipeline"))
    return list(steps or [])


def inference_model(model: nn.Module, image: Any) -> dict[str, Any]:
    """Classify one image as mmpretrain's ``inference_model``: the config's ``test_pipeline``,
    the model's ``data_preprocessor`` (mean/std), then ``predict``.

    Args:
        model: a model from :func:`get_model`.
        image: a file path, a PIL image or an ``H x W x 3`` uint8 RGB array.

    Returns:
        ``{"pred_scores": list[float], "pred_label": int, "pred_score": float,
        "pred_class": str | None}`` (the class from the checkpoint's ``dataset_meta``).

    Raises:
        InputError: an unreadable image or a model without a head.
        ConfigError: a pipeline step hubloader does not run.
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "predict"):
        raise InputError("inference_model takes a model from hubloader.get_model")
    classifier: Any = model
    pixels = apply_pipeline(image, _pipeline(model))[None]
    param = next(model.parameters(), None)
    if param is not None:
        pixels = pixels.to(param.device)
    with torch.no_grad():
        dp = getattr(model, "data_preprocessor", None)
        inputs = dp(pixels, rgb_input=True) if dp is not None else pixels
        pred = classifier.predict(inputs)[0]
    scores = pred["pred_score"].float().cpu()
    label = int(pred["pred_label"].item())
    classes = (getattr(model, "dataset_meta", None) or {}).get("classes")
    return {"pred_scores": scores.tolist(), "pred_label": label,
            "pred_score": float(scores[label]),
            "pred_class": classes[label] if classes and label < len(classes) else None}
