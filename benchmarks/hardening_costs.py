"""What two hardening choices cost, interleaved, medians (writes nothing; prints a table).

1. Reusing a file from huggingface_hub's cache: a hard link (what hubloader did) against
   :func:`hubloader.files.copy_verified` (a clone where the filesystem has one, else a copy,
   hashed again), which keeps an in-place write to the other cache from changing ours.
2. A prefetch started and joined (a local folder, so the child's own start and exit are
   what is measured), as the 2,000-prefetch leak test runs them.

    python benchmarks/hardening_costs.py [--mib 256] [--runs 5] [--prefetches 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _hf_copy(folder: Path, mib: int, runs: int) -> dict[str, list[float]]:
    from hubloader.files import copy_verified

    src = folder / "blob"
    with open(src, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))
    times: dict[str, list[float]] = {"hard link": [], "copy_verified": []}
    for _ in range(runs):  # interleaved
        for how in times:
            dst = folder / "dst"
            dst.unlink(missing_ok=True)
            start = time.perf_counter()
            if how == "hard link":
                os.link(src, dst)
            else:
                copy_verified(src, dst)
            times[how].append(time.perf_counter() - start)
    return times


def _prefetches(folder: Path, count: int) -> list[float]:
    import hubloader

    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    per = []
    for i in range(count):
        start = time.perf_counter()
        hubloader.prefetch(str(model), revision=f"r{i}").result(timeout=120)
        per.append(time.perf_counter() - start)
    return per


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prefetches", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("HUBLOADER_BENCH_DIR")) as tmp:
        for how, values in _hf_copy(Path(tmp), args.mib, args.runs).items():
            print(f"| reuse {args.mib} MiB from huggingface_hub's cache: {how} | "
                  f"{statistics.median(values) * 1000:.0f} ms | {args.runs} runs |")
        per = _prefetches(Path(tmp), args.prefetches)
        print(f"| one prefetch started and joined (local folder) | "
              f"{statistics.median(per) * 1000:.0f} ms | {args.prefetches} runs; 2,000 take "
              f"about {statistics.median(per) * 2000 / 60:.0f} min one after another |")


if __name__ == "__main__":
    main()
