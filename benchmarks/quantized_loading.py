"""Weight-only quantized loading: memory and quality of ``from_pretrain(..., quantization=)``.

A small Llama (transformers' ``LlamaForCausalLM``: 3 layers, hidden 192, a word-level vocabulary
of 4096) is trained for a fixed CPU time on the source of Python's standard library, so its
logits are not the near-ties of random weights, and saved in fp32 safetensors. Each mode loads
it in a fresh process (interleaved rounds) reporting load time, peak RSS and parameter bytes;
quality is measured in one process against the fp32 load on held-out standard-library modules
the training never saw: the largest logit difference (absolute, and relative to the largest fp32
logit), next-token agreement under teacher forcing, and greedy agreement over 8 prompts x 32 new
tokens. The peer is transformers' own torchao integration (``TorchAoConfig``) on the same file.

    python benchmarks/quantized_loading.py [--rounds 3] [--train-seconds 180]

Writes the section "Quantized loading" of benchmarks/RESULTS.md (replacing an earlier one).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_section

MODES = ["hubloader fp32", "hubloader int8", "hubloader int4", "transformers int8 (TorchAoConfig)"]
SECTION = "## Quantized loading (torchao, weight-only)"


VOCAB = 4096
_TOKEN = re.compile(r"\w+|[^\w\s]|\n| +")
_HELD_OUT = ("argparse.py", "tarfile.py", "pydoc.py")  # never trained on: quality prompts


def _stdlib_text() -> tuple[str, str]:
    """(training text, held-out text) from the standard library's own modules."""
    lib = Path(os.__file__).parent
    files = sorted(f for f in lib.glob("*.py") if f.name not in _HELD_OUT)
    train = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    held = "\n".join((lib / n).read_text(encoding="utf-8") for n in _HELD_OUT)
    return train, held


def _vocabulary(text: str) -> dict[str, int]:
    common = collections.Counter(_TOKEN.findall(text)).most_common(VOCAB - 1)
    return {tok: i + 1 for i, (tok, _) in enumerate(common)}  # 0: any other word


def _ids(text: str, vocab: dict[str, int]):
    import torch

    return torch.tensor([vocab.get(t, 0) for t in _TOKEN.findall(text)], dtype=torch.long)


def _make_model(d: Path, train_seconds: float) -> dict:
    import torch
    import transformers

    torch.manual_seed(0)
    train, held = _stdlib_text()
    vocab = _vocabulary(train)
    data = _ids(train, vocab)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=192, intermediate_size=512,
                                   num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256)
    model = transformers.LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    steps, losses, t0 = 0, [], time.perf_counter()
    while time.perf_counter() - t0 < train_seconds:
        starts = torch.randint(0, len(data) - 65, (16,), generator=g)
        batch = torch.stack([data[s:s + 65] for s in starts.tolist()])
        loss = model(batch[:, :-1], labels=batch[:, :-1]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        steps += 1
    model.save_pretrained(str(d))
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with torch.no_grad():
        held_ids = _ids(held, vocab)[:8 * 128].view(8, 128)
        held_loss = model(held_ids, labels=held_ids).loss.item()
    return {"steps": steps, "train_seconds": round(time.perf_counter() - t0, 1),
            "train_tokens": len(data), "first_loss": losses[0],
            "last_loss": statistics.mean(losses[-10:]), "held_out_loss": held_loss,
            "params": sum(p.numel() for p in model.parameters())}


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


def _quality(d: str) -> dict:
    import torch

    full = _load("hubloader fp32", d)
    vocab = json.loads((Path(d) / "vocab.json").read_text(encoding="utf-8"))
    held = _ids(_stdlib_text()[1], vocab)
    text = held[:8 * 128].view(8, 128)  # teacher-forced: next-token agreement, logit diff
    prompts = held[8 * 128:8 * 128 + 8 * 256].view(8, 256)[:, :16].contiguous()
    with torch.no_grad():
        ref_logits = full(text)["logits"]
    ref_greedy = full.generate(prompts, max_new_tokens=32, eos_token_id=[])
    # how varied fp32's own choices are: agreement means little if it always says one token
    out: dict = {"fp32": {"distinct_next": len(set(ref_logits.argmax(-1).flatten().tolist())),
                          "distinct_greedy": len(set(ref_greedy[:, 16:].flatten().tolist())),
                          "next_token_accuracy": (ref_logits[:, :-1].argmax(-1)
                                                  == text[:, 1:]).float().mean().item()}}
    for mode in MODES[1:]:
        try:
            model = _load(mode, d)
        except Exception as err:  # the peer may refuse: report it
            out[mode] = {"error": f"{type(err).__name__}: {err}"[:200]}
            continue
        with torch.no_grad():
            logits = model(text)["logits"] if mode.startswith("hubloader") else model(text).logits
        greedy = (model.generate(prompts, max_new_tokens=32, eos_token_id=[]) if mode.startswith(
            "hubloader") else model.generate(prompts, attention_mask=torch.ones_like(prompts),
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


def _write(results: dict, quality: dict, rounds: int, trained: dict) -> None:
    def med(mode, key):
        return statistics.median(r[key] for r in results[mode])

    mib = 2**20
    base = med(MODES[0], "param_bytes")
    lines = [SECTION, "",
             f"Written by `python benchmarks/quantized_loading.py --rounds {rounds}`: a small "
             "Llama (transformers' `LlamaForCausalLM`, 3 layers, hidden 192, a word-level "
             f"vocabulary of {VOCAB}, {trained['params'] / 1e6:.1f} M parameters) trained for "
             f"{trained['train_seconds']:.0f} s of CPU ({trained['steps']} steps of 16 x 64 "
             "tokens) on the standard library's own source (loss "
             f"{trained['first_loss']:.2f} → {trained['last_loss']:.2f}; "
             f"{trained['held_out_loss']:.2f} on held-out modules), saved as fp32 safetensors; "
             "each mode loads it in a fresh process, modes interleaved, medians of "
             f"{rounds} rounds. This machine is shared and noisy (load average above its 2 cores): "
             "compare within a run. Quality against the fp32 load on held-out modules "
             f"({', '.join(_HELD_OUT)}, never trained on): logits and next-token agreement "
             "over 8 x 128 tokens under teacher forcing, greedy agreement over 8 prompts of 16 "
             "tokens x 32 new tokens. How varied the fp32 model's own choices are: "
             f"{quality['fp32']['distinct_next']} distinct next-token predictions over the "
             f"1024 positions ({quality['fp32']['next_token_accuracy']:.1%} of them the text's "
             f"next token), {quality['fp32']['distinct_greedy']} distinct tokens in its 256 "
             "greedy ones; a model trained this briefly still leans on the commonest tokens "
             "(spaces, newlines, punctuation), so greedy agreement is an easy test here and the "
             "logit difference and next-token agreement say more.",
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
              "", "hubloader's `int8`/`int4` quantize the token embedding too (int8 per row, "
              "torchao's `IntxWeightOnlyConfig`; a tied head would share it); the norms stay in "
              "float32. transformers' `TorchAoConfig` leaves the embedding in float32. `int4` on a CPU is torchao's `IntxWeightOnlyConfig(int4, group 32)`, "
              "which keeps one value per byte, so its memory is int8's (on CUDA, `int4` is the "
              "tile-packed `Int4WeightOnlyConfig`).", ""]
    write_section(lines)


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{n} {version(n)}" for n in ("torch", "torchao", "transformers"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-seconds", type=float, default=180.0)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"))
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        trained = _make_model(Path(tmp), args.train_seconds)
        print(json.dumps({"trained": trained}))
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
    _write(results, quality, args.rounds, trained)


if __name__ == "__main__":
    main()
