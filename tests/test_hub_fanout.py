"""One fetch per cluster (:mod:`hubloader.hub.fanout`) with real ``torchrun`` launchers on
127.0.0.1 (a static rendezvous, as on a cluster), a cache folder per node, SeaweedFS behind the
counting proxy:

* 4 nodes: the store serves each file once, every node's cache passes ``cache verify``,
  a user's ``if rank == 0: download(); dist.barrier()`` works, a second call moves nothing,
  a tree of degree 2 feeds nodes 1 and 2 from node 0 and node 3 from node 1;
* a node killed mid-transfer: every other rank raises PeerTransferError naming its rank
  within the timeout, and no cache shows a partial file;
* ``HUBLOADER_FANOUT=off``: every node fetches from the store itself, as before;
* 3 nodes, the store slow (throttled at the proxy): node 0 passes each file on as soon as it
  is in its cache, so nodes 1 and 2 hold the first shard before node 0's download returns;
  node 0's fetch failing at its second shard (the proxy flips a byte of every GET of it)
  gives every other rank a PeerTransferError naming rank 0, and leaves the shard already
  passed on as temp files only;
* node 0 killed between two files: nodes 1 and 2 name rank 0 within
  ``HUBLOADER_FANOUT_TIMEOUT`` whether the job's store outlives node 0 (served from outside
  the nodes: node 0's beat stops) or dies with it (served by rank 0's own process);
* node 0's side in one process (a real store, a real fetch from a folder): the offer is out
  before the first file lands, each file's entry as it lands, a watcher set before is still
  told; a download that never lists offers the same round from the cache; a verification
  failure at the second file fails the round, naming rank 0.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_helpers import WORKTREE
import servers

from test_hub_distributed import _env

FANOUT = """
import json, os, signal, sys, threading, time, torch.distributed as dist
import hubloader
dist.init_process_group("gloo")
rank, node = dist.get_rank(), int(os.environ["GROUP_RANK"])
out = {"node": node}
if rank == 0:  # the user's pattern: rank 0 downloads, everyone meets at the user's barrier
    hubloader.download("s3://fan/first")
dist.barrier()
out["first"] = str(hubloader.download("s3://fan/first"))
out["again"] = str(hubloader.download("s3://fan/first"))  # warm: nothing moves
os.environ["HUBLOADER_FANOUT"] = "off"  # read at call time
out["plain"] = str(hubloader.download("s3://fan/plain"))
os.environ["HUBLOADER_FANOUT"] = "tree"  # node 0 feeds nodes 1 and 2, node 1 feeds node 3
out["tree"] = str(hubloader.download("s3://fan/tree"))
del os.environ["HUBLOADER_FANOUT"]
with open(os.path.join(sys.argv[1], f"rank{rank}-a.json"), "w") as f:
    json.dump(out, f)
dist.barrier()
os.environ["HUBLOADER_FANOUT_CHUNK_MB"] = "0.0625"
if node == 1:  # dies as soon as its first received bytes of s3://fan/killed are on disk
    partial = os.path.join(os.environ["HUBLOADER_HOME"], "models", "s3--fan--killed", "partial")
    def die():
        while True:
            for name in os.listdir(partial) if os.path.isdir(partial) else []:
                if name.endswith(".incomplete") and os.path.getsize(os.path.join(partial, name)):
                    os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.002)
    threading.Thread(target=die, daemon=True).start()
out = {"node": node}
started = time.monotonic()
try:
    hubloader.download("s3://fan/killed")
    out["error"] = None
except Exception as err:
    out.update(error=type(err).__name__, rank=getattr(err, "rank", None), message=str(err))
out["seconds"] = time.monotonic() - started
with open(os.path.join(sys.argv[1], f"rank{rank}-b.json"), "w") as f:
    json.dump(out, f)
if rank != 0:  # no barrier, no teardown of the group: node 1 is gone
    os._exit(0)
"""


@pytest.fixture(scope="module")
def fan_models(weed, tmp_path_factory):
    folders = {}
    for seed, (prefix, shards, size) in enumerate([("first", 2, 3 << 20), ("plain", 1, 1 << 20),
                                                   ("tree", 1, 1 << 20), ("killed", 1, 24 << 20)]):
        folder = tmp_path_factory.mktemp(prefix)
        (folder / "config.json").write_text('{"model_type": "bert"}')
        rng = random.Random(seed)
        for i in range(shards):
            (folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors").write_bytes(
                rng.randbytes(size))
        weed.upload_dir("fan", prefix, folder)
        folders[prefix] = folder
    return folders


def _launch(script: Path, results: Path, homes: list[Path], proxy, nproc: int, *args: str,
            rdzv_port: int | None = None, **extra: str) -> list[subprocess.Popen]:
    """One launcher per home, node ``i`` on ``homes[i]``. By default a static rendezvous
    (``--node-rank``, as on a cluster): the ranks follow ``homes`` and node 0's launcher serves
    the job's store, so a launcher that goes down with a killed worker on another node takes
    nothing along. ``rdzv_port``: a c10d rendezvous the test serves itself (no launcher
    serves the store, and the ranks follow the launchers' process ids)."""
    port = rdzv_port or servers.free_port()
    runs = []
    for node, home in enumerate(homes):
        env = _env(proxy, HUBLOADER_HOME=str(home), **extra)
        rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                      "--rdzv-id=fantest", "--local-addr=127.0.0.1"] if rdzv_port else [
                      "--rdzv-backend=static", f"--node-rank={node}", "--master-addr=127.0.0.1",
                      f"--master-port={port}"]
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", f"--nnodes={len(homes)}",
             *rendezvous, "--max-restarts=0", f"--nproc_per_node={nproc}",
             str(script), str(results), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True))
    return runs


def _stop(runs: list[subprocess.Popen]) -> list[str]:
    """Stop each launcher and its workers (a launcher whose peer node died waits out
    torchrun's exit barrier otherwise); the tail of what each printed, for failures (empty
    for one whose output was read before)."""
    for run in runs:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    return ["" if run.stderr.closed else run.communicate()[1][-3000:] for run in runs]


def _weight_gets(proxy, prefix: str) -> list[str]:
    return [g for g in proxy.get_lines() if f"/fan/{prefix}/" in g and ".safetensors" in g]


def _verify(home: Path) -> tuple[int, list]:
    code = ("import json, sys; from hubloader.hub.cache_admin import verify_cache; "
            "checked, problems = verify_cache(); print(json.dumps([checked, [str(p) for p in problems]]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBLOADER_")}
    env.update(HUBLOADER_HOME=str(home), PYTHONPATH=str(WORKTREE))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    checked, problems = json.loads(out.strip().splitlines()[-1])
    return checked, problems


def _visible(home: Path) -> list[Path]:
    """The snapshot entries of ``home`` (what a load can see)."""
    return [p for p in home.glob("models/*/snapshots/*/**/*") if p.is_file()]


@pytest.fixture(scope="module")
def four_nodes(weed, fan_models, tmp_path_factory):
    """One job: four launchers of one rank each, a cache per node, the chain (the default)."""
    tmp = tmp_path_factory.mktemp("fan4")
    proxy = servers.FaultProxy(weed.s3_port)
    script = tmp / "worker.py"
    script.write_text(FANOUT)
    (tmp / "results").mkdir()
    homes = [tmp / f"node{i}" for i in range(4)]
    runs = _launch(script, tmp / "results", homes, proxy, 1, HUBLOADER_FANOUT_CHUNK_MB="0.25",
                   HUBLOADER_FANOUT_TIMEOUT="20")
    expected = {"0-a", "0-b", "1-a", "2-a", "2-b", "3-a", "3-b"}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not \
                expected <= {p.stem[4:] for p in (tmp / "results").iterdir()}:
            if any(r.poll() not in (None, 0) for r in runs[2:]):
                break
            time.sleep(0.5)
        time.sleep(1)
        tails = _stop(runs)  # (the launchers would wait out torchrun's exit barrier for node 1)
        results = {p.stem[4:]: json.loads(p.read_text()) for p in (tmp / "results").iterdir()}
        if not expected <= set(results):  # what the launchers said shows why
            print(*(f"node {i} (exit {r.returncode}):\n{t}" for i, (r, t) in
                    enumerate(zip(runs, tails))), sep="\n", file=sys.stderr)
        yield results, homes, proxy
    finally:
        _stop(runs)
        proxy.close()


def test_four_nodes_the_store_serves_each_file_once(four_nodes, fan_models):
    results, homes, proxy = four_nodes
    assert sorted(results) == ["0-a", "0-b", "1-a", "2-a", "2-b", "3-a", "3-b"]
    gets = _weight_gets(proxy, "first")
    assert len(gets) == 2, gets  # two shards, one GET each, for four nodes
    for node in range(4):
        r = results[f"{node}-a"]
        assert r["first"].startswith(str(homes[node])) and r["again"] == r["first"]
        for name in ("config.json", "model-00001-of-00002.safetensors",
                     "model-00002-of-00002.safetensors"):
            assert (Path(r["first"]) / name).read_bytes() == \
                (fan_models["first"] / name).read_bytes()


def test_four_nodes_every_cache_verifies(four_nodes):
    _, homes, _ = four_nodes
    for i, home in enumerate(homes):
        manifest = json.loads(
            next(home.glob("models/s3--fan--first/manifests/*.json")).read_text())
        origins = {e["origin"] for e in manifest["files"].values()}
        assert origins == ({"s3://fan/first/"} if i == 0 else {f"peer rank {i - 1}"}), origins
        assert not list(home.glob("models/s3--fan--first/partial/*.incomplete*"))
    for home in homes[:1] + homes[2:]:  # (node 1 was killed with a partial, see below)
        checked, problems = _verify(home)
        assert checked >= 3 and problems == [], (home, problems)


def test_fanout_off_fetches_on_every_node(four_nodes):
    results, homes, proxy = four_nodes
    assert len(_weight_gets(proxy, "plain")) == 4  # HUBLOADER_FANOUT=off: one GET per node
    for home in homes:
        manifest = json.loads(
            next(home.glob("models/s3--fan--plain/manifests/*.json")).read_text())
        assert {e["origin"] for e in manifest["files"].values()} == {"s3://fan/plain/"}


def test_tree_fanout(four_nodes, fan_models):
    results, homes, proxy = four_nodes
    assert len(_weight_gets(proxy, "tree")) == 1
    for node, parent in [(1, 0), (2, 0), (3, 1)]:  # degree 2
        snapshot = Path(results[f"{node}-a"]["tree"])
        assert (snapshot / "model-00001-of-00001.safetensors").read_bytes() == \
            (fan_models["tree"] / "model-00001-of-00001.safetensors").read_bytes()
        manifest = json.loads(
            next(homes[node].glob("models/s3--fan--tree/manifests/*.json")).read_text())
        assert manifest["files"]["model-00001-of-00001.safetensors"]["origin"] == \
            f"peer rank {parent}"


def test_a_killed_node_is_named_on_every_rank(four_nodes):
    results, homes, proxy = four_nodes
    assert "1-b" not in results, results  # node 1 (rank 1) died mid-transfer
    assert results["0-b"]["error"] is None, results  # node 0 fetched it from the store itself
    for rank in (2, 3):
        r = results[f"{rank}-b"]
        assert r["error"] == "PeerTransferError" and r["rank"] == 1, r
        assert "rank 1 (node 1)" in r["message"], r
        assert r["seconds"] < 20, r  # within HUBLOADER_FANOUT_TIMEOUT
    assert len(_weight_gets(proxy, "killed")) == 1
    for home in homes[1:]:  # nothing of it where a load would look
        assert not list(home.glob("models/s3--fan--killed/snapshots/*/*"))
    # the killed node's received bytes stay as its temp file, for a resume
    assert any(p.stat().st_size > 0
               for p in homes[1].glob("models/s3--fan--killed/partial/*.incomplete"))


@pytest.mark.slow
def test_cli_download_under_torchrun(weed, fan_models, tmp_path):
    """``hubloader download`` as torchrun's program on two nodes: one copy in all."""
    proxy = servers.FaultProxy(weed.s3_port)
    homes = [tmp_path / "node0", tmp_path / "node1"]
    rdzv = f"127.0.0.1:{servers.free_port()}"
    runs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--rdzv-backend=c10d",
         f"--rdzv-endpoint={rdzv}", "--rdzv-id=fancli", "--local-addr=127.0.0.1",
         "--nproc_per_node=1", "--no-python", sys.executable, "-c",
         "import sys; from hubloader.cli import main; sys.exit(main())",
         "download", "-q", "s3://fan/plain"],
        env=_env(proxy, HUBLOADER_HOME=str(home)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True) for home in homes]
    try:
        outs = [run.communicate(timeout=180) for run in runs]
    finally:
        _stop(runs)
        proxy.close()
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outs]
    assert len(_weight_gets(proxy, "plain")) == 1
    for home in homes:
        assert (next(home.glob("models/s3--fan--plain/snapshots/*")) /
                "model-00001-of-00001.safetensors").stat().st_size == 1 << 20


STREAM = """
import json, os, sys, threading, time, torch.distributed as dist
import hubloader
dist.init_process_group("gloo")
rank, node = dist.get_rank(), int(os.environ["GROUP_RANK"])
first = int(sys.argv[2])  # the first shard's size: a temp file that big holds all of it
received = {}  # per repository: when this node's temp file of the first shard was whole

def watch():
    models = os.path.join(os.environ["HUBLOADER_HOME"], "models")
    while True:
        for repo in ("s3--fan--stream", "s3--fan--broken"):
            partial = os.path.join(models, repo, "partial")
            for name in os.listdir(partial) if os.path.isdir(partial) else []:
                try:
                    if name.endswith(".incomplete") and \\
                            os.path.getsize(os.path.join(partial, name)) == first:
                        received.setdefault(repo, time.time())
                except FileNotFoundError:
                    pass
        time.sleep(0.002)

threading.Thread(target=watch, daemon=True).start()
out = {"node": node}
for model in ("stream", "broken"):
    dist.barrier()  # every node asks at once: node 0 fetches while the others wait
    out[model] = {"started": time.time()}
    try:
        out[model]["path"] = str(hubloader.download(f"s3://fan/{model}"))
        out[model]["error"] = None
    except Exception as err:
        out[model].update(error=type(err).__name__, rank=getattr(err, "rank", None),
                          message=str(err))
    out[model]["returned"] = time.time()
    time.sleep(0.1)  # the watcher's last look
    out[model]["received"] = received.get(f"s3--fan--{model}")
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(out, f)
dist.barrier()
dist.destroy_process_group()
"""
FIRST, SECOND = 1 << 20, 4 << 20  # shard sizes (one ETag each: below boto3's multipart size)


@pytest.fixture(scope="module")
def streaming_nodes(weed, tmp_path_factory):
    """One job of three launchers (a chain: node 0 feeds node 1, node 1 node 2), each rank
    writing when its download started and returned and when its node had received the
    first shard whole, for a snapshot of two shards (``stream``) and the same with its
    second shard damaged on the way from the store (``broken``)."""
    tmp = tmp_path_factory.mktemp("stream")
    sources = {}
    for seed, model in enumerate(("stream", "broken")):
        folder = sources[model] = tmp / f"source-{model}"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "bert"}')
        rng = random.Random(100 + seed)
        for i, size in enumerate((FIRST, SECOND)):
            (folder / f"model-{i + 1:05d}-of-00002.safetensors").write_bytes(rng.randbytes(size))
        weed.upload_dir("fan", model, folder)
    proxy = servers.FaultProxy(weed.s3_port)
    proxy.throttle_bps = 2e6  # per connection: the second shard takes about 2 s
    proxy.flip = ("/fan/broken/model-00002-of-00002.safetensors", 4096, 100)  # every GET
    script = tmp / "worker.py"
    script.write_text(STREAM)
    (tmp / "results").mkdir()
    homes = [tmp / f"node{i}" for i in range(3)]
    runs = _launch(script, tmp / "results", homes, proxy, 1, str(FIRST),
                   HUBLOADER_FANOUT_CHUNK_MB="0.25", HUBLOADER_FANOUT_TIMEOUT="20")
    try:
        outs = [run.communicate(timeout=240)[1] for run in runs]
        results = {int(p.stem[4:]): json.loads(p.read_text())
                   for p in (tmp / "results").iterdir()}
        assert sorted(results) == [0, 1, 2], [o[-3000:] for o in outs]
        yield results, homes, proxy, sources
    finally:
        _stop(runs)
        proxy.close()


def test_node_0_passes_each_file_on_as_it_lands(streaming_nodes):
    results, homes, proxy, sources = streaming_nodes
    assert all(r["stream"]["error"] is None for r in results.values()), results
    returned = results[0]["stream"]["returned"]
    for node in (1, 2):
        received = results[node]["stream"]["received"]
        assert received is not None, results[node]
        # the first shard was whole on this node while node 0 still fetched the second
        assert received < returned, (node, returned - received)
    assert len(_weight_gets(proxy, "stream")) == 2
    for node, home in enumerate(homes):
        snapshot = Path(results[node]["stream"]["path"])
        assert snapshot.is_relative_to(home)
        for name in ("config.json", "model-00001-of-00002.safetensors",
                     "model-00002-of-00002.safetensors"):
            assert (snapshot / name).read_bytes() == (sources["stream"] / name).read_bytes()
        manifest = json.loads(
            next(home.glob("models/s3--fan--stream/manifests/*.json")).read_text())
        assert {e["origin"] for e in manifest["files"].values()} == \
            ({"s3://fan/stream/"} if node == 0 else {f"peer rank {node - 1}"})
        checked, problems = _verify(home)
        assert checked >= 3 and problems == [], (home, problems)


def test_node_0_failing_partway_is_named_on_every_rank(streaming_nodes):
    results, homes, proxy, _ = streaming_nodes
    assert results[0]["broken"]["error"] == "IntegrityError", results[0]
    for node in (1, 2):
        r = results[node]["broken"]
        assert r["error"] == "PeerTransferError" and r["rank"] == 0, r
        assert "rank 0" in r["message"], r
        assert r["returned"] - r["started"] < 20, r  # within HUBLOADER_FANOUT_TIMEOUT
        # the first shard was passed on before node 0 failed: whole, but a temp file only
        assert r["received"] is not None, r
        assert not list(homes[node].glob("models/s3--fan--broken/snapshots/*/*"))
        assert any(p.stat().st_size == FIRST
                   for p in homes[node].glob("models/s3--fan--broken/partial/*.incomplete"))
    # node 0 keeps the verified files it fetched; the damaged shard is nowhere
    for home in homes:
        assert not list(home.glob("models/s3--fan--broken/snapshots/*/model-00002-*"))
        checked, problems = _verify(home)
        assert problems == [], (home, problems)


def test_fanout_settings_are_checked(monkeypatch):
    from hubloader import settings
    from hubloader.errors import ConfigError

    monkeypatch.setenv("HUBLOADER_FANOUT", "Tree")
    assert settings.fanout_mode() == "tree"
    monkeypatch.setenv("HUBLOADER_FANOUT_CHUNK_MB", "0.5")
    assert settings.fanout_chunk_bytes() == 1 << 19
    for name, value in [("HUBLOADER_FANOUT", "ring"), ("HUBLOADER_FANOUT_DEGREE", "0"),
                        ("HUBLOADER_FANOUT_CHUNK_MB", "0"), ("HUBLOADER_FANOUT_TIMEOUT", "-1")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name):
            getattr(settings, {"HUBLOADER_FANOUT": "fanout_mode",
                               "HUBLOADER_FANOUT_DEGREE": "fanout_degree",
                               "HUBLOADER_FANOUT_CHUNK_MB": "fanout_chunk_bytes",
                               "HUBLOADER_FANOUT_TIMEOUT": "fanout_timeout"}[name])()
        monkeypatch.delenv(name)


# -- node 0's side in one process: a real store, a real fetch from a folder -----------------
def _root_plan(base: str):
    import torch.distributed as dist
    from hubloader.hub import fanout

    plan = fanout._Plan(dist.HashStore(), base, base, 0, 2, 0, 1, 1 << 16, 5.0)
    plan.store.set(f"{base}/rank/0", "0")  # (what across_nodes says first)
    return plan


def _folder_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    rng = random.Random(7)
    for i in range(2):
        (folder / f"model-{i + 1:05d}-of-00002.safetensors").write_bytes(rng.randbytes(3000 + i))
    return folder


class _Told:
    """A watcher set before node 0's (a prefetch child's stands here): it must still be
    told everything, and records whether the offer was out when each file landed."""

    def __init__(self, store, key: str):
        self.store, self.key = store, key
        self.listed_files: list[str] = []
        self.seen: dict[str, bool] = {}

    def listed(self, snapshot_dir, files, revision):
        self.listed_files = [f.path for f in files]

    def landed(self, path, entry):
        self.seen[path] = self.store.check([f"{self.key}/ready"])


def test_root_offers_each_file_as_it_lands_and_chains(tmp_path, monkeypatch):
    from hubloader.hub import _download, cache, fanout
    from hubloader.hub.request import SnapshotRequest
    from hubloader.hub.snapshot import arrivals
    from hubloader.hub.sources import open_source

    monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "0.3")  # node 1 never asks here
    plan = _root_plan("test/stream")
    request = SnapshotRequest(open_source(str(_folder_model(tmp_path))), progress=False)
    told = _Told(plan.store, plan.key)
    token = arrivals.set(told)
    try:
        snapshot = fanout._root(plan, request, lambda r: _download(r, offline=False))
    finally:
        arrivals.reset(token)
    names = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert sorted(told.listed_files) == names
    assert told.seen == dict.fromkeys(names, True)  # the offer was out before each landed
    offer = json.loads(plan.store.get(f"{plan.key}/ready"))
    assert [f["path"] for f in offer["files"]] == names  # configs first, shards by name
    manifest = cache.read_manifest(request.paths_for(snapshot.name))
    round_key = fanout._round(plan, offer).key
    for i, name in enumerate(names):
        said = json.loads(plan.store.get(f"{round_key}/file/{i}"))
        assert said["digest"] == manifest["files"][name]["sha256"]
        assert said["size"] == (snapshot / name).stat().st_size

    # a download that never lists (the cache answers offline) offers the same round at once
    plan2 = fanout._Plan(plan.store, "test/warm", "test/warm", 0, 2, 0, 1, 1 << 16, 5.0)
    told2 = _Told(plan2.store, plan2.key)
    token = arrivals.set(told2)
    try:
        assert fanout._root(plan2, request, lambda r: _download(r, offline=True)) == snapshot
    finally:
        arrivals.reset(token)
    assert told2.listed_files == []  # no listing: the fallback said it
    offer2 = json.loads(plan2.store.get(f"{plan2.key}/ready"))
    assert fanout._same_files(offer2) == fanout._same_files(offer)
    round2 = fanout._round(plan2, offer2).key
    assert [json.loads(plan2.store.get(f"{round2}/file/{i}"))["digest"] for i in range(3)] == \
        [manifest["files"][n]["sha256"] for n in names]


def test_root_failing_partway_fails_its_round_naming_rank_0(tmp_path, monkeypatch):
    from hubloader.errors import IntegrityError
    from hubloader.hub import _download, fanout
    from hubloader.hub.request import SnapshotRequest
    from hubloader.hub.sources import open_source

    monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "0.3")
    plan = _root_plan("test/broken")
    folder = _folder_model(tmp_path)
    # the card promises other bytes for the second shard: node 0's verification fails there
    card = {"config.json": None, "model-00001-of-00002.safetensors": None,
            "model-00002-of-00002.safetensors": "0" * 64}
    request = SnapshotRequest(open_source(str(folder)), card_files=card, progress=False)
    with pytest.raises(IntegrityError):
        fanout._root(plan, request, lambda r: _download(r, offline=False))
    said = json.loads(plan.store.get(f"{plan.key}/ready"))
    assert said["rank"] == 0 and "IntegrityError" in said["error"]
    # the round its receivers joined is failed too, naming rank 0, after it passed files on
    offer = {"revision": "main", "attempt": 0,
             "files": [{"path": p, "etag": e} for p, e in _etags(folder, card)]}
    round_plan = fanout._round(plan, offer)
    assert plan.store.check([f"{round_plan.key}/file/0"])  # config.json went out
    failure = fanout._failed(round_plan)
    assert failure is not None and failure.rank == 0 and "IntegrityError" in str(failure)
    # a try after the failure meets in a round of its own
    assert fanout._attempts[(plan.base, fanout._same_files(offer))] == 1


def _etags(folder: Path, card: dict) -> list[tuple[str, str]]:
    from hubloader.hub.snapshot import fetch_order
    from hubloader.hub.sources import open_source

    listing = open_source(str(folder)).list_files(None)
    etags = {f.path: f.etag for f in listing.files}
    return [(p, etags[p]) for p in sorted(card, key=fetch_order)]


DIES = """
import json, os, signal, sys, threading, time, torch.distributed as dist
import hubloader
if os.environ.get("JOB_STORE"):  # served from outside the nodes: it outlives node 0
    host, port = os.environ["JOB_STORE"].split(":")
    dist.init_process_group("gloo", store=dist.TCPStore(host, int(port), is_master=False),
                            rank=int(os.environ["RANK"]),
                            world_size=int(os.environ["WORLD_SIZE"]))
else:  # served by rank 0's own process, as init_process_group does outside torchrun
    dist.init_process_group("gloo")
rank, node = dist.get_rank(), int(os.environ["GROUP_RANK"])
if node == 0:  # killed between files: its first shard passed on, its second still coming
    snapshots = os.path.join(os.environ["HUBLOADER_HOME"], "models",
                             f"s3--fan--{sys.argv[3]}", "snapshots")
    def die():
        while not any(os.path.exists(os.path.join(snapshots, d, sys.argv[2]))
                      for d in (os.listdir(snapshots) if os.path.isdir(snapshots) else [])):
            time.sleep(0.002)
        time.sleep(0.5)  # (the first shard takes milliseconds from node to node here)
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=die, daemon=True).start()
dist.barrier()
out = {"node": node, "home": os.environ["HUBLOADER_HOME"], "started": time.time()}
try:
    out["path"] = str(hubloader.download(f"s3://fan/{sys.argv[3]}"))
    out["error"] = None
except Exception as err:
    out.update(error=type(err).__name__, rank=getattr(err, "rank", None), message=str(err))
out["returned"] = time.time()
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(out, f)
os._exit(0)  # no teardown of the group: node 0 is gone
"""


@pytest.mark.parametrize("store", ["outside", "rank 0"])
def test_node_0_killed_between_files_is_named_on_every_rank(weed, tmp_path, store):
    """Node 0 dies (SIGKILL) after passing on its first shard, while its second is still
    coming from the store: nodes 1 and 2 raise PeerTransferError naming rank 0 within
    ``HUBLOADER_FANOUT_TIMEOUT``, not after ``HUBLOADER_LOCK_TIMEOUT``, and show nothing in
    their snapshots. ``outside``: the job's store is served from here and outlives node 0;
    ``rank 0``: rank 0's process serves it (``init_process_group`` outside torchrun's shared
    store), and it goes with node 0."""
    folder = tmp_path / "source"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    rng = random.Random(300)
    for i, size in enumerate((FIRST, SECOND)):
        (folder / f"model-{i + 1:05d}-of-00002.safetensors").write_bytes(rng.randbytes(size))
    weed.upload_dir("fan", f"dies-{store.replace(' ', '')}", folder)
    proxy = servers.FaultProxy(weed.s3_port)
    proxy.throttle_bps = 2e6  # per connection: the second shard takes about 2 s
    script = tmp_path / "worker.py"
    script.write_text(DIES)
    results = tmp_path / "results"
    results.mkdir()
    homes = [tmp_path / f"node{i}" for i in range(3)]
    timeout = 5.0
    # the launchers' rendezvous and the job's store are served from here, as from a host
    # of their own: node 0's launcher going down with its worker takes neither along
    import torch.distributed as dist

    rdzv_port, job_port = servers.free_port(), servers.free_port()
    stores = [dist.TCPStore("127.0.0.1", port, is_master=True, multi_tenant=True,
                            wait_for_workers=False)
              for port in ((rdzv_port, job_port) if store == "outside" else (rdzv_port,))]
    model = f"dies-{store.replace(' ', '')}"
    runs = _launch(script, results, homes, proxy, 1, "model-00001-of-00002.safetensors", model,
                   rdzv_port=rdzv_port,
                   **({"JOB_STORE": f"127.0.0.1:{job_port}"} if store == "outside" else
                      {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}),
                   HUBLOADER_FANOUT_CHUNK_MB="0.25", HUBLOADER_FANOUT_TIMEOUT=str(timeout),
                   HUBLOADER_LOCK_TIMEOUT="60")
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and len(list(results.iterdir())) < 2:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        errs = _stop(runs)
        proxy.close()
        del stores
    said = {int(p.stem[4:]): json.loads(p.read_text()) for p in results.iterdir()}
    assert sorted(said) == [1, 2], errs
    for rank in (1, 2):
        r = said[rank]
        assert r["error"] == "PeerTransferError" and r["rank"] == 0, r
        assert "rank 0" in r["message"], r
        assert r["returned"] - r["started"] < timeout + 10, r  # not HUBLOADER_LOCK_TIMEOUT
        home = Path(r["home"])  # (a c10d rendezvous ranks its nodes by process id)
        assert home in homes and not list(home.glob(f"models/s3--fan--{model}/snapshots/*/*"))
        checked, problems = _verify(home)
        assert problems == [], (home, problems)
    assert len(_weight_gets(proxy, model)) == 2  # node 0's own, one GET a shard


def test_a_receiver_waits_while_node_0_beats_and_names_it_once_the_beat_stops():
    import threading

    import torch.distributed as dist
    from hubloader.errors import PeerTransferError
    from hubloader.hub import fanout

    plan = fanout._Plan(dist.HashStore(), "test/beat", "test/beat", 1, 2, 1, 1, 1 << 16, 0.3)
    plan.store.set("test/beat/rank/0", "0")
    beat = fanout._Beat(plan)
    try:  # node 0 takes three timeouts to land its next file, beating all along
        threading.Timer(0.9, plan.store.set, ("test/beat/file/0", "entry")).start()
        assert fanout._wait_key(plan, "test/beat/file/0", 30, watch=True, alive=True) == \
            b"entry"
    finally:
        beat.stop()
    started = time.monotonic()
    with pytest.raises(PeerTransferError, match="rank 0.*no sign of life") as caught:
        fanout._wait_key(plan, "test/beat/file/1", 30, watch=True, alive=True)
    assert caught.value.rank == 0
    assert time.monotonic() - started < 5  # the beat's timeout, not the wait's limit
