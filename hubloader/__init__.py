"""hubloader: load pretrained PyTorch models by name — verified, cached exactly once, offline.

    >>> from hubloader import AutoLoader
    >>> loader = AutoLoader("embedding", model_name="all-MiniLM-L6-v2")
    >>> model, tok = loader.get_model(), loader.get_tokenizer()

Heavy parts (torch models, boto3, huggingface_hub, tokenizers) load on first use, so
``import hubloader`` stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from .errors import *  # noqa: F401,F403  (errors are leaves: cheap)
from .errors import __all__ as _error_names

from ._gc import torch_import as _torch_import
from ._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it (imported lazily)
_LAZY = {
    "BaseModel": ".load.modeling",
    "AutoLoader": ".auto",
    "Predictor": ".flagai.predictor",
    "Tokenizer": ".text.tokenizer",
    "AutoTokenizer": ".text.tokenizer",
    "GenerationConfig": ".models.generation_config",
    "TextStreamer": ".text.streaming",
    "list_models": ".catalogue.cards",
    "model_info": ".catalogue.cards",
    "ModelCard": ".catalogue.cards",
    "parse_model_name": ".names",
    "ModelRef": ".names",
    "download": ".hub",
    "cached_file": ".hub",
    "prefetch": ".hub",
    "Prefetch": ".hub",
    "register_model": ".load.registry",
    "get_model_class": ".load.registry",
    "LoadReport": ".load.weights",
    "push": ".publish",
    "PushResult": ".publish",
    "Trainer": ".training.trainer",
    "LayerIndexNotFoundError": ".load.platform",
    "Config": ".mm",
    "MODELS": ".mm",
    "get_model": ".mm",
    "inference_model": ".mm",
    "get_flops": ".mm",
}

__all__ = sorted(list(_LAZY) + list(_error_names) + ["__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from .auto import AutoLoader
    from .catalogue.cards import ModelCard, list_models, model_info
    from .hub import Prefetch, cached_file, download, prefetch
    from .load.modeling import BaseModel
    from .mm import MODELS, Config, get_flops, get_model, inference_model
    from .load.platform import LayerIndexNotFoundError
    from .names import ModelRef, parse_model_name
    from .flagai.predictor import Predictor
    from .publish import PushResult, push
    from .load.registry import get_model_class, register_model
    from .text.streaming import TextStreamer
    from .models.generation_config import GenerationConfig
    from .text.tokenizer import AutoTokenizer, Tokenizer
    from .training.trainer import Trainer
    from .load.weights import LoadReport


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubloader' has no attribute {name!r}")
    with _torch_import():  # most of these import torch: see hubloader/_gc.py
        value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
