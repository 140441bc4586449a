"""Scenario 9: a cold process from S3 to a ready model, against the loaders a user would pick
for speed. Every run is a fresh interpreter with an empty cache (or destination folder); the
time counts from before the spawn to the moment the model (or the state dict) is ready.

    python benchmarks/run.py --only cold-s3 [--runs 5] [--cold-shard-layers 64]

Two checkpoints: BERT-base in one file, and a sharded multi-GB BERT (``--cold-shard-layers``
layers in 4 shards). ``import torch`` alone is the floor; ``hubloader download`` alone and
the load from a local copy give the second target's bound.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import DATA, HERE, Series, Verdict, interleave

sys.path.insert(0, str(HERE.parent / "tests"))
import servers  # noqa: E402  (the test suite's SeaweedFS)

WORKER = HERE / "_cold_worker.py"
BUCKET = "cold"
HUB_TOOLS = ("hubloader AutoLoader", "hubloader prefetch + from_pretrain")
PEERS = ("runai-model-streamer -> state dict -> model", "boto3 download_file + safetensors load_file",
         "transformers from_pretrained after boto3 download_file")
MODES = {"hubloader AutoLoader": "hub-auto", "hubloader prefetch + from_pretrain": "hub-prefetch",
         "hubloader from_pretrain after the import (serial)": "hub-serial",
         PEERS[0]: "runai", PEERS[1]: "boto3-st", PEERS[2]: "transformers",
         "import torch alone (floor)": "torch", "hubloader download alone (no torch)": "download"}


def _checkpoint(layers: int, shard: str | None) -> Path:
    """A BERT checkpoint in Hugging Face format (random init, fixed seed)."""
    d = DATA / (f"cold-bert-{layers}l" + (f"-{shard}" if shard else ""))
    if (d / "config.json").is_file():
        return d
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(num_hidden_layers=layers))
    model.save_pretrained(d, **({"max_shard_size": shard} if shard else {}))
    return d


def _measure(mode: str, prefix: str, env: dict, local: Path) -> float:
    scratch = Path(tempfile.mkdtemp(prefix="hubloader-cold-"))
    try:
        run_env = {**env, "HUBLOADER_HOME": str(scratch / "home")}
        dest = str(local if mode == "load-local" else scratch / "dest")
        args = [sys.executable, str(WORKER), mode, f"s3://{BUCKET}/{prefix}", BUCKET, prefix, dest]
        start = time.time()
        proc = subprocess.run(args, capture_output=True, text=True, env=run_env)
        if proc.returncode:
            raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return out["load_s"] if mode == "load-local" else out["ready"] - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _one(args, weed, label: str, local: Path, results, verdicts) -> None:
    import os

    prefix = local.name
    weed.upload_dir(BUCKET, prefix, local)
    env = {**os.environ, **weed.env(), "HUBLOADER_S3_ENDPOINT_URL": weed.endpoint,
           "HUBLOADER_DISABLE_PROGRESS_BARS": "1", "AWS_DEFAULT_REGION": "us-east-1",
           "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0"}
    measures = {tool: (lambda m=mode: _measure(m, prefix, env, local)) for tool, mode in MODES.items()}
    measures["load from a local copy (in-process)"] = lambda: _measure("load-local", prefix, env, local)
    data = interleave(args.runs, measures)
    scenario = f"9. cold process, S3 -> ready model: {label}"
    for tool, vals in data.items():
        results.append(Series(scenario, tool, "s", vals))
    med = {tool: statistics.median(v) for tool, v in data.items()}
    best_hub = min(med[t] for t in HUB_TOOLS)
    ratios = ", ".join(f"{med[p] / best_hub:.2f}x {p.split(' ')[0]}" for p in PEERS)
    ahead = min(med[p] for p in PEERS) / best_hub
    verdicts.append(Verdict(f"9. cold S3 ({label})",
                            f"peers / hubloader: {ratios} (target >= 1.30x every peer)",
                            ahead >= 1.3))
    bound = max(med["import torch alone (floor)"], med["hubloader download alone (no torch)"]) \
        + med["load from a local copy (in-process)"]
    verdicts.append(Verdict(f"9. cold S3 ({label}) overlap",
                            f"hubloader / (max(import torch, download) + load) = "
                            f"{best_hub / bound:.2f} (target <= 1.15)", best_hub / bound <= 1.15))


def scenario_cold_s3(args, results, verdicts):
    weed = servers.SeaweedFS().start()
    try:
        weed.ensure_bucket(BUCKET)
        _one(args, weed, "BERT-base, 1 file", _checkpoint(12, None), results, verdicts)
        layers = args.cold_shard_layers
        _one(args, weed, f"BERT {layers} layers, 4 shards",
             _checkpoint(layers, "500MB"), results, verdicts)
    finally:
        weed.stop()


SCENARIOS = {"cold-s3": scenario_cold_s3}
