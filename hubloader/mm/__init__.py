"""mmpretrain's model system: configs read as data, one ``MODELS`` registry, ``ImageClassifier``
and its components over hubloader's own layers, mmpretrain checkpoints in and out."""

from . import backbones, classifier, heads  # noqa: F401  (register the components)
from .checkpoint import load_mm_checkpoint, save_mm_checkpoint
from .classifier import ImageClassifier
from .config import Config, ConfigDict
from .registry import MODELS, Registry, RegistryError

__all__ = ["Config", "ConfigDict", "MODELS", "Registry", "RegistryError", "ImageClassifier",
           "load_mm_checkpoint", "save_mm_checkpoint"]
