"""AlphaMed's pre-trained model interfaces: :class:`DatasetMode`, :class:`Preprocessor`,
:class:`AutoModel` and :class:`AutoFedAvgModel`.

A package written to AlphaMed's developer manual subclasses :class:`AutoModel` (or
:class:`AutoFedAvgModel`) behind ``config.json``'s ``entry_file``/``entry_module`` +
``entry_class``; hubloader builds it as ``entry_class(resource_dir=<package folder>)`` once
trusted. Nothing here imports torch: the annotations name it only for type checkers.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch
    from torch import nn, optim
    from torch.utils.data import DataLoader

__all__ = ["DatasetMode", "Preprocessor", "AutoModel", "AutoFedAvgModel", "LogCallback"]

logger = logging.getLogger(__name__)

#: receives every :meth:`AutoModel.push_log` message (AlphaMed's Playground front end)
LogCallback = Callable[[str], None]


class DatasetMode(enum.Enum):
    """Which split a dataset or a preprocessor serves (training augments; the rest do not)."""

    TRAINING = "training"
    VALIDATION = "validation"
    TESTING = "testing"
    PREDICTING = "predicting"


class Preprocessor(ABC):
    """Turns one raw input file into the model's input tensor."""

    @abstractmethod
    def transform(self, image_file: str) -> "torch.Tensor":
        """Transform an image file into an input tensor."""


class AutoModel(ABC):
    """A model the platform can fine-tune and deploy with no extra code.

    Args:
        resource_dir: the package folder (``config.json``, weights, ``preprocessor_config.json``).
        log_callback: called with every :meth:`push_log` message, besides :mod:`logging`.
        **kwargs: for subclasses.
    """

    #: tells hubloader's package loader to build the class as ``cls(resource_dir=...)`` and to
    #: leave ``param_file`` to it (it is not a ``torch.nn.Module``)
    hubloader_resource_dir_init = True

    def __init__(self, resource_dir: str | os.PathLike, *, log_callback: LogCallback | None = None,
                 **kwargs: Any) -> None:
        self.resource_dir = Path(resource_dir)
        self.log_callback = log_callback

    @classmethod
    def from_pretrain(cls, name_or_dir: str | os.PathLike, *,
                      trust_remote_code: bool | str = False, **kwargs: Any) -> "AutoModel":
        """An :class:`AutoModel` for a card name, a folder, a ``.zip`` or a URI.

        A package with ``entry_file``/``entry_module`` builds its own ``entry_class`` (only
        when trusted); hubloader's own image classifiers (ResNet, ViT, Swin...) get the
        built-in :class:`hubloader.automl.image.AutoImageClassifier`.

        Args:
            name_or_dir: what to load (see :func:`hubloader.resolve.resolve_model_dir`).
            trust_remote_code: run a package's own code (``True`` or its sha256).
            **kwargs: passed to the class (``batch_size``, ``lr``, ``log_callback``...).

        Raises:
            UntrustedCodeError: the package ships code and was not trusted.
            PackageError: the package's ``entry_class`` is not an :class:`AutoModel`.
            ConfigError: no built-in AutoModel serves the model's ``model_type``.

        Example:
            >>> model = AutoModel.from_pretrain("./resnet-tiny")
            >>> model.forward("cat.png")
            'cat'
        """
        from ..errors import PackageError
        from .loading import load_auto_model

        model = load_auto_model(name_or_dir, trust_remote_code=trust_remote_code, **kwargs)
        if not isinstance(model, AutoModel):
            raise PackageError(f"{name_or_dir}: the package's entry_class "
                               f"{type(model).__name__!r} is not an AutoModel; subclass "
                               "hubloader.automl.AutoModel (or AutoFedAvgModel)")
        return model

    # -- AlphaMed's interface ------------------------------------------------------------------
    @abstractmethod
    def train(self) -> None:
        """Go into ``train`` mode as of ``torch.nn.Module``."""

    @abstractmethod
    def eval(self) -> None:
        """Go into ``eval`` mode as of ``torch.nn.Module``."""

    @abstractmethod
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Do a forward propagation as of ``torch.nn.Module``."""

    @abstractmethod
    def init_dataset(self, dataset_dir: str) -> tuple[bool, str]:
        """Init the local dataset; return ``(ok, why_not)``."""

    @abstractmethod
    def fine_tune(self, id: str, task_id: str, dataset_dir: str, is_initiator: bool = False,
                  recover: bool = False, **kwargs: Any) -> Any:
        """Fine-tune on the dataset under ``dataset_dir``."""

    def push_log(self, message: str) -> None:
        """Report progress to whoever runs the model: :mod:`logging` (INFO), and the
        ``log_callback`` given at construction, if any."""
        logger.info("%s: %s", type(self).__name__, message)
        if self.log_callback is not None:
            self.log_callback(message)

    def read_config(self) -> dict[str, Any]:
        """The package's ``config.json`` (data; nothing in it is run)."""
        from ..load.config import read_config_file

        return read_config_file(self.resource_dir / "config.json")

    def read_fine_tuned_meta(self) -> dict[str, Any]:
        """``fine_tuned.meta`` of a fine-tuned folder (``labels`` and how it was made), or ``{}``."""
        path = self.resource_dir / "fine_tuned.meta"
        if not path.is_file():
            return {}
        return dict(json.loads(path.read_text(encoding="utf-8")))


class AutoFedAvgModel(AutoModel):
    """An :class:`AutoModel` that FedAvg can drive one local epoch at a time.

    :class:`hubloader.automl.fedavg.AutoFedAvgScheduler` and the Flower apps in
    :mod:`hubloader.automl.flower` call only what is declared here.
    """

    @property
    @abstractmethod
    def training_loader(self) -> "DataLoader | None":
        """The dataloader used in training."""

    @property
    @abstractmethod
    def validation_loader(self) -> "DataLoader | None":
        """The dataloader used in validation (``None`` without a ``val/`` split)."""

    @property
    @abstractmethod
    def testing_loader(self) -> "DataLoader | None":
        """The dataloader used in testing."""

    @property
    @abstractmethod
    def model(self) -> "nn.Module":
        """The model trained and used to predict."""

    @property
    @abstractmethod
    def optimizer(self) -> "optim.Optimizer":
        """The optimizer used in training."""

    @abstractmethod
    def state_dict(self) -> dict[str, "torch.Tensor"]:
        """The parameters FedAvg averages and saves."""

    @abstractmethod
    def load_state_dict(self, state_dict: dict[str, "torch.Tensor"]) -> Any:
        """Load parameters that :meth:`state_dict` returned (after averaging)."""

    @abstractmethod
    def train_an_epoch(self) -> Any:
        """One local epoch over :attr:`training_loader`."""

    @abstractmethod
    def run_test(self) -> Any:
        """One pass over :attr:`testing_loader`."""

    def run_validation(self) -> Any:
        """One pass over :attr:`validation_loader` (optional)."""
        raise NotImplementedError(f"{type(self).__name__} has no validation step")

    def fine_tuned_files_dict(self) -> dict[str, str] | None:
        """Files to keep with the fine-tuned weights: ``{path in the result: real path}``."""
        return None
