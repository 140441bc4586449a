"""A local FedAvg trial on Flower's real processes: ``hubloader federate``.

:class:`LocalFederation` starts Flower's ``flower-superlink`` and one ``flower-supernode`` per
data directory on 127.0.0.1 (free ports, a private ``FLWR_HOME``, no runtime dependency
installation) and stops every process it started, with their children. :func:`federate`
writes a Flower App (``pyproject.toml`` naming :mod:`hubloader.automl.flower`'s apps, the
run's settings as its config) and submits it with Flower's own ``flwr run``, then reads the
per-round summary the ServerApp wrote.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import DatasetError, FederatedError

__all__ = ["LocalFederation", "FederatedResult", "federate", "union_labels"]

logger = logging.getLogger(__name__)

_APP_MODULE = "hubloader_fedavg_app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FederatedError(f"Flower's SuperLink exited ({proc.returncode}): "
                                 f"{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise FederatedError(f"Flower's SuperLink did not listen on 127.0.0.1:{port} within "
                         f"{timeout:.0f} s: {_tail(log)}")


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Flower's SuperNode starts its SuperExec in a new
    session, so a process group does not reach it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _stop_tree(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM ``proc`` and its descendants (collected first: a child outliving its parent
    is reparented out of reach), SIGKILL whatever still runs after ``grace`` seconds."""
    pids = [proc.pid] + _descendants(proc.pid)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        proc.poll()  # reaps our own child, so it stops counting as alive
        time.sleep(0.1)
    _signal([p for p in pids if _alive(p)], signal.SIGKILL)
    proc.wait()


class LocalFederation:
    """Flower's SuperLink and one SuperNode per data directory, as real processes.

    Args:
        data_dirs: one image-folder dataset per data owner.
        workdir: where logs, ``FLWR_HOME`` and the generated app live (default: a temp dir,
            removed on :meth:`stop`).

    Example:
        >>> with LocalFederation(["site-a", "site-b"]) as fed:
        ...     federate("./resnet", fed.data_dirs, rounds=3, out_dir="out", federation=fed)
    """

    def __init__(self, data_dirs: Sequence[str | os.PathLike], *,
                 workdir: str | os.PathLike | None = None) -> None:
        self.data_dirs = [Path(d).expanduser().resolve() for d in data_dirs]
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hubloader-federate-")).resolve()
        self.port = 0
        self.superlink: subprocess.Popen | None = None
        self.supernodes: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        """The environment of every Flower process: this interpreter's bin first on PATH
        (Flower starts its helpers by name), hubloader importable, a private FLWR_HOME."""
        import hubloader

        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        root = str(Path(hubloader.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["FLWR_HOME"] = str(self.workdir / "flwr-home")
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen:
        exe = shutil.which(argv[0], path=self.env["PATH"])
        if exe is None:
            raise FederatedError(f"{argv[0]} is not installed: pip install 'hubloader[federated]'")
        log = open(self.workdir / log_name, "ab")
        try:
            return subprocess.Popen([exe, *argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env, cwd=self.workdir,
                                    start_new_session=True)
        finally:
            log.close()

    def start(self) -> "LocalFederation":
        """Start the SuperLink, wait until it listens, then start the SuperNodes."""
        for d in self.data_dirs:
            if not d.is_dir():
                raise DatasetError(f"data directory {d} does not exist")
        (self.workdir / "flwr-home").mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        (self.workdir / "flwr-home" / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n')
        self.superlink = self._spawn(
            ["flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
             "--host", "127.0.0.1", "--port", str(self.port)], "superlink.log")
        try:
            _wait_port(self.port, self.superlink, self.workdir / "superlink.log")
            for i, d in enumerate(self.data_dirs):
                self.supernodes.append(self._spawn(
                    ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{self.port}",
                     "--host", "127.0.0.1", "--port", str(_free_port()),
                     "--node-config", f"data-dir={json.dumps(str(d))}"], f"supernode-{i}.log"))
        except BaseException:
            self.stop()
            raise
        logger.info("Flower SuperLink on 127.0.0.1:%d with %d SuperNode(s)", self.port,
                    len(self.supernodes))
        return self

    def kill_owner(self, index: int) -> None:
        """Stop data owner ``index``'s SuperNode and everything it started (SIGKILL: it dies
        as a crashed machine would)."""
        proc = self.supernodes[index]
        for pid in [proc.pid] + _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def _tagged(self) -> list[int]:
        """Live processes carrying this federation's private FLWR_HOME: ours alone, found even
        when a parent died first and they were reparented out of the tree."""
        tag = f"FLWR_HOME={self.workdir / 'flwr-home'}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if tag in (entry / "environ").read_bytes() and _alive(int(entry.name)):
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def stop(self) -> None:
        """Stop every process this federation started, children included."""
        for proc in self.supernodes + ([self.superlink] if self.superlink else []):
            _stop_tree(proc)
        deadline = time.monotonic() + 10
        while (left := self._tagged()) and time.monotonic() < deadline:
            _signal(left, signal.SIGKILL)  # one spawned while the tree was being stopped
            time.sleep(0.2)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalFederation":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class FederatedResult:
    """What :func:`federate` produced: the aggregated model folder and one summary per
    completed round (``round``, ``clients``, ``failed``, ``samples``, ``train_loss``,
    ``eval_loss``, ``accuracy``)."""

    out_dir: Path
    model_dir: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)


def union_labels(data_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """The sorted union of every owner's ``train/<label>`` folders (owners with label skew
    still share one head)."""
    from .image import list_labels

    labels: set[str] = set()
    for d in data_dirs:
        train = Path(d).expanduser() / "train"
        if not train.is_dir():
            raise DatasetError(f"{d} has no train/ folder: lay the images out as "
                               "train/<label>/<image>")
        labels.update(list_labels(train))
    return sorted(labels)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _write_app(app_dir: Path, config: dict[str, Any]) -> None:
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / f"{_APP_MODULE}.py").write_text(
        '"""FedAvg with hubloader\'s AutoModel (written by hubloader federate)."""\n'
        "from hubloader.automl import flower\n\n"
        "client = flower.client_app\n"
        "server = flower.server_app\n")
    lines = "\n".join(f"{k} = {_toml(v)}" for k, v in config.items())
    (app_dir / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "hubloader-fedavg"
version = "1.0.0"
description = "FedAvg of a hubloader AutoModel"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "hubloader"

[tool.flwr.app.components]
serverapp = "{_APP_MODULE}:server"
clientapp = "{_APP_MODULE}:client"

[tool.flwr.app.config]
{lines}
""")


def federate(model: str | os.PathLike, data_dirs: Sequence[str | os.PathLike], *,
             rounds: int = 3, out_dir: str | os.PathLike, min_clients: int | None = None,
             local_epochs: int = 1, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
             fraction_evaluate: float = 1.0, round_timeout: float = 300,
             recover: bool = False, federation: LocalFederation | None = None) -> FederatedResult:
    """FedAvg ``model`` across ``data_dirs`` on Flower's processes; see :mod:`hubloader.automl.flower`.

    Args:
        model: a card name, model folder or ``.zip`` ``AutoModel.from_pretrain`` takes.
        data_dirs: one image folder per data owner (``train/<label>/*``, optional ``test/``).
        rounds: FedAvg rounds in all (with ``recover``, rounds already completed count).
        out_dir: gets ``rounds.json`` and the aggregated model folder ``model/``.
        min_clients: owners that must answer each round (default: all but one, at least 1).
        local_epochs: epochs each owner trains per round.
        lr, batch_size, seed: the owners' training settings.
        fraction_evaluate: share of owners evaluating on their ``test/`` each round.
        round_timeout: seconds to wait for an owner's reply before the round goes on without it.
        recover: resume after the last round completed in ``out_dir``.
        federation: a running :class:`LocalFederation` to use (default: one is started for
            ``data_dirs`` and stopped at the end).

    Returns:
        A :class:`FederatedResult`.

    Raises:
        FederatedError: too few owners answered, or a Flower process failed (the message
            carries its log); ``recover=True`` resumes.
        DatasetError: a data directory lacks ``train/``.
    """
    from ..load.resolve import resolve_model_dir

    if rounds < 1 or local_epochs < 1:
        raise FederatedError("rounds and local_epochs must be at least 1")
    dirs = [Path(d).expanduser().resolve() for d in data_dirs]
    if not dirs:
        raise FederatedError("give at least one data directory (--data DIR)")
    labels = union_labels(dirs)
    model_dir = resolve_model_dir(model)  # a folder, however given (zips are extracted)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    need = min_clients if min_clients is not None else max(1, len(dirs) - 1)
    if not 1 <= need <= len(dirs):
        raise FederatedError(f"min_clients must be between 1 and {len(dirs)}, got {need}")
    config = {"model-dir": str(model_dir), "out-dir": str(out), "num-rounds": rounds,
              "min-clients": need, "expected-clients": len(dirs), "local-epochs": local_epochs,
              "labels": json.dumps(labels), "lr": float(lr), "batch-size": batch_size,
              "seed": seed, "fraction-evaluate": float(fraction_evaluate),
              "round-timeout": float(round_timeout), "recover": bool(recover)}
    own = federation is None
    fed = federation or LocalFederation(dirs).start()
    try:
        app = fed.workdir / f"app-{int(time.time() * 1000)}"
        _write_app(app, config)
        flwr = shutil.which("flwr", path=fed.env["PATH"])
        if flwr is None:
            raise FederatedError("flwr is not installed: pip install 'hubloader[federated]'")
        log = fed.workdir / f"{app.name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.run([flwr, "run", str(app), "local", "--stream"], stdout=fh,
                                  stderr=subprocess.STDOUT, env=fed.env, cwd=fed.workdir,
                                  timeout=rounds * round_timeout * 3 + 300)
        error = out / "error.json"
        if error.is_file():
            info = json.loads(error.read_text())
            raise FederatedError(f"the federated run failed: {info['type']}: {info['message']}")
        summary = json.loads((out / "rounds.json").read_text()) if (out / "rounds.json").is_file() \
            else {}
        if proc.returncode != 0 or not summary.get("finished"):
            raise FederatedError(f"the federated run did not finish (flwr run exited "
                                 f"{proc.returncode}); its log ends: {_tail(log)}")
    except subprocess.TimeoutExpired as err:
        raise FederatedError(f"the federated run took longer than {err.timeout:.0f} s") from err
    finally:
        if own:
            fed.stop()
    return FederatedResult(out, out / "model", list(summary["rounds"]))
