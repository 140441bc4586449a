"""AlphaMed's pre-trained model interfaces and FedAvg (on Flower, see
:mod:`hubloader.automl.flower`). Importing this package does not import torch; the names
load on first use.

Example:
    >>> from hubloader.automl import AutoModel
    >>> model = AutoModel.from_pretrain("./resnet-tiny")
    >>> out = model.fine_tune(id="node-1", task_id="t1", dataset_dir="skin-lesions")
    >>> AutoModel.from_pretrain(out).forward("lesion.png")
    'melanoma'
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DatasetMode", "Preprocessor", "AutoModel", "AutoFedAvgModel", "AutoFedAvgScheduler",
           "fedavg", "AutoImageClassifier", "register_auto_model"]

_HOMES = {"DatasetMode": ".base", "Preprocessor": ".base", "AutoModel": ".base",
          "AutoFedAvgModel": ".base", "AutoFedAvgScheduler": ".fedavg", "fedavg": ".fedavg",
          "AutoImageClassifier": ".image", "register_auto_model": ".loading"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
