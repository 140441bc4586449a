"""``Trainer``: fine-tune a loaded model and save it in a form ``AutoLoader`` reloads (FlagAI's
``Trainer`` surface, for the parts that apply to one process or to ``torchrun``).

A batch is the dict ``collate_fn`` returns; it goes to the model as ``model(**batch)`` and the
model's ``loss`` is minimised (AdamW, linear warm-up then linear decay by default). Checkpoints
are model folders: ``save_dir/last/`` (every ``save_interval`` steps and at each epoch's end)
and ``save_dir/best/`` (lowest validation loss, or highest first metric), each with
``config.json``, the weights, the tokenizer, a card and ``trainer_state.json`` (+
``trainer_state.pt``: optimizer, schedule, scaler). A new ``train()`` resumes from ``last/``.

Under ``torchrun``, ``env_type="pytorchDDP"`` trains with ``DistributedDataParallel`` (NCCL on
GPUs, gloo on CPU): the sampler splits the data, gradients are averaged, so every rank ends
with the same weights; only rank 0 writes.

Example:
    >>> trainer = Trainer(env_type="pytorch", epochs=3, batch_size=16, lr=5e-5,
    ...                   save_dir="out", metric_methods=None)
    >>> trainer.train(model, train_dataset=train, valid_dataset=valid, collate_fn=collate,
    ...               metric_methods=[["acc", accuracy]], tokenizer=tok)
    >>> AutoLoader("classification", model_name="out/best").get_model()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from .checkpoints import TrainerState, load_checkpoint, save_checkpoint
from ..errors import ConfigError, InputError

__all__ = ["Trainer", "TrainerState", "accuracy_metric"]

logger = logging.getLogger(__name__)

ENV_TYPES = ("pytorch", "pytorchDDP")
_DROPPED_KEYS = ("uid", "meta", "mode")  # bookkeeping fields FlagAI's collators add
Metric = Callable[..., float]


def accuracy_metric(predictions: torch.Tensor, labels: torch.Tensor, meta: Any = None) -> float:
    """FlagAI's accuracy: the share of ``argmax(predictions)`` equal to ``labels``."""
    if predictions.shape != labels.shape:
        predictions = predictions.argmax(dim=-1)
    return float((predictions == labels).float().mean().item()) if labels.numel() else 0.0


class Trainer:
    """FlagAI's ``Trainer`` for hubloader models.

    Args:
        env_type: ``"pytorch"`` (one process, ``pytorch_device``) or ``"pytorchDDP"`` (under
            ``torchrun``: ``DistributedDataParallel``, NCCL on GPUs, gloo on CPU).
        pytorch_device: the device for ``"pytorch"`` (default ``"cpu"``, as FlagAI's).
        epochs: passes over ``train_dataset`` (0: only evaluate ``valid_dataset``).
        batch_size: samples per micro-batch (per rank under DDP).
        lr: peak learning rate.
        weight_decay: AdamW's, on every parameter but biases and norms.
        warm_up: fraction of the optimizer steps spent warming up linearly from 0.
        gradient_accumulation_steps: micro-batches per optimizer step.
        clip_grad: max gradient norm (0 or ``None``: no clipping).
        eval_interval: evaluate every this many optimizer steps (``None``: at each epoch end).
        log_interval: log the mean loss every this many optimizer steps.
        save_interval: save ``last/`` every this many optimizer steps (``None``: each epoch).
        save_dir: where ``last/`` and ``best/`` go (``None``: no checkpoints, no resume).
        seed: seeds Python, NumPy and torch, and the data order of every epoch.
        fp16, bf16: autocast the forward pass to float16 (with loss scaling on CUDA) or
            bfloat16.
        resume: continue from ``save_dir/last/`` when it holds a trainer state.
        progress: a tqdm bar on stderr (rank 0; ``HUBLOADER_DISABLE_PROGRESS_BARS=1`` turns it
            off).
        num_workers: ``DataLoader`` workers.

    Raises:
        ConfigError: an unknown ``env_type``, both ``fp16`` and ``bf16``, or a non-positive size.
    """

    def __init__(self, env_type: str = "pytorch", *, pytorch_device: str | torch.device = "cpu",
                 experiment_name: str = "hubloader", epochs: int = 1, batch_size: int = 8,
                 lr: float = 1e-3, weight_decay: float = 0.1, warm_up: float = 0.1,
                 gradient_accumulation_steps: int = 1, clip_grad: float | None = 1.0,
                 eval_interval: int | None = None, log_interval: int = 100,
                 save_interval: int | None = None,
                 save_dir: str | os.PathLike | None = "checkpoints", seed: int = 1234,
                 fp16: bool = False, bf16: bool = False, resume: bool = True,
                 progress: bool = True, num_workers: int = 0):
        if env_type not in ENV_TYPES:
            raise ConfigError(f"env_type {env_type!r} is not supported; use one of "
                              f"{', '.join(ENV_TYPES)} (deepspeed is not)")
        if fp16 and bf16:
            raise ConfigError("pass fp16=True or bf16=True, not both")
        for name, value in (("epochs", epochs), ("batch_size", batch_size),
                            ("gradient_accumulation_steps", gradient_accumulation_steps),
                            ("log_interval", log_interval)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        for name, opt in (("eval_interval", eval_interval), ("save_interval", save_interval)):
            if opt is not None and (isinstance(opt, bool) or not isinstance(opt, int) or opt < 1):
                raise ConfigError(f"{name} must be a positive int or None, got {opt!r}")
        if not 0.0 <= warm_up < 1.0:
            raise ConfigError(f"warm_up is a fraction of the steps in [0, 1), got {warm_up!r}")
        self.env_type, self.pytorch_device = env_type, pytorch_device
        self.experiment_name = experiment_name
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.weight_decay, self.warm_up = weight_decay, warm_up
        self.gradient_accumulation_steps, self.clip_grad = gradient_accumulation_steps, clip_grad
        self.eval_interval, self.log_interval = eval_interval, log_interval
        self.save_interval = save_interval
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.seed, self.fp16, self.bf16 = seed, fp16, bf16
        self.resume, self.progress, self.num_workers = resume, progress, num_workers
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self.state = TrainerState()

    # -- environment ---------------------------------------------------------------------
    def _init_distributed(self) -> torch.device:
        if self.env_type == "pytorch":
            return torch.device(self.pytorch_device)
        import torch.distributed as dist

        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise ConfigError("env_type='pytorchDDP' runs under torchrun, which sets RANK and "
                              "WORLD_SIZE: torchrun --nproc_per_node=N your_script.py")
        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        return torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")

    def _seed(self) -> None:
        random.seed(self.seed)
        torch.manual_seed(self.seed)
        try:
            import numpy as np

            np.random.seed(self.seed % 2**32)
        except ImportError:  # numpy is optional here
            pass

    def _barrier(self) -> None:
        if self.env_type == "pytorchDDP":
            import torch.distributed as dist

            dist.barrier()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- data ----------------------------------------------------------------------------
    def _loader(self, dataset: Any, collate_fn, *, train: bool):
        from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
        from torch.utils.data.distributed import DistributedSampler

        if dataset is None or isinstance(dataset, DataLoader):
            return dataset
        sampler: Any
        if train and self.env_type == "pytorchDDP":
            sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=True, seed=self.seed)
        elif train:
            sampler = RandomSampler(dataset, generator=torch.Generator())
        else:  # every rank evaluates the whole set, so every rank takes the same decisions
            sampler = SequentialSampler(dataset)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=collate_fn, num_workers=self.num_workers)

    def _set_epoch(self, loader, epoch: int) -> None:
        sampler: Any = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif isinstance(getattr(sampler, "generator", None), torch.Generator):
            sampler.generator.manual_seed(self.seed + epoch)  # the same order on a resume

    @staticmethod
    def _to_device(batch: Any, device: torch.device) -> dict[str, Any]:
        if not isinstance(batch, dict):
            raise InputError(f"a batch must be the dict collate_fn returns (passed as "
                             f"model(**batch)), got {type(batch).__name__}")
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items() if k not in _DROPPED_KEYS}

    # -- optimisation --------------------------------------------------------------------
    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.dim() < 2 or "norm" in name.lower() else decay).append(p)
        return torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}], lr=self.lr)

    def _scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        warm = int(self.warm_up * total_steps)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            return max(0.0, (total_steps - step) / max(1, total_steps - warm))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _autocast(self, device: torch.device):
        if not (self.fp16 or self.bf16):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.float16 if self.fp16 else torch.bfloat16)

    @staticmethod
    def _loss(out: Any) -> torch.Tensor:
        loss = out.get("loss") if isinstance(out, dict) else getattr(out, "loss", None)
        if not isinstance(loss, torch.Tensor):
            raise InputError("the model returned no 'loss'; the batch must carry the labels "
                             "(e.g. 'labels') its forward turns into a loss")
        return loss

    # -- the loop ------------------------------------------------------------------------
    def train(self, model: nn.Module, *, train_dataset: Any = None, valid_dataset: Any = None,
              collate_fn: Callable | None = None, optimizer: torch.optim.Optimizer | None = None,
              lr_scheduler: Any = None, metric_methods: Sequence[Sequence[Any]] = (),
              tokenizer: Any = None, find_unused_parameters: bool = False) -> TrainerState:
        """Train ``model`` and keep ``save_dir/last/`` and ``save_dir/best/``.

        Args:
            model: a hubloader model (any ``nn.Module`` whose forward returns ``loss``).
            train_dataset: a ``Dataset``, or a ready ``DataLoader`` used as given (under
                DDP it needs its own ``DistributedSampler``).
            valid_dataset: the same, for evaluation (optional).
            collate_fn: samples → the batch dict given to ``model(**batch)``.
            optimizer: default AdamW with ``lr`` and ``weight_decay``.
            lr_scheduler: default linear warm-up (``warm_up``) then linear decay; stepped
                once per optimizer step.
            metric_methods: FlagAI's ``[[name, fn(logits, labels, meta=None)], ...]``; the
                first one chooses ``best/`` (higher is better), else the validation loss.
            tokenizer: saved with every checkpoint (default: the tokenizer files beside the
                model's own, ``model.model_dir``).
            find_unused_parameters: DDP's, for models whose forward leaves some parameters
                out of the loss.

        Returns:
            The final :class:`TrainerState` (also ``self.state``).

        Raises:
            ConfigError: no training data, or pytorchDDP outside torchrun.
            InputError: a batch that is not a dict, or a model output without ``loss``.
        """
        if train_dataset is None:
            raise ConfigError("train() needs train_dataset (a Dataset or a DataLoader)")
        metrics = [(str(m[0]), m[1]) for m in metric_methods]
        device = self._init_distributed()
        self._seed()
        train_loader = self._loader(train_dataset, collate_fn, train=True)
        valid_loader = self._loader(valid_dataset, collate_fn, train=False)
        model.to(device)
        net: nn.Module = model
        if self.env_type == "pytorchDDP":
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model, device_ids=[self.local_rank] if device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)
        per_epoch = math.ceil(len(train_loader) / self.gradient_accumulation_steps)
        optimizer = optimizer or self._optimizer(model)
        lr_scheduler = lr_scheduler or self._scheduler(optimizer, max(1, per_epoch * self.epochs))
        scaler = torch.amp.GradScaler(device.type, enabled=self.fp16 and device.type == "cuda")
        self.state = TrainerState(best_metric=metrics[0][0] if metrics else "loss")
        self._maybe_resume(model, optimizer, lr_scheduler, scaler)
        tok_source = tokenizer if tokenizer is not None else getattr(model, "model_dir", None)
        bar = self._bar(total=per_epoch * self.epochs, initial=self.state.global_step)
        window: list[float] = []
        try:
            while self.state.epoch < self.epochs:
                epoch = self.state.epoch
                self._set_epoch(train_loader, epoch)
                net.train()
                skip = self.state.batches_in_epoch
                n = len(train_loader)
                optimizer.zero_grad(set_to_none=True)
                for i, batch in enumerate(train_loader):
                    if i < skip:
                        continue
                    boundary = (i + 1) % self.gradient_accumulation_steps == 0 or i + 1 == n
                    sync = (net.no_sync() if isinstance(net, nn.parallel.DistributedDataParallel)
                            and not boundary else contextlib.nullcontext())
                    with sync:
                        with self._autocast(device):
                            loss = self._loss(net(**self._to_device(batch, device)))
                        scaler.scale(loss / self.gradient_accumulation_steps).backward()
                    window.append(float(loss.detach()))
                    self.state.batches_in_epoch = i + 1
                    if not boundary:
                        continue
                    self._step(model, optimizer, lr_scheduler, scaler)
                    bar.update(1)
                    bar.set_postfix(loss=f"{window[-1]:.4f}", epoch=epoch)
                    step = self.state.global_step
                    if step % self.log_interval == 0:
                        logger.info("epoch %d step %d: loss %.4f, lr %.3g", epoch, step,
                                    sum(window) / len(window), optimizer.param_groups[0]["lr"])
                        window.clear()
                    if (self.eval_interval and step % self.eval_interval == 0
                            and valid_loader is not None):
                        self._evaluate_and_keep_best(net, model, valid_loader, metrics, device,
                                                     optimizer, lr_scheduler, scaler, tok_source)
                    if self.save_interval and step % self.save_interval == 0:
                        self._save("last", model, optimizer, lr_scheduler, scaler, tok_source)
                self.state.epoch, self.state.batches_in_epoch = epoch + 1, 0
                if valid_loader is not None and not self.eval_interval:
                    self._evaluate_and_keep_best(net, model, valid_loader, metrics, device,
                                                 optimizer, lr_scheduler, scaler, tok_source)
                self._save("last", model, optimizer, lr_scheduler, scaler, tok_source)
        finally:
            bar.close()
        if self.epochs == 0 and valid_loader is not None:  # FlagAI's evaluation-only run
            result = self.evaluate(model, valid_loader, metric_methods=metrics, device=device)
            self.state.history.append({"step": self.state.global_step, "epoch": 0, **result})
        model.eval()
        return self.state

    def _step(self, model: nn.Module, optimizer, lr_scheduler, scaler) -> None:
        if self.clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1

    def _bar(self, *, total: int, initial: int):
        from .. import settings
        from ..hub.progress import NullBar

        if not (self.progress and self.is_main) or settings.progress_disabled():
            return NullBar()
        import sys

        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=self.experiment_name, unit="step",
                    file=sys.stderr, dynamic_ncols=True)

    # -- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, *,
                 metric_methods: Sequence[tuple[str, Metric]] = (),
                 device: torch.device | None = None) -> dict[str, float]:
        """Mean loss over ``loader`` and each metric on the concatenated logits and labels.

        Returns:
            ``{"loss": ..., name: score, ...}``.
        """
        device = device or next(model.parameters()).device
        was_training = model.training
        model.eval()
        total, count, logits, labels = 0.0, 0, [], []
        for batch in loader:
            batch = self._to_device(batch, device)
            with self._autocast(device):
                out = model(**batch)
            size = next((v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor)), 1)
            total += float(self._loss(out).float()) * size
            count += size
            if metric_methods:
                logits.append((out["logits"] if isinstance(out, dict) else out.logits).float().cpu())
                labels.append(batch["labels"].cpu())
        result = {"loss": total / max(count, 1)}
        if metric_methods:
            all_logits, all_labels = torch.cat(logits), torch.cat(labels)
            for name, fn in metric_methods:
                result[name] = float(fn(all_logits, all_labels, None))
        model.train(was_training)
        return result

    def _evaluate_and_keep_best(self, net, model, loader, metrics, device, optimizer,
                                lr_scheduler, scaler, tok_source) -> None:
        # the unwrapped model: DDP's forward would broadcast buffers, a collective per batch
        result = self.evaluate(model, loader, metric_methods=metrics, device=device)
        self.state.history.append({"step": self.state.global_step, "epoch": self.state.epoch,
                                   **result})
        logger.info("evaluation at step %d: %s", self.state.global_step,
                    ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        key = self.state.best_metric
        score = result[key]
        best = self.state.best_score
        better = best is None or (score > best if key != "loss" else score < best)
        if better:
            self.state.best_score, self.state.best_step = score, self.state.global_step
            self._save("best", model, optimizer, lr_scheduler, scaler, tok_source)

    # -- checkpoints ---------------------------------------------------------------------
    def _save(self, which: str, model: nn.Module, optimizer, lr_scheduler, scaler,
              tokenizer: Any) -> None:
        if self.save_dir is None:
            return
        if self.is_main:
            settings = {k: v for k, v in vars(self).items() if k != "state"}
            save_checkpoint(self.save_dir / which, model=model, optimizer=optimizer,
                            lr_scheduler=lr_scheduler, scaler=scaler, state=self.state,
                            tokenizer=tokenizer, settings=settings)
        self._barrier()

    def _maybe_resume(self, model: nn.Module, optimizer, lr_scheduler, scaler) -> None:
        if self.resume and self.save_dir is not None:
            state = load_checkpoint(self.save_dir / "last", model=model, optimizer=optimizer,
                                    lr_scheduler=lr_scheduler, scaler=scaler)
            if state is not None:
                self.state = state
