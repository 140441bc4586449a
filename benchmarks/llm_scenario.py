"""Scenario 8: a cold process from S3 to the first generated token, for a synthetic 1.1B-parameter
Llama in bf16 (TinyLlama's shape, 2.2 GB) in 4 shards on SeaweedFS; and the process's peak RSS.

hubloader (card name -> snapshot -> load -> generate) runs interleaved against transformers fed
by boto3 downloads, and against runai-model-streamer streaming the shards from S3 into a state
dict that transformers' model is then built from. Each run starts a fresh process with an empty
download directory and an empty hubloader cache.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fetch_scenarios import BUCKET, Bench, _sha256
from run import DATA, HERE, Series, Verdict, _machine, interleave

sys.path.insert(0, str(HERE.parent / "tests"))
from synthetic_llama import write_synthetic_llama  # noqa: E402  (shared with the memory test)

WORKER = HERE / "_llm_worker.py"
NAME = "bench-llama-1b"


def _checkpoint(layers: int | None) -> tuple[Path, int]:
    d = DATA / f"llama-1b-{layers or 'full'}"
    cfg = {"num_hidden_layers": layers} if layers else {}
    marker = d / "bytes.txt"
    if not marker.is_file():
        shutil.rmtree(d, ignore_errors=True)
        nbytes = write_synthetic_llama(d, cfg, shards=4)
        marker.write_text(str(nbytes))
    return d, int(marker.read_text())


def _publish(bench: Bench, src: Path) -> None:
    lines = []
    for path in sorted(src.iterdir()):
        if path.name == "bytes.txt":
            continue
        bench.s3.upload_file(str(path), BUCKET, f"models/{NAME}/{path.name}")
        lines.append(f"  - path: {path.name}\n    size: {path.stat().st_size}\n"
                     f"    sha256: {_sha256(path)}")
    (bench.cards / f"{NAME}.md").write_text(
        f"---\nname: {NAME}\ntasks: [text-generation]\nlicense: MIT\nauthor: bench\n"
        f"architecture: llama\nfiles:\n" + "\n".join(lines) + "\n---\n")


def scenario_llm(args, results, verdicts):
    src, nbytes = _checkpoint(getattr(args, "llm_layers", None))
    bench = Bench()
    try:
        _publish(bench, src)
        dest = bench.tmp / "dl"
        rss: dict[str, list[float]] = {}
        env = {**bench.env(), "AWS_ENDPOINT_URL": bench.weed.endpoint,
               "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0", "TOKENIZERS_PARALLELISM": "false"}

        def measure(label: str, argv: list[str]):
            def run() -> float:
                shutil.rmtree(dest, ignore_errors=True)
                shutil.rmtree(bench.tmp / "home", ignore_errors=True)
                dest.mkdir()
                os.sync()  # no write-back of the previous run's files during this one
                t0 = time.time()
                proc = subprocess.run([sys.executable, str(WORKER), *argv], capture_output=True,
                                      text=True, env={**os.environ, **env})
                if proc.returncode:
                    raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                rss.setdefault(label, []).append(out["peak_rss"] / 2**30)
                return out["first_token_at"] - t0
            return run

        prefix = f"models/{NAME}/"
        tools = {"hubloader": measure("hubloader", ["hubloader", NAME]),
                 "transformers + boto3 download_file": measure(
                     "transformers + boto3 download_file",
                     ["transformers-boto3", BUCKET, prefix, str(dest)]),
                 "runai-model-streamer -> transformers": measure(
                     "runai-model-streamer -> transformers", ["runai", BUCKET, prefix, str(dest)])}
        load = [os.getloadavg()[0]]
        data = interleave(args.runs, tools)
        load.append(os.getloadavg()[0])
        size = f"{nbytes / 1e9:.1f} GB"
        scen = (f"8. cold S3 -> first token, {nbytes / 2e9:.1f}B-parameter Llama in bf16 ({size}, "
                "4 shards)")
        for tool, vals in data.items():
            results.append(Series(scen, tool, "s", vals))
        for tool, vals in rss.items():  # the warm-up run's figure is left out like its time
            results.append(Series(f"8. peak RSS of that process ({size} weights)", tool, "GiB",
                                  vals[1:] or vals))
        ours = statistics.median(data["hubloader"])
        others = {k: statistics.median(v) for k, v in data.items() if k != "hubloader"}
        best_name = min(others, key=others.get)
        mem = {k: statistics.median(v[1:] or v) for k, v in rss.items()}
        verdicts.append(Verdict(
            f"8. S3 -> first token ({nbytes / 2e9:.1f}B Llama)",
            f"hubloader {ours:.1f} s; {best_name} {others[best_name]:.1f} s "
            f"({others[best_name] / ours:.2f}x); peak RSS hubloader {mem['hubloader']:.2f} GiB, "
            + ", ".join(f"{k} {v:.2f} GiB" for k, v in mem.items() if k != "hubloader")
            + f" (target: ahead of both; {args.runs} rounds on {_machine().split(',')[0]}, "
            f"load average {min(load):.0f}-{max(load):.0f} on {os.cpu_count()} cores)",
            all(ours < v for v in others.values())))
    finally:
        bench.close()


SCENARIOS = {"llm": scenario_llm}
