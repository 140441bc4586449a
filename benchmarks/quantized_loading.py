"""Weight-only quantized loading: memory and quality of ``from_pretrain(..., quantization=)``.

A random Llama (8 layers, hidden 768, vocab 8000, about 62 M parameters) is saved in fp32 by
transformers; each mode loads it in a fresh process (interleaved rounds) reporting load time,
peak RSS and parameter bytes; quality is measured in one process against the fp32 load:
the largest logit difference (absolute, and relative to the largest fp32 logit), next-token
agreement under teacher forcing, and greedy agreement over 8 prompts x 32 new tokens.
The peer is transformers' own torchao integration (``TorchAoConfig``) on the same file.

    python benchmarks/quantized_loading.py [--rounds 3]

Writes the section "Quantized loading" of benchmarks/RESULTS.md (replacing an earlier one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ["hubloader fp32", "hubloader int8", "hubloader int4", "transformers int8 (TorchAoConfig)"]
SECTION = "## Quantized loading (torchao, weight-only)"


def _make_model(d: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=8000, hidden_size=768, intermediate_size=2048,
                                   num_hidden_layers=8, num_attention_heads=12,
                                   num_key_value_heads=4, initializer_range=0.05)
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(d))


def _load(mode: str, d: str):
    if mode.startswith("hubloader"):
        from hubloader.models import LlamaForCausalLM

        q = mode.split()[-1]
        return LlamaForCausalLM.from_pretrain(d, quantization=None if q == "fp32" else q)
    import transformers
    from torchao.quantization import Int8WeightOnlyConfig

    return transformers.AutoModelForCausalLM.from_pretrained(
        d, dtype="float32", quantization_config=transformers.TorchAoConfig(Int8WeightOnlyConfig()))


def _child(mode: str, d: str) -> None:
    import torch  # noqa: F401  (imports outside the timed load: torchao's takes over a second)
    import torchao.quantization  # noqa: F401

    from hubloader.load.quantization import parameter_bytes

    t0 = time.perf_counter()
    model = _load(mode, d)
    seconds = time.perf_counter() - t0
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    print(json.dumps({"seconds": seconds, "param_bytes": parameter_bytes(model),
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "anon_after": int(status["RssAnon"].split()[0]) * 1024,
                      "file_after": int(status["RssFile"].split()[0]) * 1024}))


def _quality(d: str) -> dict[str, dict[str, float]]:
    import torch

    full = _load("hubloader fp32", d)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 8000, (8, 16), generator=g)
    with torch.no_grad():
        ref_logits = full(ids)["logits"]
    ref_greedy = full.generate(ids, max_new_tokens=32, eos_token_id=[])
    out = {}
    for mode in MODES[1:]:
        try:
            model = _load(mode, d)
        except Exception as err:  # the peer may refuse: report it
            out[mode] = {"error": f"{type(err).__name__}: {err}"[:200]}
            continue
        with torch.no_grad():
            logits = model(ids)["logits"] if mode.startswith("hubloader") else model(ids).logits
        greedy = (model.generate(ids, max_new_tokens=32, eos_token_id=[]) if mode.startswith(
            "hubloader") else model.generate(ids, attention_mask=torch.ones_like(ids),
                                             max_new_tokens=32, do_sample=False,
                                             eos_token_id=None, pad_token_id=0))
        diff = (logits - ref_logits).abs().max().item()
        out[mode] = {
            "max_logit_diff": diff, "relative": diff / ref_logits.abs().max().item(),
            "next_token_agreement": (logits.argmax(-1) == ref_logits.argmax(-1)).float().mean().item(),
            "greedy_token_agreement": (greedy[:, 16:] == ref_greedy[:, 16:]).float().mean().item(),
            "greedy_identical_rows": int((greedy == ref_greedy).all(dim=1).sum()),
        }
    return out


def _write(results: dict, quality: dict, rounds: int) -> None:
    def med(mode, key):
        return statistics.median(r[key] for r in results[mode])

    mib = 2**20
    base = med(MODES[0], "param_bytes")
    lines = [SECTION, "",
             f"Written by `python benchmarks/quantized_loading.py --rounds {rounds}`: a random "
             "Llama (8 layers, hidden 768, vocab 8000, 62 M parameters, fp32 safetensors written by "
             "transformers); each mode loads it in a fresh process, modes interleaved, medians of "
             f"{rounds} rounds. This machine is shared and noisy (load average above its 2 cores): "
             "compare within a run. Quality against the fp32 load on 8 random prompts of 16 tokens; "
             "random weights give near-tied logits, so agreement is a harsh test.",
             "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"{_versions()}", "",
             "| mode | parameter memory | vs fp32 | peak RSS | RSS after: anonymous / file | load "
             "time | max logit diff (relative) | next-token agreement | greedy tokens agreeing "
             "(rows identical of 8) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        if mode not in results:
            continue
        q = quality.get(mode, {})
        qual = ("| — | — | — |" if mode == MODES[0] else
                f"| {q['error']} | | |" if "error" in q else
                f"| {q['max_logit_diff']:.4f} ({q['relative']:.2%}) | "
                f"{q['next_token_agreement']:.1%} | {q['greedy_token_agreement']:.1%} "
                f"({q['greedy_identical_rows']}) |")
        lines.append(f"| {mode} | {med(mode, 'param_bytes') / mib:.1f} MiB | "
                     f"{base / med(mode, 'param_bytes'):.2f}x smaller | "
                     f"{med(mode, 'peak_rss') / mib:.0f} MiB | {med(mode, 'anon_after') / mib:.0f} / "
                     f"{med(mode, 'file_after') / mib:.0f} MiB | {med(mode, 'seconds'):.2f} s " + qual)
    lines += ["", "Peak RSS counts the checkpoint's pages mapped while the float weights are read "
              "(safetensors is memory-mapped; those pages are the page cache's, not the process's "
              "heap) and the libraries' code (torch, torchao, transformers); the anonymous memory "
              "after the load is what the model holds. Load time excludes the imports (torchao's "
              "takes over a second).",
              "", "The embedding and the norms stay in float32 (as transformers' torchao integration "
              "leaves them); `int4` on a CPU is torchao's `IntxWeightOnlyConfig(int4, group 32)`, "
              "which keeps one value per byte, so its memory is int8's (on CUDA, `int4` is the "
              "tile-packed `Int4WeightOnlyConfig`).", ""]
    path = HERE / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + (text[nxt + 1:] if nxt >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines), encoding="utf-8")


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{n} {version(n)}" for n in ("torch", "torchao", "transformers"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"))
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _make_model(Path(tmp))
        results: dict[str, list] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
                run = subprocess.run([sys.executable, __file__, "--child", mode, tmp],
                                     capture_output=True, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="2"))
                if run.returncode:
                    print(f"{mode}: failed\n{run.stderr[-2000:]}", file=sys.stderr)
                    continue
                results[mode].append(json.loads(run.stdout.strip().splitlines()[-1]))
        results = {m: v for m, v in results.items() if v}
        quality = _quality(tmp)
    print(json.dumps({"results": results, "quality": quality}, indent=1))
    _write(results, quality, args.rounds)


if __name__ == "__main__":
    main()
