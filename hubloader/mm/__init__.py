"""mmpretrain's model system: configs read as data (:mod:`.config`), one ``MODELS`` registry
(:mod:`.registry`), ``ImageClassifier`` and its components over hubloader's own layers
(:mod:`.classifier`, :mod:`.backbones`, :mod:`.heads`), mmpretrain checkpoints in and out
(:mod:`.checkpoint`), ``get_model``/``inference_model`` (:mod:`.api`) and FLOPs (:mod:`.flops`).
The model-index catalogue lives beside the model cards (:mod:`hubloader.catalogue.model_index`).
"""

from . import backbones, classifier, heads  # noqa: F401  (registers the components)
from .api import fetch_weights, get_model, inference_model
from .checkpoint import load_mm_checkpoint, save_mm_checkpoint
from .classifier import ImageClassifier
from .config import Config, ConfigDict
from .flops import get_flops
from .registry import MODELS, Registry, RegistryError

__all__ = ["Config", "ConfigDict", "MODELS", "Registry", "RegistryError", "ImageClassifier",
           "get_model", "inference_model", "get_flops", "fetch_weights", "load_mm_checkpoint",
           "save_mm_checkpoint"]
