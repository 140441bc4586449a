"""``AutoLoader``: task name + model name → model, tokenizer and config, with every check done
at construction (unknown task or model fails here, naming close matches)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import settings
from .catalogue.cards import find_card
from .load.config import ModelConfig, read_config_file
from .errors import ConfigError
from .names import parse_model_name
from .load.registry import get_model_class, import_families, resolve_task

if TYPE_CHECKING:  # torch imports while the files are fetched, not before
    import torch

__all__ = ["AutoLoader"]


class AutoLoader:
    """Load the model serving ``task_name`` for ``model_name`` (FlagAI's AutoLoader, argument
    for argument).

    Args:
        task_name: a task or alias (``"text-classification"``, ``"ner"``, ``"embedding"``...),
            FlagAI's names included (``"lm"``, ``"cls"``, ``"title-generation"``, ``"ner-crf"``...).
        model_name: a card name (case-insensitive), local directory or URI.
        model_dir: FlagAI's ``download_path``: files live in ``<model_dir>/<model_name>/``.
            Default: FlagAI's ``./checkpoints/`` where it holds the model, else the cache.
        *flagai_args: FlagAI's positional arguments after ``model_dir``, in its order:
            ``only_download_config, device, torch_dtype, low_cpu_mem_usage, lora_dir,
            qlora_dir, inference_mode, model_max_length, all_devices``.
        revision, offline, device, torch_dtype, strict, trust_remote_code: as in
            ``BaseModel.from_pretrain``.
        **kwargs: FlagAI's arguments (``class_num``/``target_size`` = ``num_labels``,
            ``load_pretrain_params``, ``only_download_config``, ``inner_dim``, ``use_cache``,
            ``model_max_length``, ``inference_mode``...; see :mod:`hubloader.load.flagai_rules`), then
            validated config changes (e.g. ``num_labels=3``).

    Raises:
        UnknownTaskError, ModelNotFoundError: at construction, with close matches.
        UnsupportedModelError: FlagAI's AltDiffusion and CPM-3 models, with what to use.
        ConfigError: an argument hubloader cannot honour, named.

    Example:
        >>> loader = AutoLoader("text-classification", model_name="bert-base-en", num_labels=3)
        >>> model, tok = loader.get_model(), loader.get_tokenizer()
    """

    def __init__(self, task_name: str = "lm", model_name: str | os.PathLike | None = None,
                 model_dir: str | os.PathLike | None = None, *flagai_args: Any,
                 revision: str | None = None,
                 offline: bool | None = None, device: str | torch.device = "cpu",
                 torch_dtype: str | torch.dtype | None = None, strict: bool = True,
                 trust_remote_code: bool | str = False, **kwargs: Any):
        from .load.flagai_rules import (flagai_task, infer_model_type, name_positional_args,
                                        refuse_out_of_scope, split_autoloader_kwargs)

        if model_name is None:
            raise ConfigError("AutoLoader needs model_name: a card name, directory or URI")
        refuse_out_of_scope(task_name, model_name)
        if flagai_args:  # FlagAI's signature: only_download_config, device, torch_dtype, ...
            named = name_positional_args(flagai_args, kwargs)
            device = named.pop("device", device)
            torch_dtype = named.pop("torch_dtype", torch_dtype)
            kwargs.update(named)
        opts = split_autoloader_kwargs(kwargs)
        config_overrides = opts.config_overrides
        resolve_task(task_name)  # an unknown task fails before anything is fetched
        ref = parse_model_name(model_name, revision=revision)
        card = find_card(ref.name) if ref.kind == "card" else None
        from .load.resolve import fetch_for_load, flagai_default_dir, prefetch_model_dir

        if model_dir is None:  # FlagAI's default model_dir, if it holds the model
            model_dir = flagai_default_dir(model_name, revision=revision)
        patterns = None if opts.load_weights else list(settings.NO_WEIGHT_PATTERNS)

        # the transfer runs while the model classes, and torch with them, import
        prefetch_model_dir(model_name, download_path=model_dir, revision=revision,
                           offline=offline, allow_patterns=patterns)
        import_families()
        from .load.weights import resolve_device  # needs torch: checked once it is imported

        device = resolve_device(device)
        if card is not None and card.architecture:  # a task the family cannot serve fails
            # before anything is fetched
            self.task = resolve_task(flagai_task(task_name, card.architecture), card.architecture)
        self.model_dir: Path
        self.model_dir, staged = fetch_for_load(
            model_name, device=device, torch_dtype=torch_dtype, download_path=model_dir,
            revision=revision, offline=offline, allow_patterns=patterns)
        self._tokenizer: Any = None
        self._processor: Any = None
        self._model_max_length = opts.model_max_length
        from .load.remote_code import find_code_entry

        if find_code_entry(self.model_dir) is not None:  # the package's own code builds it
            self.task, self.card, self.model_class = resolve_task(task_name), card, None
            self.model_type = None
            # the from_pretrain path: it refuses what the package's code cannot be given
            from .load.modeling import BaseModel

            self._model: Any = BaseModel._load_dir(
                self.model_dir, device=device, torch_dtype=torch_dtype, strict=strict,
                trust_remote_code=trust_remote_code, overrides=config_overrides,
                load_weights=opts.load_weights, inference_mode=opts.inference_mode,
                staged=staged)
            return
        config_path = self.model_dir / settings.CONFIG_NAME
        data = read_config_file(config_path)
        model_type = data.get("model_type")
        if model_type is None:  # FlagAI's configs: the card of the name tells
            model_type = (card.architecture if card is not None
                          else infer_model_type(self.model_dir.name))
        if not isinstance(model_type, str):
            raise ConfigError(f"{config_path} has no string 'model_type' and no card is named "
                              f"like {self.model_dir.name!r}; add one (e.g. \"bert\")")
        if card is not None and card.architecture and model_type.lower() in \
                get_model_class(card.architecture).config_class.accepted_types():
            model_type = card.architecture  # CPM-Generate's "gpt2" is CPM, with CPM's tokenizer
        self.model_type = model_type.lower()
        self.task = resolve_task(flagai_task(task_name, model_type), model_type)
        self.card = card
        self.model_class = get_model_class(model_type, self.task)
        # the from_pretrain path, on the directory already resolved
        self._model = self.model_class._load_dir(
            self.model_dir, device=device, torch_dtype=torch_dtype, strict=strict,
            overrides=config_overrides, load_weights=opts.load_weights,
            inference_mode=opts.inference_mode, staged=staged)
        if card is not None:  # get_description() reads the card the model was loaded by
            self._model.card_name = card.name
        if self.model_type in ("glm", "alm"):
            self._fill_glm_token_ids()

    def _fill_glm_token_ids(self) -> None:
        """GLM's generate() needs the blank and piece tokens, which THUDM's and FlagAI's
        config.json leave to the tokenizer."""
        from .errors import TokenizerError

        try:
            tok = self.get_tokenizer()
        except TokenizerError:
            return
        cfg = self._model.config
        for field, name in (("mask_token_id", "mask"), ("smask_token_id", "sMASK"),
                            ("gmask_token_id", "gMASK"), ("sop_token_id", "sop"),
                            ("eop_token_id", "eop"), ("pad_token_id", "pad")):
            if getattr(cfg, field, None) is None and name in tok.command_name_map:
                setattr(cfg, field, tok.get_command_id(name))

    @property
    def is_vision(self) -> bool:
        """Whether the model takes ``pixel_values`` (then :meth:`get_processor` preprocesses)."""
        return getattr(self.model_class, "input_rank", 2) == 4

    def get_model(self):
        """The loaded model (eval mode)."""
        return self._model

    def get_config(self) -> ModelConfig | Any:
        """The model's config (for a code package's own model, its ``config`` attribute)."""
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
            from .text.tokenizer import load_tokenizer

            self._tokenizer = load_tokenizer(self.model_dir, model_type=self.model_type)
            if self._model_max_length is not None:
                self._tokenizer.model_max_length = self._model_max_length
        return self._tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
        """Write the model (``BaseModel.save_pretrained``, ``**kwargs`` passed on) and, for a
        text model, its tokenizer, so that ``AutoLoader(task, save_directory)`` reloads both.

        Raises:
            TokenizerError: a text model whose tokenizer files are missing or corrupt.
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        # the tokenizer first: the model's card, written last, then lists its files too
        if not self.is_vision:
            self.get_tokenizer().save_pretrained(out)
        elif (self.model_dir / "preprocessor_config.json").is_file():
            import shutil

            shutil.copyfile(self.model_dir / "preprocessor_config.json",
                            out / "preprocessor_config.json")
        return Path(self._model.save_pretrained(out, **kwargs))

    @property
    def is_multimodal(self) -> bool:
        """Whether the model takes both text and images (CLIP's family)."""
        return self.task == "zero-shot-image-classification"

    def get_image_processor(self):
        """The image processor: ``preprocessor_config.json``'s, else, for a FlagAI CLIP folder
        (which has none), CLIP's preprocessing at the model's image size.

        Raises:
            ConfigError: no valid ``preprocessor_config.json`` and no CLIP model to size one.
        """
        if self._processor is None:
            from .vision.preprocessing import PREPROCESSOR_NAME, clip_image_processor, \
                load_image_processor

            vision = getattr(self.get_config(), "vision", None)
            if not (self.model_dir / PREPROCESSOR_NAME).is_file() and vision is not None:
                size = vision.image_size
                self._processor = clip_image_processor(size if isinstance(size, int) else size[0])
            else:
                self._processor = load_image_processor(self.model_dir)
        return self._processor

    def get_transform(self):
        """FlagAI's ``get_transform()``: for CLIP and EVA-CLIP a callable turning one image into
        a ``[3, H, W]`` tensor (FlagAI's ``clip_transform``); for other models the image
        processor (``transform(image)["pixel_values"]``, as FlagAI's AltCLIP processor).

        Raises:
            ConfigError: as :meth:`get_image_processor`.
        """
        processor = self.get_image_processor()
        if self.model_type in ("clip", "eva_clip"):
            return processor.preprocess_one
        return processor

    def get_processor(self):
        """What turns raw input into model input: the image processor (from
        ``preprocessor_config.json``) for vision models and for any package that ships that
        file, else the tokenizer.

        Raises:
            ConfigError: a vision model without a valid ``preprocessor_config.json``.
            TokenizerError: a text model without usable tokenizer files.
        """
        from .vision.preprocessing import PREPROCESSOR_NAME

        # a code package (AlphaMed's, the downstream platform's) names no class, so its
        # preprocessor_config.json is what says it takes images
        if not self.is_vision and not (self.model_dir / PREPROCESSOR_NAME).is_file():
            return self.get_tokenizer()
        return self.get_image_processor()
