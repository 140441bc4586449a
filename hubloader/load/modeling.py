"""``BaseModel``: the contract every model family fills, and the load path

    name → directory (resolve) → config.json (config) → class (registry) → weights → model

Families declare how checkpoint keys map onto their modules (``checkpoint_key_rules``, read
one way when loading and inverted when saving, see :mod:`hubloader.load.checkpoint_keys`), which
keys may be ignored, which head is new when a base checkpoint is loaded, and tied weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Iterator, TypeVar, cast

import torch
from torch import nn

from .. import settings
from .._gc import gc_paused
from .checkpoint_keys import invert_key_rules, rename_keys
from .config import ModelConfig
from ..catalogue.cards import find_card, load_card
from ..errors import CardError, ConfigError, WeightsError
from .features import FeaturesMixin
from ..files import atomic_write_json
from .flagai_rules import refuse_out_of_scope, split_autoloader_kwargs
from .plan import LoadPlan, model_spec, plan_load
from .remote_code import load_custom_model
from .resolve import FLAGAI_MODEL_DIR, resolve_model_dir
from .weights import (LoadReport, assign_state_dict, find_weight_files, read_state_dict,
                      resolve_device, resolve_dtype)

if TYPE_CHECKING:
    from .landing import Staging

__all__ = ["BaseModel"]

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=ModelConfig)

_INIT_FUNCS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
               "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
               "kaiming_normal_", "orthogonal_", "sparse_")
_NO_INIT_LOCK = threading.RLock()


@contextlib.contextmanager
def skip_init_on_meta() -> Iterator[None]:
    """Build modules on the meta device without running ``torch.nn.init`` functions.

    Their results would be overwritten by the checkpoint anyway, and on meta tensors some of
    them route through ``torch._refs``, which imports all of ``torch._dynamo``, a slow import.
    """
    def _noop(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    with _NO_INIT_LOCK:
        saved = {name: getattr(nn.init, name) for name in _INIT_FUNCS if hasattr(nn.init, name)}
        try:
            for name in saved:
                setattr(nn.init, name, _noop)
            with torch.device("meta"):
                yield
        finally:
            for name, fn in saved.items():
                setattr(nn.init, name, fn)


class BaseModel(FeaturesMixin, nn.Module, Generic[C]):
    """Base class of every hubloader model.

    Class attributes a family sets:
        config_class: the family's :class:`ModelConfig` subclass.
        task: the canonical task the class serves (``"base"`` for backbones); set by
            :func:`hubloader.load.registry.register_model`.
        base_model_prefix: attribute holding the backbone in head models (``"bert"``).
        checkpoint_key_rules: ``(regex, replacement)`` pairs applied in order to every
            checkpoint key (Hugging Face names → ours).
        checkpoint_write_rules: the pairs ``save_pretrained`` applies (ours → transformers'
            names); ``None`` inverts ``checkpoint_key_rules`` as a whole. Families with
            read-only aliases set it to :func:`~hubloader.load.checkpoint_keys.invert_key_rules`
            of the invertible part.
        ignore_checkpoint_keys: regexes of checkpoint keys to drop without complaint.
        discard_checkpoint_keys: regexes of the family's other heads' keys, dropped and
            reported in ``load_report.discarded`` (an MLM checkpoint into a classifier).
        new_head_keys: regexes of keys a head may initialize fresh from a base checkpoint.
        tied_weights: ``{target: source}`` parameter names tied after loading.

    Every model also carries the feature-extraction interface (:class:`FeaturesMixin`) over the
    entries its family declares in ``feature_entries()``.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    task: ClassVar[str] = "base"
    base_model_prefix: ClassVar[str] = ""
    checkpoint_key_rules: ClassVar[tuple[tuple[str, str], ...]] = ()
    checkpoint_write_rules: ClassVar[tuple[tuple[str, str], ...] | None] = None
    ignore_checkpoint_keys: ClassVar[tuple[str, ...]] = ()
    discard_checkpoint_keys: ClassVar[tuple[str, ...]] = ()
    new_head_keys: ClassVar[tuple[str, ...]] = ()
    tied_weights: dict[str, str] = {}  # a family may set its own per instance

    def __init__(self, config: C):
        super().__init__()
        self.config: C = config
        self.load_report: LoadReport | None = None
        self.model_dir: Path | None = None
        self.card_name: str | None = None  # the card it was loaded by, if any
        self.merged_adapter: list[str] = []  # weights a LoRA adapter changed, if one was merged

    # -- hooks families may override ------------------------------------------------------
    @classmethod
    def convert_checkpoint(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename checkpoint keys with ``checkpoint_key_rules`` (override for tensor surgery)."""
        return rename_keys(state, cls.checkpoint_key_rules)

    @classmethod
    def export_checkpoint(cls, state: dict[str, torch.Tensor],
                          config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`convert_checkpoint`: our names → the publisher's (override
        with the inverse tensor surgery). ``config`` is the model's, for layouts that depend
        on it."""
        rules = cls.checkpoint_write_rules
        return rename_keys(state, invert_key_rules(cls.checkpoint_key_rules)
                           if rules is None else rules)

    def init_module_weights(self, module: nn.Module) -> None:
        """Initialize one module's own parameters (used for fresh heads and random init)."""
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()

    def tie_weights(self) -> None:
        if not getattr(self.config, "tie_word_embeddings", True):
            return
        for target, source in self.tied_weights.items():
            src = self.get_parameter(source)
            owner_name, _, attr = target.rpartition(".")
            owner = self.get_submodule(owner_name) if owner_name else self
            setattr(owner, attr, src)

    def init_weights(self) -> None:
        """Initialize every module (random init), then tie weights."""
        for module in self.modules():
            self.init_module_weights(module)
        self.tie_weights()

    def _module_prefix(self) -> str:
        """``"backbone."`` in a head model, ``""`` in a backbone (paths of feature entries)."""
        prefix = self.base_model_prefix
        return f"{prefix}." if prefix and isinstance(getattr(self, prefix, None), nn.Module) else ""

    # -- outputs --------------------------------------------------------------------------
    @staticmethod
    def _outputs(logits: torch.Tensor, hidden_states: Any, loss: torch.Tensor | None = None,
                 **extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"logits": logits, "hidden_states": hidden_states}
        if loss is not None:
            out["loss"] = loss
        out.update(extra)
        return out

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def init_from_json(cls, config_file: str | os.PathLike, **overrides: Any) -> "BaseModel[Any]":
        """Build a randomly initialized model from a ``config.json`` plus overrides.

        Raises:
            ConfigError: a bad file, or an override the config does not know (valid keys listed).

        Example:
            >>> m = BertModel.init_from_json("config.json", num_hidden_layers=2)
        """
        plan = plan_load(Path(config_file), requested=cls, overrides=overrides)
        assert plan.model_class is not None and plan.config is not None  # a config file: native
        with gc_paused():
            return plan.model_class.from_config(plan.config)

    @classmethod
    def _build_on_meta(cls, config: Any, *, dtype: torch.dtype | None,
                       device: str | torch.device, where: str) -> "BaseModel[Any]":
        """Build on the meta device (no memory) and refuse a model too big to allocate."""
        from .sizing import check_model_size

        try:
            with skip_init_on_meta():
                model = cls(config)
        except (RuntimeError, ValueError, OverflowError, MemoryError) as err:
            raise ConfigError(f"{where}: {cls.__name__} cannot be built from this config "
                              f"({err}); check its sizes") from err
        check_model_size(model, dtype=dtype, device=device, where=where)
        return model

    @classmethod
    def from_config(cls, config: Any) -> "BaseModel[Any]":
        """A randomly initialized model of ``config`` (an instance of ``cls.config_class``)."""
        cls._build_on_meta(config, dtype=None, device="cpu", where=f"{cls.__name__} config")
        model = cls(config)
        model.init_weights()
        return model

    @classmethod
    def from_pretrain(cls, model_name: str | os.PathLike | None = None, *,
                      download_path: str | os.PathLike | None = None, revision: str | None = None,
                      offline: bool | None = None, device: str | torch.device = "cpu",
                      torch_dtype: str | torch.dtype | None = None, strict: bool = True,
                      trust_remote_code: bool | str = False, entry: str | None = None,
                      adapter: str | os.PathLike | None = None, quantization: Any = None,
                      **config_overrides: Any) -> "BaseModel":
        """Load a pretrained model by card name, local directory or URI.

        Args:
            model_name: a card name (``"bert-base-en"``), a directory, or an ``s3://``,
                ``hf://`` or ``file://`` URI.
            download_path: FlagAI's layout: files live in ``<download_path>/<model_name>/``.
                Default: FlagAI's ``./checkpoints/`` where it holds the model, else the cache.
            revision: a revision to fetch (URIs and cards with a versioned source).
            offline: never touch the network (default: ``HUBLOADER_OFFLINE``).
            device: where the weights go (``"cpu"``, ``"cuda:0"``...).
            torch_dtype: floating dtype of the weights (default: the config's ``torch_dtype``
                or ``dtype``, so a bf16 checkpoint loads in bf16; else float32).
            strict: raise :class:`WeightsMismatchError` on missing or unexpected keys;
                with ``False`` they are logged and randomly initialized.
            trust_remote_code: a package carrying its own code (``hubconf.py``, or
                ``entry_file``/``entry_module`` in config.json) is imported only with ``True``
                (or the code's sha256); see :mod:`hubloader.load.remote_code`.
            entry: the ``hubconf.py`` entry point to build (default ``BIG_PRETRAINED_MODEL``).
            adapter: a LoRA adapter saved by ``peft`` for the transformers model of the same
                family (a directory, card name or URI), merged into the weights (see
                :mod:`hubloader.adapters`); default: the card's ``adapter`` field, if any.
            quantization: ``"int8"``, ``"int4"`` (torchao, weight-only), a torchao config
                object, or ``"bnb-int8"``/``"bnb-nf4"`` (CUDA): the linear weights are
                quantized module by module right after loading (see
                :mod:`hubloader.quantization`).
                transformers' ``dtype``, ``torch_dtype="auto"``, ``device_map``,
                ``local_files_only`` and ``attn_implementation`` are read as transformers
                reads them (see :mod:`hubloader.hf_args`).
            **config_overrides: config fields to change (validated), and FlagAI's arguments:
                ``class_num``/``target_size`` (= ``num_labels``), ``load_pretrain_params=False``
                or ``only_download_config=True`` (config and tokenizer files only, fresh
                weights), ``inference_mode``, ``use_cache`` (see :mod:`hubloader.load.flagai_rules`).

        Returns:
            The model in eval mode, with ``load_report`` and ``model_dir`` set (a
            code-carrying package returns its own ``nn.Module``, with ``model_dir`` set).

        Raises:
            ModelNotFoundError, ConfigError, WeightsError, WeightsMismatchError, SourceError,
            UntrustedCodeError (code present, not trusted; nothing ran).
        """
        from .hf_args import dispatch_over_devices, take_load_spellings

        if model_name is None:
            raise ConfigError("from_pretrain needs model_name: a card name, directory or URI")
        refuse_out_of_scope(None, model_name)
        # FlagAI's default download_path, ./checkpoints/, where it holds the model
        spec = model_spec(model_name, revision=revision, download_path=download_path,
                          default_folder=FLAGAI_MODEL_DIR)
        spell = take_load_spellings(config_overrides, device=device, torch_dtype=torch_dtype,
                                    offline=offline)  # transformers' dtype=, device_map=...
        torch_dtype, offline = spell.torch_dtype, spell.offline
        device = resolve_device(spell.device)
        opts = split_autoloader_kwargs(config_overrides)  # FlagAI's arguments, translated
        if opts.model_max_length is not None:
            raise ConfigError("model_max_length is the tokenizer's: give it to AutoLoader")
        plan = plan_load(spec, requested=cls, overrides=opts.config_overrides, device=device,
                         torch_dtype=torch_dtype, offline=offline,
                         allow_patterns=None if opts.load_weights
                         else list(settings.NO_WEIGHT_PATTERNS))
        model = cls._load_plan(plan, device=device, torch_dtype=torch_dtype, strict=strict,
                               trust_remote_code=trust_remote_code,
                               load_weights=opts.load_weights,
                               inference_mode=opts.inference_mode, entry=entry)
        if isinstance(model, BaseModel):
            model.card_name = plan.card.name if plan.card is not None else None
            if adapter is None and plan.card is not None:
                adapter = plan.card.adapter
        if adapter is not None:
            from .adapters import merge_adapter

            if not isinstance(model, BaseModel):
                raise ConfigError(f"{model_name}: a package with its own code cannot take an "
                                  "adapter; apply it with peft to the returned model")
            adapter_dir = resolve_model_dir(adapter, revision=None, offline=offline)
            model.merged_adapter = merge_adapter(model, adapter_dir)
        quantization = quantization if quantization is not None else spell.quantization
        if quantization is not None:
            from .quantization import quantize_model

            quantize_model(model, quantization, device=device)
        if spell.device_map is not None:
            model = dispatch_over_devices(model, spell.device_map)
        return cast("BaseModel", model)  # a code package's own module, as documented above

    @classmethod
    def _load_plan(cls, plan: LoadPlan, *, device: str | torch.device = "cpu",
                   torch_dtype: str | torch.dtype | None = None, strict: bool = True,
                   trust_remote_code: bool | str = False, load_weights: bool = True,
                   inference_mode: bool = True, entry: str | None = None) -> nn.Module:
        """Build what ``plan`` decided: the package's own code when it carries some, else
        ``plan.model_class`` with ``plan.config``. ``load_weights=False``: fresh weights
        (FlagAI's ``load_pretrain_params=False``); ``inference_mode=False``: returned in train
        mode; ``entry``: the ``hubconf.py`` entry."""
        device = resolve_device(device)
        t0 = time.perf_counter()
        with gc_paused():  # see hubloader/_gc.py
            if plan.model_class is None:
                model: nn.Module = load_custom_model(plan.model_dir,
                                                     trust_remote_code=trust_remote_code,
                                                     entry_name=entry, device=str(device),
                                                     strict=strict)
            else:
                model = cls._load_native(plan, device=device, torch_dtype=torch_dtype,
                                         strict=strict, load_weights=load_weights)
        if not inference_mode:
            model.train()
        logger.info("loaded %s from %s in %.3f s", type(model).__name__, plan.model_dir,
                    time.perf_counter() - t0)
        return model

    @staticmethod
    def _load_native(plan: LoadPlan, *, device: str | torch.device,
                     torch_dtype: str | torch.dtype | None, strict: bool,
                     load_weights: bool = True) -> "BaseModel":
        target, config, model_dir = plan.model_class, plan.config, plan.model_dir
        assert target is not None and config is not None  # a native plan has both
        config_path = model_dir / settings.CONFIG_NAME
        staged = plan.staged
        # transformers 5 writes the weights' dtype as `dtype`, earlier versions `torch_dtype`
        declared = config.torch_dtype or config.extra.get("dtype")
        auto = isinstance(torch_dtype, str) and torch_dtype == "auto"  # transformers' spelling
        dtype = resolve_dtype(torch_dtype if torch_dtype is not None and not auto else declared)
        if not load_weights:  # FlagAI's load_pretrain_params=False: fresh weights
            model = target.from_config(config).to(device=device, dtype=dtype)
            model.model_dir = model_dir
            return model.eval()
        files = find_weight_files(model_dir)  # before building: fail fast on a missing file
        state = None
        if auto and dtype is None:  # "auto" with no declared dtype: the checkpoint's own
            state = read_state_dict(files, staged.take if staged is not None else None)
            dtype = next((t.dtype for t in state.values() if t.is_floating_point()), None)
        model = target._build_on_meta(config, dtype=dtype or torch.float32, device=device,
                                      where=str(config_path))
        if state is None:
            state = read_state_dict(files, staged.take if staged is not None else None)
        report = LoadReport(files=[f.name for f in files.files],
                            read_as_landed=list(staged.served) if staged is not None else [])
        assign_state_dict(model, state, strict=strict, device=device,
                          dtype=dtype or torch.float32, report=report)
        model.load_report, model.model_dir = report, model_dir
        return model.eval()

    @classmethod
    def from_pretrained(cls, load_weights: str | os.PathLike | None = None, *args: Any,
                        **kwargs: Any) -> "BaseModel":
        """The downstream-platform constructor: :meth:`from_pretrain` on ``load_weights``.

        Args:
            load_weights: a model directory, a weight file inside one (its directory is
                loaded), a card name or a URI.
            *args, **kwargs: passed to :meth:`from_pretrain`.

        Raises:
            ConfigError: ``load_weights`` is ``None`` (a hubloader class has no default
                weights; a package's own subclass may supply them).

        Example:
            >>> model = ViTModel.from_pretrained("package/weights")
        """
        if load_weights is None:
            raise ConfigError(f"{cls.__name__}.from_pretrained needs load_weights: a model "
                              "directory, a weight file in one, a card name or a URI")
        path = Path(load_weights)
        if path.is_file():
            path = path.parent
        return cls.from_pretrain(str(path) if path.exists() else load_weights, *args, **kwargs)

    def get_description(self) -> str:
        """What this model is: the body of the card it was loaded by, else of the model card
        (``README.md``) beside its files, else that README's text, else a summary of its class
        and config.

        Example:
            >>> print(model.get_description())
        """
        card = find_card(self.card_name) if self.card_name else None
        if card is not None and card.description:
            return card.description
        readme = self.model_dir / settings.CARD_NAME if self.model_dir else None
        if readme is not None and readme.is_file():
            try:
                card = load_card(readme)
                if card.description:
                    return card.description
                return f"{card.display_name}: {', '.join(card.tasks)} ({card.license})"
            except CardError:  # a plain README (e.g. a Hugging Face download) is still prose
                text = readme.read_text(encoding="utf-8", errors="replace").strip()
                if text:
                    return text
        import json

        cfg = json.dumps(self.config.to_dict(), sort_keys=True, default=str)
        return (f"{type(self).__name__} ({self.config.model_type}, {self.task}), "
                f"{self.num_parameters():,} parameters; config: {cfg}")

    # -- saving -----------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, *,
                        max_shard_size: int | str | None = None,
                        card: dict[str, Any] | None = None, card_body: str | None = None,
                        safe_serialization: bool = True) -> Path:
        """Write ``config.json``, the weights (``model.safetensors``, or shards plus
        ``model.safetensors.index.json`` when ``max_shard_size`` is given) and last a model card ``README.md`` listing every file with its size and sha256.

        The directory is in transformers' layout for the class saved: its key names (see
        :meth:`checkpoint_state`), ``architectures`` naming this class, ``model_type``, and
        ``dtype`` as transformers 5 writes it, so ``transformers.AutoModel...from_pretrained``
        loads it with no missing or unexpected keys.

        Args:
            save_directory: the directory (created if needed).
            max_shard_size: bytes or a string such as ``"500MB"`` (``"5GiB"``: binary units,
                ``"5Gb"``: bits, as transformers reads it); ``None`` writes one file.
            safe_serialization: transformers' switch; only ``True`` (safetensors) is written.
            card: card fields (``name``, ``tasks``, ``license``, ``author``...); defaults: the
                directory name, this class's task, ``license: other``, ``author: unknown``,
                ``architecture``: the config's ``model_type``.
            card_body: Markdown after the front matter.

        Returns:
            The directory written.

        Raises:
            ConfigError: a bad ``max_shard_size``. CardError: a bad ``card`` field.

        Example:
            >>> model.save_pretrained("out/tiny-bert", max_shard_size="10MB",
            ...                       card={"license": "apache-2.0", "author": "me"})
        """
        from .saving import write_card, write_safetensors

        if safe_serialization is not True:
            raise ConfigError("save_pretrained(safe_serialization=False): hubloader writes "
                              "safetensors only (as transformers 5 does); drop the argument")
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        state = self.checkpoint_state()
        cfg = self.config.to_dict()
        cfg["architectures"] = [type(self).__name__]
        dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
        if len(dtypes) == 1:
            cfg["dtype"] = str(dtypes.pop()).removeprefix("torch.")
        write_safetensors(state, out, max_shard_size=max_shard_size)
        atomic_write_json(out / settings.CONFIG_NAME, cfg, indent=2)
        if isinstance(getattr(type(self), "generation_config", None), property):
            getattr(self, "generation_config").save_pretrained(out)  # a generative model
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", out.resolve().name).strip("-.") or "model"
        meta = {"name": name, "tasks": [self.task], "license": "other", "author": "unknown",
                "architecture": self.config.model_type, "framework": "PyTorch"}
        meta.update(card or {})
        body = card_body if card_body is not None else (
            f"# {meta['name']}\n\n{type(self).__name__} ({self.num_parameters():,} parameters), "
            "saved by hubloader.\n")
        write_card(out, meta, body=body)
        return out

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None,
                    token: str | None = None, endpoint_url: str | None = None,
                    max_shard_size: int | str | None = None, progress: bool = True,
                    card: dict[str, Any] | None = None) -> Any:
        """Save this model (:meth:`save_pretrained`) and upload it with
        :func:`hubloader.push`, as transformers' ``push_to_hub``.

        Args:
            repo_id: ``"org/name"`` (a Hugging Face hub repository, ``hf://org/name@branch``
                works too) or ``"s3://bucket/prefix"``.
            commit_message, token, endpoint_url, progress: as :func:`hubloader.push`.
            max_shard_size, card: as :meth:`save_pretrained`.

        Returns:
            The :class:`~hubloader.publish.PushResult`.

        Raises:
            What :meth:`save_pretrained` and :func:`hubloader.push` raise.

        Example:
            >>> model.push_to_hub("me/tiny-bert")
        """
        import tempfile

        from ..publish import push  # publishing sits above loading: imported on use

        uri = repo_id if "://" in repo_id else f"hf://{repo_id}"
        with tempfile.TemporaryDirectory(prefix="hubloader-push-") as tmp:
            folder = Path(tmp) / (uri.rstrip("/").rsplit("/", 1)[-1].split("@")[0] or "model")
            self.save_pretrained(folder, max_shard_size=max_shard_size, card=card)
            return push(folder, uri, progress=progress, endpoint_url=endpoint_url, token=token,
                        commit_message=commit_message)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The state dict under the publisher's key names, tied copies left out (the
        loader ties them again), as :meth:`save_pretrained` writes it.

        Raises:
            WeightsError: the family's write rules do not map back onto its own keys (a bug in
                the family's declaration; nothing was written).
        """
        tied = self.tied_weights if getattr(self.config, "tie_word_embeddings", True) else {}
        ours = {k: v for k, v in self.state_dict().items() if k not in tied}
        theirs = self.export_checkpoint(ours, self.config)
        ignore = [re.compile(p) for p in self.ignore_checkpoint_keys]
        back = [k for k in self.convert_checkpoint(theirs) if not any(p.search(k) for p in ignore)]
        if self.base_model_prefix and not self._module_prefix():  # loading a backbone strips it
            back = [k.removeprefix(f"{self.base_model_prefix}.") for k in back]
        if sorted(back) != sorted(ours):
            lost = sorted(set(ours) - set(back))[:5]
            raise WeightsError(f"{type(self).__name__}: its checkpoint write rules do not map "
                               f"back onto its keys (e.g. {lost}); fix the family's "
                               "checkpoint_key_rules/checkpoint_write_rules")
        return theirs

    # -- conveniences ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
