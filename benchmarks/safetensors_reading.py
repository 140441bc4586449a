"""Reading safetensors: hubloader's reader (its own header checks, then ``safe_open``), the
hand-written memory map it replaced (the same checks, then ``mmap`` + ``torch.frombuffer``
views), and the bare ``safetensors`` library (``safe_open`` + ``get_tensor``, and
``load_file``) on the same files.

Two files written by ``safetensors.torch.save_file``: a large one (about 400 MB of fp32 in 200
tensors, a mid-size model's shard) and a small one (about 4 MB in 40 tensors, a config-sized
model). Each reader runs in a fresh process, readers interleaved per round, medians of the
rounds: the time to get every tensor (``open``), the time to then touch every byte (a sum per
tensor, as assigning into a model does), and the process's peak RSS.

    python benchmarks/safetensors_reading.py [--rounds 5]

Writes the section "Reading safetensors" of benchmarks/RESULTS.md (replacing an earlier one).
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

from _report import write_section

READERS = ["hubloader read_safetensors", "hand-written mmap (the reader before)",
           "safetensors safe_open", "safetensors load_file"]
FILES = {"large": (200, 512 * 1000), "small": (40, 25_000)}  # tensors x fp32 values each
SECTION = "## Reading safetensors (hubloader's reader against the library)"


def _make(d: Path) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    for name, (n, numel) in FILES.items():
        save_file({f"layer.{i}.weight": torch.randn(numel // 500, 500, generator=g)
                   for i in range(n)}, str(d / f"{name}.safetensors"))


def _hand_written(path: str) -> dict:
    """The reader hubloader had (header parse and layout check, then views of a copy-on-write
    mmap), less its per-tensor size checks."""
    import mmap

    import torch

    from hubloader.load import weights as w

    out = {}
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        header, data_start = w._read_header(Path(path), size, fh)
        entries = [(n, w._ST_DTYPES[i["dtype"]], i["shape"], *i["data_offsets"])
                   for n, i in header.items() if n != "__metadata__"]
        w._check_layout(Path(path), entries, size - data_start)
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    buf = memoryview(mm)
    for name, dtype, shape, begin, end in entries:
        numel = (end - begin) // torch.empty((), dtype=dtype).element_size()
        out[name] = torch.frombuffer(buf, dtype=dtype, count=numel,
                                     offset=data_start + begin).view(shape)
    return out


def _child(reader: str, path: str) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from hubloader.load.weights import read_safetensors

    t0 = time.perf_counter()  # imports outside the timing
    if reader.startswith("hubloader"):
        tensors = read_safetensors(path)
    elif reader.startswith("hand-written"):
        tensors = _hand_written(path)
    elif reader.endswith("safe_open"):
        with safe_open(path, framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    else:
        tensors = load_file(path)
    opened = time.perf_counter() - t0
    total = torch.zeros((), dtype=torch.float64)
    for t in tensors.values():
        total += t.sum(dtype=torch.float64)
    touched = time.perf_counter() - t0
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    print(json.dumps({"open": opened, "touched": touched, "checksum": total.item(),
                      "rss_after": int(status["VmRSS"].split()[0]) * 1024,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _write(results: dict, rounds: int, sizes: dict) -> None:
    lines = [SECTION, "",
             f"Written by `python benchmarks/safetensors_reading.py --rounds {rounds}`: each reader "
             "in a fresh process (imports outside the timing), readers interleaved, medians of "
             f"{rounds} rounds; files written by `safetensors.torch.save_file` and warm in the "
             "page cache. This machine is shared and noisy (load average above its 2 cores): "
             "compare within a run, differences under about 10% are noise.", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"{_versions()}", "",
             "| file | reader | get every tensor | + touch every byte | vs hubloader | RSS after | "
             "peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for name in FILES:
        base = statistics.median(r["touched"] for r in results[name][READERS[0]])
        for reader in READERS:
            rs = results[name][reader]
            touched = statistics.median(r["touched"] for r in rs)
            lines.append(
                f"| {name} ({sizes[name] / 1e6:.0f} MB, {FILES[name][0]} tensors) | {reader} | "
                f"{statistics.median(r['open'] for r in rs) * 1e3:.1f} ms | "
                f"{touched * 1e3:.1f} ms | {touched / base:.2f}x | "
                f"{statistics.median(r['rss_after'] for r in rs) / 2**20:.0f} MiB | "
                f"{statistics.median(r['peak_rss'] for r in rs) / 2**20:.0f} MiB |")
    lines += ["", "RSS counts the file's pages the tensors map (page cache, shared with other "
              "readers) and the imports (torch, safetensors, hubloader). hubloader's reader is "
              "the library's `safe_open` behind hubloader's own header checks; `load_file` and "
              "`safe_open` run the same library code, so the spread between them shows how much "
              "of a difference this run's noise makes. Reading is tens of milliseconds against "
              "a load's building and assigning, so the library is kept where it is not slower "
              "beyond that noise.", ""]
    write_section(lines)


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{n} {version(n)}" for n in ("torch", "safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=2, metavar=("READER", "FILE"))
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        _make(Path(tmp))
        sizes = {n: (Path(tmp) / f"{n}.safetensors").stat().st_size for n in FILES}
        results: dict = {n: {r: [] for r in READERS} for n in FILES}
        checks: dict = {}
        for r in range(args.rounds):
            for name in FILES:
                for reader in READERS[r % len(READERS):] + READERS[:r % len(READERS)]:
                    run = subprocess.run([sys.executable, __file__, "--child", reader,
                                          str(Path(tmp) / f"{name}.safetensors")],
                                         capture_output=True, text=True, check=True,
                                         env=dict(os.environ, OMP_NUM_THREADS="1"))
                    row = json.loads(run.stdout.strip().splitlines()[-1])
                    checks.setdefault(name, set()).add(row["checksum"])
                    results[name][reader].append(row)
        # every reader saw the same bytes
        assert all(len(v) == 1 for v in checks.values()), checks
    print(json.dumps(results, indent=1))
    _write(results, args.rounds, sizes)


if __name__ == "__main__":
    main()
