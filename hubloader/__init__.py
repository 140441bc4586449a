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

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it (imported lazily)
_LAZY = {
    "BaseModel": ".modeling",
    "AutoLoader": ".auto",
    "Predictor": ".predictor",
    "Tokenizer": ".tokenization",
    "AutoTokenizer": ".tokenization",
    "GenerationConfig": ".models.generation_config",
    "TextStreamer": ".streaming",
    "list_models": ".cards",
    "model_info": ".cards",
    "ModelCard": ".cards",
    "parse_model_name": ".names",
    "ModelRef": ".names",
    "download": ".hub",
    "cached_file": ".hub",
    "prefetch": ".hub",
    "Prefetch": ".hub",
    "register_model": ".registry",
    "get_model_class": ".registry",
    "LoadReport": ".weights",
    "push": ".publish",
    "PushResult": ".publish",
    "Trainer": ".trainer",
}

__all__ = sorted(list(_LAZY) + list(_error_names) + ["__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from .auto import AutoLoader
    from .cards import ModelCard, list_models, model_info
    from .hub import Prefetch, cached_file, download, prefetch
    from .modeling import BaseModel
    from .names import ModelRef, parse_model_name
    from .predictor import Predictor
    from .publish import PushResult, push
    from .registry import get_model_class, register_model
    from .streaming import TextStreamer
    from .models.generation_config import GenerationConfig
    from .tokenization import AutoTokenizer, Tokenizer
    from .trainer import Trainer
    from .weights import LoadReport


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubloader' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
