"""FlagAI compatibility: what FlagAI's files and arguments leave unsaid, said once.

- FlagAI's ``config.json`` carries no ``model_type``: :func:`infer_model_type` reads it from
  the card of the model's name (``GLM-large-ch``, or a fine-tuned ``GLM-large-ch-title-
  generation``); :func:`flagai_config` states what FlagAI's classes make of its fields.
- FlagAI's task names per family (its ``ALL_TASK`` table): :func:`flagai_task` maps the ones
  whose meaning differs from hubloader's generic aliases (BERT's ``lm`` is the bare encoder).
- FlagAI's ``AutoLoader`` arguments: :func:`split_autoloader_kwargs` translates them into
  hubloader's options and config overrides, and refuses by name the ones it cannot honour;
  :func:`name_positional_args` names the ones FlagAI's signature lets callers pass by position.
- What FlagAI's zoo holds that hubloader does not load (:func:`refuse_out_of_scope`): the
  AltDiffusion pipelines and CPM-3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, UnsupportedModelError
from .flagai_vision import VISION_CONFIGS

__all__ = ["infer_model_type", "flagai_config", "flagai_task", "AutoLoaderOptions", "split_autoloader_kwargs",
           "name_positional_args", "refuse_out_of_scope", "OUT_OF_SCOPE_MODELS"]

logger = logging.getLogger(__name__)

# (family, FlagAI task) -> hubloader's canonical task, where the generic alias means otherwise
_FLAGAI_TASKS: dict[tuple[str, str], str] = {
    ("bert", "lm"): "base",
    ("roberta", "lm"): "base",
    ("glm", "lm"): "base",
    ("alm", "lm"): "base",
    ("gpt2", "seq2seq"): "text-generation",
    ("cpm", "seq2seq"): "text-generation",
    ("opt", "seq2seq"): "text-generation",
    ("galactica", "seq2seq"): "text-generation",
    ("t5", "lm"): "text2text-generation",
}


# FlagAI's model-hub name prefixes (its MODEL_DICT) → family, for the names without a card
_FLAGAI_NAME_FAMILIES: tuple[tuple[str, str], ...] = (
    ("vit-", "vit"), ("swinv1-", "swin"), ("swinv2-", "swinv2"), ("clip-", "clip"),
    ("altclip-", "altclip"), ("eva-clip", "eva_clip"),
)


def infer_model_type(name: str | None) -> str | None:
    """The family of a model whose ``config.json`` has no ``model_type``: the card of
    ``name``, or of its longest prefix naming a card (FlagAI's fine-tuned ``<model>-<task>``
    folders), else the family FlagAI's own name table gives the name's prefix (``vit-large-
    p32-384``); ``None`` when neither tells.

    The config's fields are not guessed from: a wrong guess would load weights into the wrong
    family, and the error says to add ``model_type``.
    """
    if not name:
        return None
    from ..catalogue.cards import find_card

    parts = name.strip().split("-")
    for end in range(len(parts), 0, -1):
        card = find_card("-".join(parts[:end]))
        if card is not None:
            return card.architecture
    lowered = name.strip().lower()  # FlagAI's model-hub names without a card of their own
    return next((family for prefix, family in _FLAGAI_NAME_FAMILIES
                 if lowered.startswith(prefix)), None)


def flagai_config(data: dict[str, Any], model_type: str) -> dict[str, Any]:
    """A FlagAI ``config.json`` (no ``model_type``) with FlagAI's meaning made explicit:
    FlagAI's T5 keeps its LM head apart from the embeddings and unscaled, whatever
    ``tie_word_embeddings`` says; FlagAI's vision and CLIP configs use timm's and OpenAI's
    field names (:mod:`hubloader.load.flagai_vision`)."""
    if model_type.lower() == "t5":
        return {**data, "tie_word_embeddings": False}
    translate = VISION_CONFIGS.get(model_type.lower())
    return translate(data) if translate is not None else data


def flagai_task(task: str, model_type: str) -> str:
    """``task`` as FlagAI means it for ``model_type`` (``lm`` on BERT is the encoder)."""
    norm = task.strip().lower().replace("_", "-")
    return _FLAGAI_TASKS.get((model_type.lower(), norm), task)


@dataclass
class AutoLoaderOptions:
    """FlagAI's ``AutoLoader`` arguments, translated."""

    load_weights: bool = True
    inference_mode: bool = True
    model_max_length: int | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"AutoLoader: {name} must be True or False, got {value!r}")
    return value


def split_autoloader_kwargs(kwargs: dict[str, Any]) -> AutoLoaderOptions:
    """FlagAI's keyword arguments → :class:`AutoLoaderOptions`; what remains are config
    overrides (validated later by the config class, which names any it does not know).

    ``class_num``, ``target_size`` and ``num_classes`` (FlagAI's vision models) are
    ``num_labels``; ``load_pretrain_params=False`` and ``only_download_config=True`` build fresh weights from the config; ``use_cache`` and
    ``low_cpu_mem_usage`` are what hubloader does anyway (generation always caches, loading
    always goes through the meta device).

    Raises:
        ConfigError: an argument hubloader cannot honour, named, or contradicting ones.
    """
    kw = dict(kwargs)
    opts = AutoLoaderOptions()
    if "load_pretrain_params" in kw:
        opts.load_weights = _flag("load_pretrain_params", kw.pop("load_pretrain_params"))
    if "only_download_config" in kw and _flag("only_download_config", kw.pop("only_download_config")):
        opts.load_weights = False
    if "inference_mode" in kw:
        opts.inference_mode = _flag("inference_mode", kw.pop("inference_mode"))
    for name in ("use_cache", "low_cpu_mem_usage"):
        if name in kw:
            _flag(name, kw.pop(name))
    if "model_max_length" in kw:
        value = kw.pop("model_max_length")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"AutoLoader: model_max_length must be a positive int, got {value!r}")
        opts.model_max_length = value
    if kw.pop("all_devices", False):
        raise ConfigError("AutoLoader: all_devices=True (spreading a model over every GPU) is not "
                          "supported; load on one device with device=")
    for name in ("lora_dir", "qlora_dir", "adapter_dir", "quantization_config"):
        if kw.get(name) is not None:
            raise ConfigError(f"AutoLoader: {name} is not supported by hubloader (no adapters or "
                              "quantization); load the base model and apply it with its own library")
        kw.pop(name, None)
    labels = {n: kw.pop(n) for n in ("class_num", "target_size", "num_classes", "num_labels")
              if n in kw}
    if len(set(map(repr, labels.values()))) > 1:
        raise ConfigError(f"AutoLoader: {', '.join(f'{k}={v!r}' for k, v in labels.items())} "
                          "disagree; give the label count once")
    if labels:
        kw["num_labels"] = next(iter(labels.values()))
    opts.config_overrides = kw
    return opts


# FlagAI's AutoLoader parameters after model_dir, in its signature's order
_POSITIONAL = ("only_download_config", "device", "torch_dtype", "low_cpu_mem_usage", "lora_dir",
               "qlora_dir", "inference_mode", "model_max_length", "all_devices")


def name_positional_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """FlagAI's ``AutoLoader`` arguments given by position after ``model_dir``, by name.

    Raises:
        ConfigError: more of them than FlagAI's signature has, or one also given by keyword.
    """
    if len(args) > len(_POSITIONAL):
        raise ConfigError(f"AutoLoader takes at most {3 + len(_POSITIONAL)} positional arguments "
                          f"(task_name, model_name, model_dir, {', '.join(_POSITIONAL)}); got "
                          f"{3 + len(args)}")
    named = dict(zip(_POSITIONAL, args))
    twice = sorted(set(named) & set(kwargs))
    if twice:
        raise ConfigError(f"AutoLoader got {', '.join(twice)} both by position and by keyword")
    return named


_DIFFUSION = ("AltDiffusion is a latent-diffusion pipeline (text encoder, UNet, VAE, scheduler), "
              "the diffusers library's job, not one network hubloader loads: use diffusers' "
              "Stable Diffusion pipelines with BAAI's AltDiffusion weights from the Hugging Face "
              "hub (BAAI/AltDiffusion, BAAI/AltDiffusion-m9, BAAI/AltDiffusion-m18); hubloader "
              "loads AltCLIP, its text encoder")
_CPM3 = ("CPM-3 needs BMTrain (the bmtrain package), which runs only on CUDA GPUs: use FlagAI "
         "itself, or OpenBMB's ModelCenter, on a GPU machine; for Chinese generation hubloader "
         "loads CPM-large-ch (FlagAI's cpm_lm)")
#: FlagAI's model names (lowercase) hubloader refuses, and why
OUT_OF_SCOPE_MODELS: dict[str, str] = {
    "altdiffusion": _DIFFUSION, "altdiffusion-m9": _DIFFUSION, "altdiffusion-m18": _DIFFUSION,
    "cpm3": _CPM3, "cpm3-train": _CPM3,
}
# FlagAI's task names that only those models serve
_OUT_OF_SCOPE_TASKS = {"text2img": _DIFFUSION}


def refuse_out_of_scope(task: str | None, model_name: Any) -> None:
    """Raise for FlagAI's models (or tasks) hubloader deliberately does not load.

    Raises:
        UnsupportedModelError: why, and what to use instead.
    """
    name = str(model_name).strip().lower() if model_name else ""
    why = OUT_OF_SCOPE_MODELS.get(name)  # FlagAI's names; a directory or URI is the user's
    if why is None and task is not None:
        why = _OUT_OF_SCOPE_TASKS.get(task.strip().lower())
    if why is not None:
        raise UnsupportedModelError(f"{model_name!r} ({task or 'any task'}): {why}")
