"""torch.distributed with real ``torchrun`` (gloo), counted at a proxy in front of SeaweedFS:

* one node of 4 ranks: only local rank 0 lists and fetches, the others read the warm cache;
* no collective on the download path: a download longer than the process group's timeout
  succeeds on every rank, and ``if rank == 0: download(); dist.barrier()`` works; rank 0's
  failure reaches the others; a rank whose rank 0 never asks waits HUBLOADER_LOCK_TIMEOUT;
* two nodes (two launchers, one c10d rendezvous on 127.0.0.1): one copy in all, with a
  cache per node (node 1 receives it from node 0, see test_hub_fanout.py) and with one
  shared cache (a network file system's case).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hub_helpers import WORKTREE
import servers

SCRIPT = """
import os, sys, torch.distributed as dist
import hubloader
dist.init_process_group("gloo")
path = hubloader.download("s3://dist/model")
# one result file per rank: four processes writing to one inherited pipe may interleave
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.txt"), "w") as f:
    f.write(f"rank={dist.get_rank()} path={path}")
dist.barrier()
dist.destroy_process_group()
"""

NO_COLLECTIVE = """
import datetime, json, os, sys, time, torch.distributed as dist
import hubloader
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=float(sys.argv[2])))
rank, out = dist.get_rank(), {}
started = time.monotonic()
out["slow"] = str(hubloader.download("s3://dist/slow"))  # outlives the group's timeout
out["slow_s"] = time.monotonic() - started
if rank == 0:  # the user's pattern: rank 0 downloads, everyone meets at the user's barrier
    hubloader.download("s3://dist/small")
dist.barrier()
out["small"] = str(hubloader.download("s3://dist/small", offline=True))
try:  # rank 0 fails: the others hear of it instead of waiting
    hubloader.download("s3://dist/no-such-model")
except Exception as err:
    out["failed"] = type(err).__name__
os.environ["HUBLOADER_LOCK_TIMEOUT"] = "1"
if rank != 0:  # rank 0 never asks: the wait ends after HUBLOADER_LOCK_TIMEOUT
    started = time.monotonic()
    out["alone"] = str(hubloader.download("s3://dist/alone"))
    out["alone_s"] = time.monotonic() - started
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(out, f)
dist.destroy_process_group()  # no barrier: rank 1 may still be waiting out its timeout
"""

TWO_NODES = """
import json, os, sys, torch.distributed as dist
import hubloader
dist.init_process_group("gloo")
out = {"rank": dist.get_rank(), "node": os.environ["GROUP_RANK"]}
out["own"] = str(hubloader.download("s3://dist/per-node"))  # HUBLOADER_HOME: one per node
os.environ["HUBLOADER_HOME"] = sys.argv[2]  # one cache for both nodes, as on NFS
out["shared"] = str(hubloader.download("s3://dist/shared"))
with open(os.path.join(sys.argv[1], f"rank{out['rank']}.json"), "w") as f:
    json.dump(out, f)
dist.barrier()
dist.destroy_process_group()
"""


def _model(weed, tmp_path_factory, prefix: str, size: int, seed: int) -> Path:
    folder = tmp_path_factory.mktemp(prefix)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(random.Random(seed).randbytes(size))
    weed.upload_dir("dist", prefix, folder)
    return folder


@pytest.fixture(scope="module")
def dist_models(weed, tmp_path_factory):
    return {prefix: _model(weed, tmp_path_factory, prefix, size, seed)
            for seed, (prefix, size) in enumerate([("model", 2 << 20), ("slow", 1 << 20),
                                                   ("small", 4096), ("alone", 4096),
                                                   ("per-node", 256 << 10),
                                                   ("shared", 256 << 10)])}


def _torchrun(script: Path, *args: str, env: dict, nodes: int = 1, nproc: int = 4,
              rdzv: str | None = None) -> subprocess.Popen:
    launch = ["--standalone"] if nodes == 1 else [
        f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv}",
        "--rdzv-id=hubtest", "--local-addr=127.0.0.1"]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launch,
                             f"--nproc_per_node={nproc}", str(script), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(run: subprocess.Popen, timeout: float = 240) -> None:
    try:
        out, err = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        out, err = run.communicate()
    assert run.returncode == 0, "\n".join(l for l in err.splitlines() if "rank" in l or "Error" in l)[-6000:]


def _env(proxy, **extra) -> dict:
    """The environment of a torchrun job: SeaweedFS's credentials, the proxy as endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBLOADER_", "AWS_"))}
    env.update(PYTHONPATH=str(WORKTREE), HUBLOADER_S3_ENDPOINT_URL=proxy.url, OMP_NUM_THREADS="1",
               AWS_ACCESS_KEY_ID=servers.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=servers.SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, HUBLOADER_DISABLE_PROGRESS_BARS="1")
    env.update(extra)
    return env


def _gets(proxy, prefix: str) -> tuple[int, int]:
    """(listings of s3://dist/<prefix>/, GETs of its weights) the proxy saw."""
    gets = proxy.get_lines()
    listings = [g for g in gets if "list-type=2" in g and f"prefix={prefix}" in g]
    weights = [g for g in gets if f"/dist/{prefix}/model.safetensors" in g]
    return len(listings), len(weights)


def test_torchrun_one_fetcher_per_node(weed, hub_env, dist_models, tmp_path):
    proxy = servers.FaultProxy(weed.s3_port)
    try:
        script = tmp_path / "worker.py"
        script.write_text(SCRIPT)
        results = tmp_path / "results"
        results.mkdir()
        _finish(_torchrun(script, str(results), env=_env(proxy, HUBLOADER_HOME=str(hub_env / "home"))))
        lines = sorted(p.read_text() for p in results.iterdir())
        assert [l.split()[0] for l in lines] == [f"rank={i}" for i in range(4)]
        assert len({l.split()[1] for l in lines}) == 1
        assert _gets(proxy, "model") == (1, 1), proxy.get_lines()  # ranks 1-3: no network
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def no_collective_run(weed, dist_models, tmp_path_factory):
    """One torchrun job (2 ranks, a 4 s process-group timeout) through a proxy that makes
    s3://dist/slow take about 9 s; returns (results per rank, the proxy)."""
    tmp = tmp_path_factory.mktemp("no-collective")
    proxy = servers.FaultProxy(weed.s3_port)
    try:
        proxy.throttle_bps = 120_000  # 1 MiB: about 9 s
        script = tmp / "worker.py"
        script.write_text(NO_COLLECTIVE)
        (tmp / "results").mkdir()
        _finish(_torchrun(script, str(tmp / "results"), "4", nproc=2,
                          env=_env(proxy, HUBLOADER_HOME=str(tmp / "home"))))
        yield {int(p.stem[4:]): json.loads(p.read_text())
               for p in (tmp / "results").iterdir()}, proxy
    finally:
        proxy.close()


def test_download_longer_than_the_group_timeout(no_collective_run):
    results, proxy = no_collective_run
    assert sorted(results) == [0, 1]
    assert results[0]["slow"] == results[1]["slow"]
    assert min(r["slow_s"] for r in results.values()) > 4  # it did outlive the timeout
    assert _gets(proxy, "slow") == (1, 1)


def test_rank0_download_then_user_barrier(no_collective_run):
    results, proxy = no_collective_run
    assert results[0]["small"] == results[1]["small"]
    assert (Path(results[1]["small"]) / "config.json").is_file()
    assert _gets(proxy, "small") == (1, 1)  # ranks 1+ read the cache


def test_a_failure_of_rank0_reaches_the_others(no_collective_run):
    results, _ = no_collective_run
    assert results[0]["failed"] == "RemoteNotFoundError"
    assert results[1]["failed"] == "LocalEntryNotFoundError"


def test_the_wait_is_bounded_by_the_lock_timeout(no_collective_run):
    results, proxy = no_collective_run
    assert "alone" not in results[0]
    assert results[1]["alone_s"] >= 1  # waited HUBLOADER_LOCK_TIMEOUT, then fetched itself
    assert (Path(results[1]["alone"]) / "model.safetensors").is_file()
    assert _gets(proxy, "alone") == (1, 1)


@pytest.fixture(scope="module")
def two_nodes_run(weed, dist_models, tmp_path_factory):
    """Two torchrun launchers of 2 ranks each, one c10d rendezvous on 127.0.0.1, a cache
    per node, then one cache for both; returns (results per rank, homes, the proxy)."""
    tmp = tmp_path_factory.mktemp("two-nodes")
    proxy = servers.FaultProxy(weed.s3_port)
    runs = []
    try:
        script = tmp / "worker.py"
        script.write_text(TWO_NODES)
        (tmp / "results").mkdir()
        rdzv = f"127.0.0.1:{servers.free_port()}"
        homes = [tmp / "node0-home", tmp / "node1-home"]
        for home in homes:
            runs.append(_torchrun(script, str(tmp / "results"), str(tmp / "shared-home"),
                                  nodes=2, nproc=2, rdzv=rdzv,
                                  env=_env(proxy, HUBLOADER_HOME=str(home))))
        for run in runs:
            _finish(run)
        yield ({int(p.stem[4:]): json.loads(p.read_text()) for p in (tmp / "results").iterdir()},
               homes, proxy)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.communicate()
        proxy.close()


def test_two_nodes_fetch_once_per_node(two_nodes_run):
    results, homes, proxy = two_nodes_run
    assert sorted(results) == [0, 1, 2, 3]
    assert sorted(r["node"] for r in results.values()) == ["0", "0", "1", "1"]
    by_node = {}
    for r in results.values():
        by_node.setdefault(r["node"], set()).add(r["own"])
    assert all(len(paths) == 1 for paths in by_node.values())  # one snapshot per node
    own = {p for paths in by_node.values() for p in paths}
    assert len(own) == 2 and all(any(p.startswith(str(h)) for h in homes) for p in own)
    assert _gets(proxy, "per-node") == (1, 1)  # one copy in all: node 1 gets it from node 0


def test_two_nodes_share_one_cache(two_nodes_run):
    results, _, proxy = two_nodes_run
    assert len({r["shared"] for r in results.values()}) == 1
    listings, weights = _gets(proxy, "shared")
    assert weights == 1, proxy.get_lines()  # one copy in all
