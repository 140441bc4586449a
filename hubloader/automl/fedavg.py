"""FedAvg: :func:`fedavg` averages state dicts by sample count; :class:`AutoFedAvgScheduler`
drives an :class:`~hubloader.automl.base.AutoFedAvgModel` round by round (local epochs,
best-state tracking, early stopping on validation), as AlphaMed's ``AutoFedAvgScheduler`` does.

Floating tensors are averaged in float64 and cast back to their own dtype, so a float16
model stays float16. Integer and bool buffers (BatchNorm's ``num_batches_tracked``) are not
floats to average: they get the sample-weighted mean rounded to the nearest integer, in their
own dtype.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

    from .base import AutoFedAvgModel

__all__ = ["fedavg", "AutoFedAvgScheduler", "LocalUpdate"]

logger = logging.getLogger(__name__)


def fedavg(states: Sequence[Mapping[str, "torch.Tensor"]], weights: Sequence[float]
           ) -> dict[str, "torch.Tensor"]:
    """The sample-weighted mean of state dicts.

    Args:
        states: one state dict per data owner, all with the same keys, shapes and dtypes.
        weights: one non-negative weight (the owner's sample count) per state; not all zero.

    Returns:
        A new state dict: ``sum(w_i * s_i) / sum(w)`` per tensor, each in its own dtype.

    Raises:
        InputError: no states, a weight count that differs, a negative or non-finite weight,
            all-zero weights, or states whose keys, shapes or dtypes differ.

    Example:
        >>> avg = fedavg([a.state_dict(), b.state_dict()], [120, 40])
    """
    import torch

    if not states:
        raise InputError("fedavg needs at least one state dict")
    if len(weights) != len(states):
        raise InputError(f"fedavg got {len(states)} states but {len(weights)} weights; give one "
                         "weight (sample count) per state")
    w = [float(x) for x in weights]
    if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise InputError(f"fedavg weights must be finite, non-negative and not all zero, got {w}")
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != set(keys):
            diff = sorted(set(s) ^ set(keys))
            raise InputError(f"state {i} has different keys from state 0: {diff[:5]}")
    total = sum(w)
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        first = states[0][key]
        for i, s in enumerate(states[1:], 1):
            t = s[key]
            if t.shape != first.shape or t.dtype != first.dtype:
                raise InputError(f"{key}: state {i} has {t.dtype} {tuple(t.shape)}, state 0 has "
                                 f"{first.dtype} {tuple(first.shape)}")
        acc = torch.zeros(first.shape, dtype=torch.float64, device=first.device)
        for wi, s in zip(w, states):
            if wi:
                acc += s[key].detach().to(torch.float64) * (wi / total)
        if first.is_floating_point() or first.is_complex():
            out[key] = acc.to(first.dtype)
        elif first.dtype == torch.bool:
            out[key] = acc >= 0.5
        else:
            out[key] = torch.round(acc).to(first.dtype)
    return out


@dataclass(frozen=True)
class LocalUpdate:
    """What one data owner sends back after a round: its state, its training sample count
    (the FedAvg weight) and its mean training loss."""

    state: dict[str, Any]
    samples: int
    loss: float


class AutoFedAvgScheduler:
    """Rounds of FedAvg around an :class:`AutoFedAvgModel` (AlphaMed's ``auto_proxy``).

    Args:
        auto_proxy: the model, with its dataset initialised.
        max_rounds: rounds to run (``0``: until validation stops improving).
        merge_epochs: local epochs per round before the states are averaged.
        patience: stop after this many rounds in a row without a better validation accuracy.
    """

    def __init__(self, auto_proxy: "AutoFedAvgModel", *, max_rounds: int = 0,
                 merge_epochs: int = 1, patience: int = 10) -> None:
        if max_rounds < 0 or merge_epochs < 1 or patience < 1:
            raise ConfigError("max_rounds must be >= 0, merge_epochs and patience >= 1")
        if max_rounds == 0 and auto_proxy.validation_loader is None:
            raise ConfigError("max_rounds=0 stops on validation, but the dataset has no val/ "
                              "split; give max_rounds")
        self.auto_proxy = auto_proxy
        self.max_rounds, self.merge_epochs, self.patience = max_rounds, merge_epochs, patience
        self.current_round = 0
        self._best_result = -math.inf
        self._overfit_index = 0
        self._best_state: dict[str, Any] | None = None

    # -- a data owner's side of a round ----------------------------------------------------------
    def train_round(self, global_state: Mapping[str, Any] | None = None) -> LocalUpdate:
        """Load the global state (if given), train ``merge_epochs`` local epochs, return the
        new state with the sample count and mean loss."""
        proxy = self.auto_proxy
        if global_state is not None:
            proxy.load_state_dict(dict(global_state))
        losses = []
        for _ in range(self.merge_epochs):
            losses.append(float(proxy.train_an_epoch()))
        loader = proxy.training_loader
        samples = len(loader.dataset) if loader is not None else 0  # type: ignore[arg-type]
        return LocalUpdate(proxy.state_dict(), samples, sum(losses) / len(losses))

    # -- the aggregator's side -------------------------------------------------------------------
    def aggregate(self, updates: Sequence[LocalUpdate]) -> dict[str, Any]:
        """FedAvg the owners' updates into the proxy; return the averaged state."""
        state = fedavg([u.state for u in updates], [u.samples for u in updates])
        self.auto_proxy.load_state_dict(state)
        self.current_round += 1
        return state

    @property
    def best_state_dict(self) -> dict[str, Any]:
        """The best state so far (by validation accuracy; the latest without validation)."""
        return copy.deepcopy(self._best_state if self._best_state is not None
                             else self.auto_proxy.state_dict())

    def _is_reach_max_rounds(self) -> bool:
        return self.max_rounds > 0 and self.current_round >= self.max_rounds

    def is_task_finished(self) -> bool:
        """After a round: keep the state if validation improved; stop at ``max_rounds`` or
        after ``patience`` rounds without improvement (without validation: at max_rounds)."""
        proxy = self.auto_proxy
        if proxy.validation_loader is None:
            self._best_state = copy.deepcopy(proxy.state_dict())
            return self._is_reach_max_rounds()
        _, correct_rate = proxy.run_validation()
        proxy.push_log(f"round {self.current_round}: validation accuracy {correct_rate:.4f}")
        if correct_rate > self._best_result:
            self._best_result, self._overfit_index = correct_rate, 0
            self._best_state = copy.deepcopy(proxy.state_dict())
            return self._is_reach_max_rounds()
        self._overfit_index += 1
        proxy.push_log(f"validation has not improved for {self._overfit_index} round(s)")
        return self._overfit_index >= self.patience or self._is_reach_max_rounds()

    def run(self, owners: Sequence["AutoFedAvgModel"]) -> dict[str, Any]:
        """FedAvg in one process across ``owners`` (their datasets initialised), starting
        from this scheduler's proxy; returns the best state, also loaded into the proxy.
        The same rounds :mod:`hubloader.automl.flower` runs across machines."""
        while True:
            state = self.auto_proxy.state_dict()
            updates = [AutoFedAvgScheduler(o, max_rounds=1, merge_epochs=self.merge_epochs)
                       .train_round(state) for o in owners]
            self.aggregate(updates)
            if self.is_task_finished():
                break
        best = self.best_state_dict
        self.auto_proxy.load_state_dict(best)
        return best
