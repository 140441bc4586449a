"""Where the cold path's time goes: scenario 9's prefetch child, phase by phase.

    python benchmarks/profile_cold.py [--runs 5] [--label NAME] [--shard-layers 64]
        [--beside-torch] [--uri] [--autoloader] [--baseline OTHER_CHECKOUT]

Each run is a fresh process (benchmarks/_profile_worker.py) doing what ``hubloader.prefetch``'s
child does, ``hubloader.hub.download(NAME)`` of BERT-base from SeaweedFS with the card's sha256s,
into an empty cache (``--uri``: of its ``s3://`` URI, no card, so the digests come from the
source's HEADs; ``--autoloader``: the parent of scenario 9 instead, ``AutoLoader`` spawning
that child, up to the model ready). ``--beside-torch`` starts ``import torch`` in another
process at the same moment, as AutoLoader's parent does. The medians go into
benchmarks/profile_cold.json under ``--label`` (default: the current commit) and into the
"Scenario 9: where the cold path's time goes" section of benchmarks/RESULTS.md, one column per
saved label. ``--baseline`` measures another checkout (a ``git worktree`` of an older commit)
in turn with this one, round by round.
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

from run import HERE, _compile_bytecode

from fetch_scenarios import BUCKET, Bench
from peer_scenarios import _checkpoint

WORKER = HERE / "_profile_worker.py"
SAVED = HERE / "profile_cold.json"
HEADING = "## Scenario 9: where the cold path's time goes"
_KEEP = 6  # columns (labels) shown per model


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_once(name: str, env: dict, beside_torch: bool, server_pid: int,
              autoloader: bool = False) -> dict:
    torch_proc = None
    server_cpu = _cpu(server_pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    if beside_torch:
        torch_proc = subprocess.Popen([sys.executable, "-c", "import torch"], env=env)
    proc = subprocess.run([sys.executable, str(WORKER), *(["--autoloader"] if autoloader else []),
                           name], capture_output=True, text=True, env=env)
    exited = time.monotonic()
    server_cpu = _cpu(server_pid) - server_cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # (the worker's, it has ended)
    worker_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if torch_proc is not None:  # (after the worker's rusage: not counted with it)
        torch_proc.wait()
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["spawn"], out["exited"], out["server_cpu"] = t0, exited, server_cpu
    out["worker_cpu"] = worker_cpu
    return out


def _scale(row: str) -> int:
    """Seconds are shown in ms; counts as they are."""
    return 1 if row.endswith("(count)") else 1000


def phases(run: dict) -> dict[str, float]:
    """One run's phases in seconds (keys are the table's rows, in order)."""
    m, spawn = run["marks"], run["spawn"]
    if "ready" in m:  # the AutoLoader parent
        return {
            "parent: spawn -> prefetch child spawned": m["child_spawned"] - spawn,
            "parent: spawn -> join reached (torch, model classes imported)":
                m["join_start"] - spawn,
            "parent: in the join (reading shards as they land, then the answer)":
                m["join_end"] - m["join_start"],
            "parent: join -> model ready (build, load)": m["ready"] - m["join_end"],
            "parent: TOTAL spawn -> model ready": m["ready"] - spawn,
            "CPU of SeaweedFS (spawn -> exit)": run["server_cpu"],
        }
    reqs, files = run["requests"], run["files"]
    weights = sorted((f for f in files if f.endswith((".safetensors", ".bin"))),
                     key=lambda f: files[f]["fetch_start"])
    listing = next(r for r in reqs if r["op"] == "ListObjectsV2")
    heads = [r for r in reqs if r["op"] == "HeadObject"]
    gets = [r for r in reqs if r["op"] == "GetObject"]
    first_get = min(r["sent"] for r in gets)
    wstart = min(files[f]["fetch_start"] for f in weights)
    wgets = [r for r in gets if r["sent"] >= wstart]
    last_byte = max(files[f]["last_byte"] for f in weights)
    fetched = max(f["fetch_end"] for f in files.values())
    out = {
        "interpreter start": m["main"] - spawn,
        "import hubloader.hub (the child's import)": m["hubloader_imported"] - m["main"],
        "import hubloader's fetch modules (locate, snapshot, sources)":
            m["fetch_modules_imported"] - m["hubloader_imported"],
        "download() up to the S3 client (card, locks, cache checks)":
            m["client_asked"] - m["download_start"],
        "import botocore": m["boto3_imported"] - m["client_asked"],
        "S3 client creation (and boto3's import, where make_client uses boto3)":
            m["client_made"] - m["boto3_imported"],
        "  import + client, together": m["client_made"] - m["client_asked"],
        "ListObjectsV2 (request -> answer)": listing["answered"] - listing["sent"],
        "HEAD requests (count)": len(heads),
        "HEAD requests (summed)": sum(r["answered"] - r["sent"] for r in heads),
        "listing answered -> first GET sent (select, manifest, locks, HEADs)":
            first_get - listing["answered"],
        "small files (config, index: GET -> last byte, before the weights)":
            wstart - first_get,
        "weights: first GET sent -> headers": min(r["answered"] for r in wgets) - min(
            r["sent"] for r in wgets),
        "weights: GETs (count)": len(wgets),
        "weights: transfer (first GET sent -> last byte)":
            last_byte - wstart,
        "sha256 (CPU of its thread; overlaps the transfer)":
            sum(files[f].get("hash_s", 0.0) for f in files),
        "hash tail after the last byte": max(files[f]["hash_end"] for f in weights) - last_byte,
        "last byte -> fetch_file returns (hash tail, verify, rename)":
            max(files[f]["fetch_end"] for f in weights) - last_byte,
        "store (blob link, snapshot link; summed)":
            sum(f.get("store_s", 0.0) for f in files.values()),
        "manifest writes (summed)": m.get("manifest_s", 0.0),
        "last file fetched -> answer (manifest, ref, locks)": m["answer"] - fetched,
        "flush of the blobs (atexit)": m["flushed"] - m["answer"],
        "interpreter exit": run["exited"] - spawn - (m["flushed"] - spawn),
        "TOTAL spawn -> answer (what the parent waits for)": m["answer"] - spawn,
        "TOTAL spawn -> exit": run["exited"] - spawn,
        "CPU of the child up to the answer: user": m["cpu_user"],
        "CPU of the child up to the answer: system": m["cpu_sys"],
        "CPU of the child after the answer: the flush": m["cpu_flushed"] - m["cpu_user"]
            - m["cpu_sys"],
        "CPU of the child after the answer: the exit": run["worker_cpu"] - m["cpu_flushed"],
        "CPU of SeaweedFS (spawn -> exit)": run["server_cpu"],
    }
    return out


def render(saved: dict) -> list[str]:
    """The RESULTS.md section for the saved profiles (the last few labels per model)."""
    if not saved:
        return []
    lines = [HEADING, "",
             "Written by `python benchmarks/profile_cold.py`: the prefetch child of scenario 9 "
             "(`hubloader.hub.download` of the model, card sha256s, empty cache), one fresh "
             "process per run, timed phase by phase (benchmarks/_profile_worker.py). Medians "
             "in ms (counts as they are); one column per code version measured. Steps that "
             "overlap (hashing, the transfer) are shown on their own, so the rows do not add "
             "up to the total. The AutoLoader tables time scenario 9's own process "
             "(`--autoloader`): whether it waits for the child at the join.", ""]
    for model, by_label in saved.items():
        labels = list(by_label)[-_KEEP:]
        rows = list(dict.fromkeys(k for lab in labels for k in by_label[lab]["phases"]))
        lines += [f"### {model}", "",
                  "| phase | " + " | ".join(f"{lab} ({by_label[lab]['runs']} runs)"
                                              for lab in labels) + " |",
                  "|---|" + "---|" * len(labels)]
        for row in rows:
            cells = []
            for lab in labels:
                vals = by_label[lab]["phases"].get(row)
                cells.append("" if vals is None else f"{_scale(row) * statistics.median(vals):.0f}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_section(saved: dict) -> None:
    """Replace (or append) the section in RESULTS.md."""
    from _report import write_section as put

    put(render(saved))


def _label(root: Path) -> str:
    try:
        return "commit " + subprocess.run(["git", "log", "-1", "--format=%h"], capture_output=True,
                                          text=True, cwd=root, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(root)


def profile(model: str, ckpt: Path, args, saved: dict) -> None:
    bench = Bench()
    try:
        files = {p.name: p for p in sorted(ckpt.iterdir()) if p.is_file()}
        name = f"bench-{ckpt.name}"
        bench.publish(name, files)
        if args.uri:  # no card: the digests come from the source (HEADs)
            name = f"s3://{BUCKET}/models/{name}/"
        home = bench.tmp / "home"
        env = {**os.environ, **bench.env(home=home), "AWS_EC2_METADATA_DISABLED": "true"}
        roots = {args.label or _label(HERE.parent): HERE.parent}
        versions = {args.label or _label(HERE.parent): env}
        if args.baseline:  # its hubloader first on sys.path, ahead of the installed one
            base = _label(args.baseline)
            roots = {base: args.baseline.resolve(), **roots}
            versions = {base: {**env, "PYTHONPATH": str(roots[base])}, **versions}
        runs: dict[str, list[dict]] = {label: [] for label in versions}
        for i in range(args.runs + 1):  # the first round untimed (SeaweedFS' own warm-up)
            order = list(versions) if i % 2 else list(reversed(versions))
            for label in order:
                shutil.rmtree(home, ignore_errors=True)
                os.sync()
                run = _run_once(name, versions[label], args.beside_torch, bench.weed.proc.pid,
                                args.autoloader)
                if not Path(run["hubloader"]).is_relative_to(roots[label]):
                    raise RuntimeError(f"{label}: measured {run['hubloader']}")
                if i:
                    runs[label].append(phases(run))
        suffix = (" (s3:// URI, no card)" if args.uri else "") + (
            " (beside import torch)" if args.beside_torch else "")
        table = f"{model}: the AutoLoader parent" if args.autoloader else model
        for label, done in runs.items():
            rows = {k: [r[k] for r in done] for k in done[0]}
            saved.setdefault(table, {})[label + suffix] = {"runs": len(done), "phases": rows}
        for row in runs[label][0]:
            print(f"{row[:70]:70s}" + "".join(
                f" {_scale(row) * statistics.median([r[row] for r in done]):7.0f}"
                for done in runs.values()))
        print(" " * 70 + "".join(f" {label[:7]:>7s}" for label in runs))
    finally:
        bench.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--label", help="the column's name (default: the current commit)")
    parser.add_argument("--bert-layers", type=int, default=12)
    parser.add_argument("--shard-layers", type=int, default=0,
                        help="also the sharded BERT of scenario 9 (64 = 2 GB in 4 shards)")
    parser.add_argument("--beside-torch", action="store_true",
                        help="run `import torch` in another process at the same time")
    parser.add_argument("--autoloader", action="store_true",
                        help="time the AutoLoader parent (spawn, join, ready), not the child")
    parser.add_argument("--uri", action="store_true",
                        help="fetch the s3:// URI instead of the card name (no card sha256s)")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout of hubloader (git worktree) measured in turn")
    parser.add_argument("--no-report", action="store_true", help="print, do not save")
    args = parser.parse_args(argv)
    _compile_bytecode()
    saved = json.loads(SAVED.read_text()) if SAVED.exists() else {}
    models = {"BERT-base, 1 file": _checkpoint(args.bert_layers, None)}
    if args.shard_layers:
        models[f"BERT {args.shard_layers} layers, 4 shards"] = _checkpoint(args.shard_layers,
                                                                            "500MB")
    for model, ckpt in models.items():
        print(f"== {model}", flush=True)
        profile(model, ckpt, args, saved)
    if not args.no_report:
        SAVED.write_text(json.dumps(saved, indent=1))
        write_section(saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
