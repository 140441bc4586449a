"""Where scenario 9b's CPU goes: each tool's cold process, its wall time and the CPU of its
whole process tree (the prefetch child included) and of SeaweedFS, interleaved round by round.

    python benchmarks/cpu_accounting.py [--runs 5] [--busy] [--shard-layers 64]
        [--baseline OTHER_CHECKOUT] [--tools hubloader-auto,boto3-file,...]

The tools are benchmarks/_peer_worker.py's modes (``torch``: ``import torch`` alone, the
floor). "CPU by then" is the tree's CPU when the model is ready (the worker's own count,
the prefetch child reaped); the user and system columns run to the process's exit, so they
include the interpreter's teardown, which a process that imported torch pays after the
figure that matters. ``--busy`` runs a process spinning on one core for the whole run, as
scenario 9b's "beside a CPU-bound neighbour"; ``--baseline`` measures the hubloader modes of
another checkout (a ``git worktree`` of an older commit) in turn with this one. On a machine
where the cold path is bound by total CPU (a busy core), the wall time follows the CPU a
tool needs by the time its model is ready, and how much of it runs beside other work; this
is the table that shows it. Prints a Markdown table; the figures quoted in RESULTS.md's
scenario 9b come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import _compile_bytecode

from fetch_scenarios import Bench
from peer_scenarios import WORKER, _BUSY, _checkpoint, _published

_TOOLS = "hubloader-auto,hubloader-prefetch,boto3-file,boto3-file-tuned,torch"


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _argv(mode: str, name: str, uris: str, config: str) -> list[str]:
    if mode == "torch":
        return [mode]
    return [mode, name] if mode.startswith("hubloader") else [mode, uris, config]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--shard-layers", type=int, default=0,
                        help="BERT of this many layers in 4 shards instead of BERT-base")
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--tools", default=_TOOLS)
    args = parser.parse_args()
    _compile_bytecode()
    ckpt = _checkpoint(args.shard_layers, "500MB") if args.shard_layers else _checkpoint(12, None)
    tools = [(t, None) for t in args.tools.split(",")]
    if args.baseline:
        tools = [(t, args.baseline.resolve()) for t, _ in tools if t.startswith("hubloader")] \
            + tools
    bench = Bench()
    busy = subprocess.Popen([sys.executable, "-c", _BUSY]) if args.busy else None
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    try:
        name, uris, home, env = _published(bench, ckpt, "float32")
        env.update(OMP_NUM_THREADS="1", BENCH_CPU_AT_READY="1")
        config = str(ckpt / "config.json")
        for _ in range(args.runs):
            for mode, root in tools:
                label = mode + (f" ({root.name})" if root else "")
                shutil.rmtree(home, ignore_errors=True)  # cold: nothing cached
                os.sync()
                extra = {"PYTHONPATH": str(root)} if root else {}
                before, weed = resource.getrusage(resource.RUSAGE_CHILDREN), \
                    _cpu_of(bench.weed.proc.pid)
                t0 = time.monotonic()
                proc = subprocess.run([sys.executable, str(WORKER),
                                       *_argv(mode, name, uris, config)],
                                      capture_output=True, text=True,
                                      env={**os.environ, **env, **extra})
                if proc.returncode:
                    raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
                said = json.loads(proc.stdout.strip().splitlines()[-1])
                wall = said["done_at"] - t0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                rows.setdefault(label, []).append((
                    wall, said["cpu_at_ready"], after.ru_utime - before.ru_utime,
                    after.ru_stime - before.ru_stime, _cpu_of(bench.weed.proc.pid) - weed))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
        bench.close()
    print("| tool | spawn -> model ready | CPU by then | CPU user, to exit | CPU system, to exit "
          "| CPU of SeaweedFS |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, vals in rows.items():
        med = [statistics.median(v[i] for v in vals) for i in range(5)]
        print(f"| {label} | " + " | ".join(f"{m:.2f} s" for m in med) + " |")


if __name__ == "__main__":
    main()
