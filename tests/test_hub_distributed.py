"""torch.distributed: under ``torchrun --nproc_per_node=4`` (gloo), only local rank 0 lists
and fetches; the other ranks wait at a barrier and read the warm cache. Counted at the proxy."""

from __future__ import annotations

import os
import random
import subprocess
import sys

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


@pytest.fixture(scope="module")
def dist_model(weed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(random.Random(1).randbytes(2 << 20))
    weed.upload_dir("dist", "model", folder)
    return folder


def test_torchrun_one_fetcher_per_node(weed, hub_env, dist_model, tmp_path):
    proxy = servers.FaultProxy(weed.s3_port)
    try:
        script = tmp_path / "worker.py"
        script.write_text(SCRIPT)
        results = tmp_path / "results"
        results.mkdir()
        env = dict(os.environ, PYTHONPATH=str(WORKTREE), HUBLOADER_S3_ENDPOINT_URL=proxy.url,
                   OMP_NUM_THREADS="1")
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                              "--nproc_per_node=4", str(script), str(results)],
                             env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-3000:]
        lines = sorted(p.read_text() for p in results.iterdir())
        assert [l.split()[0] for l in lines] == [f"rank={i}" for i in range(4)], run.stdout
        assert len({l.split()[1] for l in lines}) == 1
        gets = proxy.get_lines()
        listings = [g for g in gets if "list-type=2" in g]
        weights = [g for g in gets if "/dist/model/model.safetensors" in g]
        assert len(listings) == 1, gets  # ranks 1-3 never touched the network
        assert len(weights) == 1, gets
    finally:
        proxy.close()
