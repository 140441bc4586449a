"""FedAvg on Flower: a ``ClientApp`` and a ``ServerApp`` built from an
:class:`~hubloader.automl.base.AutoFedAvgModel` factory (``pip install 'hubloader[federated]'``).

A Flower App whose ``pyproject.toml`` names ``client_app`` and ``server_app`` of this module
(or apps built by :func:`build_client_app` / :func:`build_server_app` around your own
factory) runs on Flower's own ``flower-superlink`` / ``flower-supernode``:

- each SuperNode's ``--node-config "data-dir='/data/site-a'"`` says where its owner's image
  folder is; the data never leaves it;
- the ServerApp runs Flower's ``FedAvg`` (every connected owner trains; at least
  ``min-clients`` must answer; evaluation on each owner's ``test/`` when
  ``fraction-evaluate`` > 0). States are averaged by :func:`~hubloader.automl.fedavg.fedavg`
  (sample-weighted, dtypes kept) instead of Flower's float average, so integer buffers stay
  integers;
- after every round the ServerApp writes ``<out-dir>/rounds.json`` (clients, samples, loss,
  accuracy) and a checkpoint; with ``recover`` a new run resumes after the last completed
  round; at the end ``<out-dir>/model/`` is the aggregated model as a loadable folder.

Run configuration keys (``[tool.flwr.app.config]``): ``model-dir``, ``out-dir``,
``num-rounds``, ``min-clients``, ``expected-clients``, ``local-epochs``, ``labels`` (JSON list),
``lr``, ``batch-size``, ``seed``, ``fraction-evaluate``, ``round-timeout``, ``recover``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, cast

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from ..errors import DatasetError, FederatedError
from ..files import atomic_write_json, temp_name
from .base import AutoFedAvgModel
from .fedavg import AutoFedAvgScheduler, fedavg

__all__ = ["build_client_app", "build_server_app", "default_factory", "client_app",
           "server_app", "RoundJournal", "ROUNDS_FILE", "ERROR_FILE", "MODEL_DIR"]

logger = logging.getLogger(__name__)

ROUNDS_FILE = "rounds.json"
ERROR_FILE = "error.json"
MODEL_DIR = "model"
_CHECKPOINT = ".checkpoint.safetensors"

#: builds the model for a Flower context; with ``node_config["data-dir"]`` its dataset is
#: initialised (a data owner), without it the model is the aggregator's
Factory = Callable[[Context], AutoFedAvgModel]


def _state(content: RecordDict) -> dict[str, Any]:
    return dict(content.array_records["arrays"].to_torch_state_dict())


def _number(record: Any, key: str) -> float:
    return float(cast(float, record[key]))


def _cfg(context: Context, key: str, default: Any) -> Any:
    value = context.run_config.get(key, default)
    return default if value in ("", None) else value


def default_factory(context: Context) -> AutoFedAvgModel:
    """The model of ``run_config["model-dir"]`` through ``AutoModel.from_pretrain``, its
    labels fixed to ``run_config["labels"]`` (so every owner's head matches), its dataset
    read from ``node_config["data-dir"]`` on a data owner."""
    from .base import AutoModel

    proxy = AutoModel.from_pretrain(str(_cfg(context, "model-dir", "")),
                                    lr=float(_cfg(context, "lr", 1e-3)),
                                    batch_size=int(_cfg(context, "batch-size", 16)),
                                    seed=int(_cfg(context, "seed", 0)))
    if not isinstance(proxy, AutoFedAvgModel):
        raise FederatedError(f"{type(proxy).__name__} is not an AutoFedAvgModel: FedAvg needs "
                             "state_dict/load_state_dict/train_an_epoch")
    labels = json.loads(_cfg(context, "labels", "null"))
    data = context.node_config.get("data-dir")
    if data:
        ok, why = proxy.init_dataset(str(data), labels=labels)  # type: ignore[call-arg]
        if not ok:
            raise DatasetError(f"data owner at {data}: {why}")
    elif labels and hasattr(proxy, "set_labels"):
        proxy.set_labels(labels)
    return proxy


def build_client_app(factory: Factory = default_factory) -> ClientApp:
    """A Flower ``ClientApp``: ``train`` runs ``local-epochs`` epochs from the received state
    and replies with the new state and ``num-examples``; ``evaluate`` runs ``run_test``."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        proxy = factory(context)
        epochs = int(cast(int, msg.content.config_records["config"].get("local-epochs", 1)))
        state = _state(msg.content)
        update = AutoFedAvgScheduler(proxy, max_rounds=1, merge_epochs=epochs).train_round(state)
        metrics = MetricRecord({"num-examples": update.samples, "train_loss": update.loss})
        return Message(RecordDict({"arrays": ArrayRecord(update.state), "metrics": metrics}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        proxy = factory(context)
        proxy.load_state_dict(_state(msg.content))
        loader = proxy.testing_loader
        if loader is None:  # an owner without test/ reports nothing to weigh
            metrics = MetricRecord({"num-examples": 0, "eval_loss": 0.0, "eval_acc": 0.0})
        else:
            loss, acc = proxy.run_test()
            metrics = MetricRecord({"num-examples": len(loader.dataset),  # type: ignore[arg-type]
                                    "eval_loss": float(loss), "eval_acc": float(acc)})
        return Message(RecordDict({"metrics": metrics}), reply_to=msg)

    return app


class RoundJournal:
    """``<out>/rounds.json`` (one entry per completed round) and the last round's state, both
    replaced atomically, so a run that dies leaves the last completed round to resume from."""

    def __init__(self, out_dir: str | os.PathLike):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / ROUNDS_FILE

    def read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"rounds": [], "finished": False}
        return dict(json.loads(self.path.read_text(encoding="utf-8")))

    def write(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.path, data, indent=2)

    def record_train(self, rnd: int, state: dict[str, Any], entry: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        tmp = temp_name(self.out / _CHECKPOINT)
        try:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp),
                      metadata={"round": str(rnd)})
            os.replace(tmp, self.out / _CHECKPOINT)
        finally:
            tmp.unlink(missing_ok=True)
        data = self.read()
        data["rounds"] = [r for r in data["rounds"] if r["round"] < rnd] + [{"round": rnd, **entry}]
        self.write(data)

    def record_evaluate(self, rnd: int, metrics: dict[str, Any]) -> None:
        data = self.read()
        for r in data["rounds"]:
            if r["round"] == rnd:
                r.update(metrics)
        self.write(data)

    def last_completed(self) -> tuple[int, dict[str, Any] | None]:
        """The last round whose state was saved, and that state (``0, None`` if none)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        ckpt = self.out / _CHECKPOINT
        if not ckpt.is_file():
            return 0, None
        with safe_open(str(ckpt), "pt") as fh:
            rnd = int((fh.metadata() or {}).get("round", 0))
        return rnd, load_file(str(ckpt))


class _JournaledFedAvg(FedAvg):
    """Flower's FedAvg, averaging with :func:`fedavg` and journaling every round."""

    def __init__(self, journal: RoundJournal, offset: int, wait: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.journal, self.offset, self.wait = journal, offset, wait
        self.state: dict[str, Any] | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        # Flower's sampler waits for min_available_nodes without end; a typed error instead
        _wait_for_nodes(grid, self.min_available_nodes, self.wait, server_round + self.offset)
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        if self.fraction_evaluate > 0:
            _wait_for_nodes(grid, self.min_available_nodes, self.wait, server_round + self.offset)
        return super().configure_evaluate(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, errors = self._check_and_log_replies(list(replies), is_train=True)
        rnd = server_round + self.offset
        if len(valid) < max(1, self.min_train_nodes):
            raise FederatedError(
                f"round {rnd}: {len(valid)} data owner(s) answered, {len(errors)} failed; at "
                f"least {self.min_train_nodes} must. Restart the owners and resume with "
                "recover=True (--recover)")
        contents = [m.content for m in valid]
        weights = [_number(c.metric_records["metrics"], self.weighted_by_key) for c in contents]
        self.state = fedavg([_state(c) for c in contents], weights)
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        self.journal.record_train(rnd, self.state, {
            "clients": len(valid), "failed": len(errors), "samples": int(sum(weights)),
            "train_loss": _number(metrics, "train_loss") if metrics else None})
        return ArrayRecord(self.state), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        replies = [m for m in replies
                   if m.has_error() or _number(m.content.metric_records["metrics"], "num-examples") > 0]
        metrics = super().aggregate_evaluate(server_round, replies)
        if metrics is not None:
            self.journal.record_evaluate(server_round + self.offset, {
                "eval_loss": _number(metrics, "eval_loss"), "accuracy": _number(metrics, "eval_acc"),
                "eval_clients": sum(not m.has_error() for m in replies)})
        return metrics


def _wait_for_nodes(grid: Grid, expected: int, timeout: float, rnd: int = 0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            where = f"round {rnd}: " if rnd else ""
            raise FederatedError(f"{where}only {len(list(grid.get_node_ids()))} data owner(s) "
                                 f"connected, at least {expected} needed, after waiting "
                                 f"{timeout:.0f} s. Restart the owners' SuperNodes and resume "
                                 "with recover=True (--recover)")
        time.sleep(0.5)


def build_server_app(factory: Factory = default_factory) -> ServerApp:
    """A Flower ``ServerApp`` running FedAvg for ``num-rounds`` rounds (see the module)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        out = Path(str(_cfg(context, "out-dir", "")))
        journal = RoundJournal(out)
        (out / ERROR_FILE).unlink(missing_ok=True)
        try:
            _serve(grid, context, factory, journal)
        except Exception as err:
            atomic_write_json(out / ERROR_FILE, {"type": type(err).__name__, "message": str(err)})
            raise

    return app


def _serve(grid: Grid, context: Context, factory: Factory, journal: RoundJournal) -> None:
    rounds = int(_cfg(context, "num-rounds", 3))
    min_clients = int(_cfg(context, "min-clients", 1))
    timeout = float(_cfg(context, "round-timeout", 300))
    fraction_evaluate = float(_cfg(context, "fraction-evaluate", 1.0))
    proxy = factory(context)
    state, done = proxy.state_dict(), 0
    if bool(_cfg(context, "recover", False)):
        done, saved = journal.last_completed()
        if saved is not None:
            state = saved
            proxy.push_log(f"recovering after round {done}")
    else:
        journal.write({"rounds": [], "finished": False})
    _wait_for_nodes(grid, int(_cfg(context, "expected-clients", min_clients)), timeout)
    strategy = _JournaledFedAvg(
        journal, done, timeout, fraction_train=1.0, fraction_evaluate=fraction_evaluate,
        min_train_nodes=min_clients, min_available_nodes=min_clients,
        min_evaluate_nodes=min_clients if fraction_evaluate > 0 else 0)
    if rounds > done:
        strategy.start(grid=grid, initial_arrays=ArrayRecord(state), num_rounds=rounds - done,
                       timeout=timeout,
                       train_config=ConfigRecord({"local-epochs": int(_cfg(context, "local-epochs", 1))}))
    final = strategy.state if strategy.state is not None else state
    proxy.load_state_dict(final)
    summary = journal.read()
    save = getattr(proxy, "save_fine_tuned", None)
    if save is not None:
        save(journal.out / MODEL_DIR, meta={"federated_rounds": summary["rounds"]})
    else:
        from safetensors.torch import save_file

        (journal.out / MODEL_DIR).mkdir(exist_ok=True)
        save_file(final, str(journal.out / MODEL_DIR / "model.safetensors"))
    summary["finished"] = True
    journal.write(summary)


client_app = build_client_app()
server_app = build_server_app()
