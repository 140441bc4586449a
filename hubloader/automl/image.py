"""The built-in :class:`~hubloader.automl.base.AutoFedAvgModel` for hubloader's image
classifiers (ResNet, ViT, Swin: any family serving ``image-classification``).

``forward("x.png")`` preprocesses through the folder's ``preprocessor_config.json`` and
returns a label; ``fine_tune(id=..., task_id=..., dataset_dir=...)`` trains on an image folder
and saves a folder that :meth:`AutoModel.from_pretrain` reloads. Dataset layout::

    dataset_dir/train/<label>/*.png      required
    dataset_dir/val/<label>/*.png        optional: best-round selection, early stopping
    dataset_dir/test/<label>/*.png       optional: the accuracy reported at the end

Another classifier family (mmpretrain's ``ImageClassifier``) subclasses
:class:`AutoImageClassifier` and overrides :meth:`~AutoImageClassifier.logits` and
:meth:`~AutoImageClassifier.head`/:meth:`~AutoImageClassifier.set_head`, then registers with
:func:`hubloader.automl.loading.register_auto_model`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import settings
from ..errors import ConfigError, DatasetError, InputError
from ..files import atomic_write_json, temp_name
from ..vision.preprocessing import PREPROCESSOR_NAME, ImageProcessor, load_image_processor
from .base import AutoFedAvgModel, DatasetMode, LogCallback, Preprocessor

__all__ = ["AutoImageClassifier", "ImagePreprocessor", "ImageFolderDataset", "list_labels",
           "FINE_TUNED_META"]

FINE_TUNED_META = "fine_tuned.meta"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = {DatasetMode.TRAINING: "train", DatasetMode.VALIDATION: "val",
          DatasetMode.TESTING: "test"}


class ImagePreprocessor(Preprocessor):
    """``preprocessor_config.json``'s steps, plus a random horizontal flip in training when the
    file sets ``do_horizontal_flip``."""

    def __init__(self, processor: ImageProcessor, mode: DatasetMode, *, flip: bool = False):
        self.processor, self.mode, self.flip = processor, mode, flip

    def transform(self, image_file: str | os.PathLike) -> torch.Tensor:
        x = self.processor.preprocess_one(image_file)
        if self.flip and self.mode is DatasetMode.TRAINING and random.random() < 0.5:
            x = x.flip(-1)
        return x


def list_labels(split_dir: str | os.PathLike) -> list[str]:
    """The label folders of one split (``train/``), sorted; hidden folders are skipped."""
    d = Path(split_dir)
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolderDataset(Dataset):
    """``<split>/<label>/<image>`` pairs, labels numbered by their place in ``labels``."""

    def __init__(self, split_dir: Path, labels: Sequence[str], preprocessor: Preprocessor):
        self.labels = list(labels)
        index = {name: i for i, name in enumerate(self.labels)}
        unknown = sorted(set(list_labels(split_dir)) - set(index))
        if unknown:
            raise DatasetError(f"{split_dir} holds label folder(s) {unknown} that the model's "
                               f"labels {self.labels} lack; put them under train/ too")
        self.items = [(p, index[p.parent.name]) for name in self.labels
                      if (split_dir / name).is_dir()
                      for p in sorted((split_dir / name).iterdir())
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        return self.preprocessor.transform(str(path)), label


class AutoImageClassifier(AutoFedAvgModel):
    """AlphaMed's ``AutoModel`` for a hubloader image-classification model folder.

    Args:
        resource_dir: the model folder (``config.json`` naming a vision family, weights,
            ``preprocessor_config.json``; a fine-tuned folder also has ``fine_tuned.meta``).
        batch_size, lr, epochs: training settings (``epochs``: ``fine_tune``'s default).
        seed: seeds torch and the data order, so a run repeats.
        device: where the model runs.
        log_callback: receives every :meth:`push_log` message.
    """

    def __init__(self, resource_dir: str | os.PathLike, *, batch_size: int = 16,
                 lr: float = 1e-3, epochs: int = 5, seed: int = 0, device: str = "cpu",
                 log_callback: LogCallback | None = None, **kwargs: Any) -> None:
        super().__init__(resource_dir, log_callback=log_callback)
        from ..load.modeling import BaseModel
        from ..load.registry import get_model_class

        if batch_size < 1 or lr <= 0 or epochs < 1:
            raise ConfigError("batch_size and epochs must be >= 1 and lr > 0")
        self.batch_size, self.lr, self.epochs, self.seed = batch_size, lr, epochs, seed
        self.device = torch.device(device)
        config = self.read_config()
        model_type = config.get("model_type")
        if not isinstance(model_type, str):
            raise ConfigError(f"{self.resource_dir}/config.json has no 'model_type': the built-in "
                              "AutoModel needs a hubloader image family (resnet, vit, swin)")
        torch.manual_seed(seed)
        cls = get_model_class(model_type, "image-classification")
        self._model: BaseModel = cls.from_pretrain(str(self.resource_dir), device=self.device)
        meta = self.read_fine_tuned_meta()
        id2label = getattr(self._model.config, "id2label", None) or {}
        self.labels: list[str] = list(meta.get("labels") or
                                      [id2label[k] for k in sorted(id2label, key=int)])
        self.processor = (load_image_processor(self.resource_dir)
                          if (self.resource_dir / PREPROCESSOR_NAME).is_file()
                          else _default_processor(config))
        self._flip = bool(_read_json(self.resource_dir / PREPROCESSOR_NAME).get("do_horizontal_flip"))
        self.dataset_dir: Path | None = None
        self._loaders: dict[DatasetMode, DataLoader | None] = {}
        self._optimizer: torch.optim.Optimizer | None = None

    # -- the model's head: what another classifier family overrides ---------------------------
    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[batch, num_labels]`` scores for a batch of preprocessed images."""
        return self._model(pixel_values=pixel_values)["logits"]

    def head(self) -> nn.Linear:
        """The final linear layer (replaced when the label set changes)."""
        head = getattr(self._model, "classifier", None)
        if not isinstance(head, nn.Linear):
            raise ConfigError(f"{type(self._model).__name__} has no linear 'classifier' head; "
                              "subclass AutoImageClassifier and override head()/set_head()")
        return head

    def set_head(self, layer: nn.Linear) -> None:
        self._model.classifier = layer

    def set_labels(self, labels: Sequence[str]) -> None:
        """Make the model classify into ``labels`` (a new, seeded head when they differ)."""
        labels = list(labels)
        if not labels or len(set(labels)) != len(labels):
            raise DatasetError(f"labels must be distinct and not empty, got {labels}")
        old = self.head()
        if labels != self.labels or old.out_features != len(labels):
            torch.manual_seed(self.seed)
            self.set_head(nn.Linear(old.in_features, len(labels)).to(old.weight.device))
            self._optimizer = None
            self.push_log(f"classifier head replaced for {len(labels)} labels")
        cfg = self._model.config
        cfg.id2label = {str(i): name for i, name in enumerate(labels)}
        cfg.label2id = {name: i for i, name in enumerate(labels)}
        cfg.num_labels = len(labels)
        self.labels = labels

    # -- AutoModel -------------------------------------------------------------------------------
    def train(self) -> None:
        self._model.train()

    def eval(self) -> None:
        self._model.eval()

    def forward(self, input: str | os.PathLike | torch.Tensor) -> str | list[str]:
        """The label of an image file, or of a preprocessed ``[C, H, W]`` tensor; a list of
        labels for a ``[B, C, H, W]`` batch.

        Raises:
            InputError: not a path or a tensor, a missing or unreadable image.
            ConfigError: the model has no labels (neither ``id2label`` nor ``fine_tuned.meta``).
        """
        if isinstance(input, (str, os.PathLike)):
            x = ImagePreprocessor(self.processor, DatasetMode.PREDICTING).transform(input)[None]
        elif isinstance(input, torch.Tensor) and input.dim() in (3, 4):
            x = input[None] if input.dim() == 3 else input
        else:
            raise InputError("forward takes an image path or a [C, H, W] / [B, C, H, W] tensor, "
                             f"got {type(input).__name__}")
        if not self.labels:
            raise ConfigError(f"{self.resource_dir} names no labels (no id2label, no "
                              f"{FINE_TUNED_META}); fine-tune it first")
        self.eval()
        with torch.no_grad():
            predicted = self.logits(x.to(self.device)).argmax(-1).tolist()
        names = [self.labels[i] for i in predicted]
        return names[0] if isinstance(input, (str, os.PathLike)) or input.dim() == 3 else names

    __call__ = forward

    def init_dataset(self, dataset_dir: str | os.PathLike, *,
                     labels: Sequence[str] | None = None) -> tuple[bool, str]:
        """Read ``dataset_dir``'s splits and build their loaders; ``labels`` fixes the label
        set (a federated run passes the union of all owners'), else ``train/``'s folders."""
        root = Path(dataset_dir).expanduser()
        train = root / SPLITS[DatasetMode.TRAINING]
        if not train.is_dir():
            return False, (f"{root} has no train/ folder: lay the images out as "
                           "train/<label>/<image> (optional val/ and test/ alike)")
        try:
            self.set_labels(list(labels) if labels is not None else list_labels(train))
            loaders: dict[DatasetMode, DataLoader | None] = {}
            for mode, split in SPLITS.items():
                d = root / split
                if not d.is_dir():
                    loaders[mode] = None
                    continue
                pre = ImagePreprocessor(self.processor, mode, flip=self._flip)
                ds = ImageFolderDataset(d, self.labels, pre)
                gen = torch.Generator().manual_seed(self.seed)
                loaders[mode] = DataLoader(ds, batch_size=self.batch_size,
                                           shuffle=mode is DatasetMode.TRAINING,
                                           generator=gen) if len(ds) else None
        except DatasetError as err:
            return False, str(err)
        if loaders[DatasetMode.TRAINING] is None:
            return False, f"{train} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        self.dataset_dir, self._loaders = root, loaders
        return True, "dataset ready"

    def _require_dataset(self, dataset_dir: str | os.PathLike, labels=None) -> None:
        ok, why = self.init_dataset(dataset_dir, labels=labels)
        if not ok:
            raise DatasetError(f"cannot fine-tune on {dataset_dir}: {why}")

    @property
    def training_loader(self) -> DataLoader | None:
        return self._loaders.get(DatasetMode.TRAINING)

    @property
    def validation_loader(self) -> DataLoader | None:
        return self._loaders.get(DatasetMode.VALIDATION)

    @property
    def testing_loader(self) -> DataLoader | None:
        return self._loaders.get(DatasetMode.TESTING)

    @property
    def model(self) -> nn.Module:
        return self._model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self._model.parameters(), lr=self.lr)
        return self._optimizer

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self._model.state_dict().items()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> Any:
        return self._model.load_state_dict(state_dict)

    def train_an_epoch(self) -> float:
        """One epoch over the training split; returns the mean loss per sample."""
        loader = self.training_loader
        if loader is None:
            raise DatasetError("no training data: call init_dataset first")
        self.train()
        total, count = 0.0, 0
        for images, targets in loader:
            images, targets = images.to(self.device), targets.to(self.device)
            loss = nn.functional.cross_entropy(self.logits(images), targets)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total, count = total + loss.item() * len(targets), count + len(targets)
        return total / max(1, count)

    def _evaluate(self, loader: DataLoader | None, what: str) -> tuple[float, float]:
        if loader is None:
            raise DatasetError(f"no {what} data under {self.dataset_dir}")
        self.eval()
        loss, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for images, targets in loader:
                images, targets = images.to(self.device), targets.to(self.device)
                out = self.logits(images)
                loss += nn.functional.cross_entropy(out, targets, reduction="sum").item()
                correct += int((out.argmax(-1) == targets).sum())
                count += len(targets)
        return loss / max(1, count), correct / max(1, count)

    def run_test(self) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on ``test/``."""
        return self._evaluate(self.testing_loader, "test")

    def run_validation(self) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on ``val/``."""
        return self._evaluate(self.validation_loader, "validation")

    def fine_tune(self, id: str, task_id: str, dataset_dir: str | os.PathLike,
                  is_initiator: bool = False, recover: bool = False, *,
                  epochs: int | None = None, result_dir: str | os.PathLike | None = None,
                  **kwargs: Any) -> Path:
        """Train on ``dataset_dir`` and save the fine-tuned folder.

        Args:
            id: this node's id; task_id: the task's id (both recorded in ``fine_tuned.meta``).
            dataset_dir: the image folder (see the module's docstring).
            is_initiator, recover: AlphaMed's platform arguments, recorded; a local run
                always starts from the loaded weights.
            epochs: local epochs (default: the constructor's); with ``val/`` the best
                epoch's weights are kept, and training stops after 10 epochs without gain.
            result_dir: where to save (default ``<hub_home>/fine_tuned/<task_id>/<id>``).

        Returns:
            The saved folder; ``AutoModel.from_pretrain(it)`` predicts as this model does.

        Raises:
            DatasetError: the dataset folder is missing, empty or laid out wrongly.
        """
        from .fedavg import AutoFedAvgScheduler

        self.id, self.task_id, self.is_initiator = id, task_id, is_initiator
        self._require_dataset(dataset_dir)
        rounds = epochs or self.epochs
        self.push_log(f"fine-tuning for up to {rounds} epoch(s) on "
                      f"{len(self.training_loader.dataset)} image(s)")  # type: ignore[union-attr,arg-type]
        AutoFedAvgScheduler(self, max_rounds=rounds).run([self])
        meta: dict[str, Any] = {"id": id, "task_id": task_id, "epochs": rounds}
        if self.testing_loader is not None:
            loss, acc = self.run_test()
            meta["test"] = {"loss": loss, "accuracy": acc}
            self.push_log(f"test: avg_loss={loss:.4f} correct_rate={acc:.4f}")
        target = Path(result_dir) if result_dir is not None else (
            settings.hub_home() / "fine_tuned" / task_id / id)
        return self.save_fine_tuned(target, meta=meta)

    def save_fine_tuned(self, directory: str | os.PathLike, *,
                        meta: dict[str, Any] | None = None) -> Path:
        """Write config (with ``id2label``), weights, card, ``preprocessor_config.json`` and
        ``fine_tuned.meta`` (the labels) into a temp folder, then move it into place."""
        out = Path(directory)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_name(out)
        try:
            self._model.save_pretrained(tmp, card={"name": _card_name(out.name),
                                                   "tasks": ["image-classification"]})
            src = self.resource_dir / PREPROCESSOR_NAME
            if src.is_file():
                shutil.copyfile(src, tmp / PREPROCESSOR_NAME)
            else:
                atomic_write_json(tmp / PREPROCESSOR_NAME, _processor_dict(self.processor),
                                  indent=2)
            atomic_write_json(tmp / FINE_TUNED_META, {"labels": self.labels,
                                                      "base": str(self.resource_dir),
                                                      **(meta or {})}, indent=2)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.push_log(f"saved the fine-tuned model to {out}")
        return out

    def fine_tuned_files_dict(self) -> dict[str, str] | None:
        return {FINE_TUNED_META: FINE_TUNED_META, PREPROCESSOR_NAME: PREPROCESSOR_NAME}


def _card_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "fine-tuned"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _default_processor(config: dict[str, Any]) -> ImageProcessor:
    given = config.get("image_size")
    size = given if isinstance(given, int) else 224
    return ImageProcessor(size={"height": size, "width": size})


def _processor_dict(proc: ImageProcessor) -> dict[str, Any]:
    data = dataclasses.asdict(proc)
    data["image_processor_type"] = data.pop("processor_type")
    return data
