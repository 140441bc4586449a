"""``AutoLoader``: task name + model name → model, tokenizer and config, with every check done
at construction (unknown task or model fails here, naming close matches)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .cards import find_card
from .config import ModelConfig
from .errors import ConfigError
from .modeling import BaseModel
from .names import parse_model_name
from .registry import resolve_task

__all__ = ["AutoLoader"]


class AutoLoader:
    """Load the model serving ``task_name`` for ``model_name`` (FlagAI's AutoLoader).

    Args:
        task_name: a task or alias (``"text-classification"``, ``"ner"``, ``"embedding"``...).
        model_name: a card name, local directory or URI.
        model_dir: FlagAI's ``download_path``: files live in ``<model_dir>/<model_name>/``.
        revision, offline, device, torch_dtype, strict, trust_remote_code: as in
            ``BaseModel.from_pretrain``.
        **config_overrides: validated config changes (e.g. ``num_labels=3``).

    Raises:
        UnknownTaskError, ModelNotFoundError: at construction, with close matches.

    Example:
        >>> loader = AutoLoader("text-classification", model_name="bert-base-en", num_labels=3)
        >>> model, tok = loader.get_model(), loader.get_tokenizer()
    """

    def __init__(self, task_name: str, model_name: str | os.PathLike | None = None,
                 model_dir: str | os.PathLike | None = None, *, revision: str | None = None,
                 offline: bool | None = None, device: str | torch.device = "cpu",
                 torch_dtype: str | torch.dtype | None = None, strict: bool = True,
                 trust_remote_code: bool | str = False, **config_overrides: Any):
        if model_name is None:
            raise ConfigError("AutoLoader needs model_name: a card name, directory or URI")
        from .weights import resolve_device

        device = resolve_device(device)
        resolve_task(task_name)  # an unknown task fails before anything is fetched
        ref = parse_model_name(model_name, revision=revision)
        card = find_card(ref.name) if ref.kind == "card" else None
        if card is not None:  # a task the family cannot serve fails before anything is fetched
            resolve_task(task_name, card.architecture)
        from .resolve import resolve_model_dir

        self.model_dir: Path = resolve_model_dir(model_name, download_path=model_dir,
                                                 revision=revision, offline=offline)
        self._tokenizer: Any = None
        self._processor: Any = None
        self._model = BaseModel._load_dir(self.model_dir, task=task_name, device=device,
                                          torch_dtype=torch_dtype, strict=strict,
                                          trust_remote_code=trust_remote_code,
                                          overrides=config_overrides)
        self.card = card
        self.model_class: type[BaseModel] | None = None  # None: the package's own code built it
        self.task: str = resolve_task(task_name)
        if isinstance(self._model, BaseModel):
            self.model_class = type(self._model)
            self.task = resolve_task(task_name, self._model.config.model_type)

    @property
    def is_vision(self) -> bool:
        """Whether the model takes ``pixel_values`` (then :meth:`get_processor` preprocesses)."""
        return getattr(self.model_class, "input_rank", 2) == 4

    def get_model(self):
        """The loaded model (eval mode)."""
        return self._model

    def get_config(self) -> ModelConfig | Any:
        """The model's config (for a code package's own model, its ``config`` attribute)."""
        if isinstance(self._model, BaseModel):
            return self._model.config
        return getattr(self._model, "config", None)

    def get_tokenizer(self):
        """The model's tokenizer, built on first call.

        Raises:
            TokenizerError: the model has no tokenizer files, or they are corrupt, or it is a
                vision model (use :meth:`get_processor`).
        """
        if self.is_vision:
            from .errors import TokenizerError

            raise TokenizerError(f"{type(self._model).__name__} takes images, not text: use "
                                 "get_processor() for its image processor")
        if self._tokenizer is None:
            from .tokenization import load_tokenizer

            self._tokenizer = load_tokenizer(self.model_dir)
        return self._tokenizer

    def get_processor(self):
        """What turns raw input into model input: the image processor (from
        ``preprocessor_config.json``) for vision models, else the tokenizer.

        Raises:
            ConfigError: a vision model without a valid ``preprocessor_config.json``.
            TokenizerError: a text model without usable tokenizer files.
        """
        if not self.is_vision:
            return self.get_tokenizer()
        if self._processor is None:
            from .preprocessing import load_image_processor

            self._processor = load_image_processor(self.model_dir)
        return self._processor
