"""``AutoLoader``: task name + model name → model, tokenizer and config, with every check done
at construction (unknown task or model fails here, naming close matches)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import settings
from ._gc import torch_import
from .catalogue.cards import ModelCard
from .errors import ConfigError, TokenizerError
from .load.config import ModelConfig
from .load.flagai_rules import name_positional_args, refuse_out_of_scope, split_autoloader_kwargs
from .load.plan import model_spec, plan_load
from .load.registry import known_task
from .load.resolve import FLAGAI_MODEL_DIR, prefetch_model_dir

if TYPE_CHECKING:  # torch imports while the files are fetched, not before
    import torch

    from .load.modeling import BaseModel
    from .text.glm import GLMTokenizer
    from .text.tokenizer import Tokenizer
    from .vision.preprocessing import ImageProcessor

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
        if model_name is None:
            raise ConfigError("AutoLoader needs model_name: a card name, directory or URI")
        refuse_out_of_scope(task_name, model_name)
        if flagai_args:  # FlagAI's signature: only_download_config, device, torch_dtype, ...
            named = name_positional_args(flagai_args, kwargs)
            device = named.pop("device", device)
            torch_dtype = named.pop("torch_dtype", torch_dtype)
            kwargs.update(named)
        opts = split_autoloader_kwargs(kwargs)
        known_task(task_name)  # an unknown task fails before anything is fetched
        spec = model_spec(model_name, revision=revision, download_path=model_dir,
                          default_folder=FLAGAI_MODEL_DIR)
        patterns = None if opts.load_weights else list(settings.NO_WEIGHT_PATTERNS)
        # the transfer runs while the model classes, and torch with them, import
        prefetch_model_dir(spec, offline=offline, allow_patterns=patterns)
        with torch_import():  # see hubloader/_gc.py
            from .load.modeling import BaseModel
        from .load.weights import resolve_device

        device = resolve_device(device)
        plan = plan_load(spec, task_name, requested=BaseModel,
                         overrides=opts.config_overrides, device=device,
                         torch_dtype=torch_dtype, offline=offline, allow_patterns=patterns)
        self.model_dir: Path = plan.model_dir
        self.task: str = plan.task if plan.task is not None else task_name  # given: resolved
        self.card: ModelCard | None = plan.card
        self.model_class: type[BaseModel[Any]] | None = plan.model_class
        self.model_type: str | None = plan.model_type
        self._tokenizer: Tokenizer | GLMTokenizer | None = None
        self._processor: ImageProcessor | None = None
        self._model_max_length = opts.model_max_length
        self._model: BaseModel[Any] = BaseModel._load_plan(
            plan, device=device, torch_dtype=torch_dtype, strict=strict,
            trust_remote_code=trust_remote_code, load_weights=opts.load_weights,
            inference_mode=opts.inference_mode)  # type: ignore[assignment]
        if self.card is not None and isinstance(self._model, BaseModel):
            # get_description() reads the card the model was loaded by
            self._model.card_name = self.card.name
        if self.model_type in ("glm", "alm"):
            self._fill_glm_token_ids()

    def _fill_glm_token_ids(self) -> None:
        """GLM's generate() needs the blank and piece tokens, which THUDM's and FlagAI's
        config.json leave to the tokenizer."""
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

    def get_model(self) -> BaseModel[Any]:
        """The loaded model (eval mode); a code package's own ``nn.Module`` is returned as it
        is, as ``BaseModel.from_pretrain`` does."""
        return self._model

    def get_config(self) -> ModelConfig | Any:
        """The model's config (for a code package's own model, its ``config`` attribute)."""
        return getattr(self._model, "config", None)

    def get_tokenizer(self) -> Tokenizer | GLMTokenizer:
        """The model's tokenizer, built on first call.

        Raises:
            TokenizerError: the model has no tokenizer files, or they are corrupt, or it is a
                vision model (use :meth:`get_processor`).
        """
        if self.is_vision:
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

    def get_image_processor(self) -> ImageProcessor:
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

    def get_transform(self) -> ImageProcessor | Callable[[Any], torch.Tensor]:
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

    def get_processor(self) -> ImageProcessor | Tokenizer | GLMTokenizer:
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
