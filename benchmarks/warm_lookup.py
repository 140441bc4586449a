"""Warm-cache lookup per file: ``hubloader.hub.cached_file`` against huggingface_hub's
``try_to_load_from_cache`` and ``hf_hub_download(local_files_only=True)``, same files, same run.

    python benchmarks/warm_lookup.py [--files 8] [--number 20000]

hubloader's cache is filled by a real ``hubloader.download`` from a folder hub; the
huggingface_hub cache is laid out as huggingface_hub writes it (``models--org--repo/blobs``,
``snapshots/<commit>``, ``refs/main``). Prints microseconds per file lookup: the median of
``--runs`` interleaved runs, with min-max.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import timeit
from pathlib import Path


def _fill(root: Path, count: int) -> dict[str, bytes]:
    files = {"config.json": b'{"model_type": "bert"}'}
    for i in range(count - 1):
        files[f"file_{i}.json"] = json.dumps({"i": i}).encode()
    hub = root / "hub" / "bench-model"
    hub.mkdir(parents=True)
    for name, data in files.items():
        (hub / name).write_bytes(data)
    cards = root / "cards"
    cards.mkdir()
    entries = "".join(f"  - path: {n}\n    size: {len(d)}\n    sha256: {hashlib.sha256(d).hexdigest()}\n"
                      for n, d in files.items())
    (cards / "bench-model.md").write_text(
        "---\nname: bench-model\ntasks: [embedding]\nlicense: mit\nauthor: bench\n"
        f"architecture: bert\nsource: {hub.as_uri()}\nfiles:\n{entries}---\n")
    # huggingface_hub's layout, as hf_hub_download writes it
    commit = "0" * 40
    repo = root / "hf" / "models--org--bench-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return files


def measure(n_files: int = 8, number: int = 20000, runs: int = 5) -> dict[str, list[float]]:
    """Microseconds per file lookup, one value per run; the cases take turns (interleaved)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update(HUBLOADER_HOME=str(root / "home"), HUBLOADER_CARDS_PATH=str(root / "cards"),
                          HUBLOADER_DISABLE_PROGRESS_BARS="1", HF_HUB_OFFLINE="1")
        files = _fill(root, n_files)
        import hubloader
        from hubloader.hub import cached_file

        hubloader.download("bench-model", offline=False)
        names = list(files)
        if not all(cached_file("bench-model", n) for n in names):
            raise SystemExit("hubloader's cache was not filled")

        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        hf_cache = str(root / "hf")
        if not all(try_to_load_from_cache("org/bench-model", n, cache_dir=hf_cache) for n in names):
            raise SystemExit("the huggingface_hub cache was not laid out right")
        cases = {
            "hubloader.cached_file": lambda: [cached_file("bench-model", n) for n in names],
            "huggingface_hub.try_to_load_from_cache": lambda: [
                try_to_load_from_cache("org/bench-model", n, cache_dir=hf_cache) for n in names],
            "huggingface_hub.hf_hub_download(local_files_only=True)": lambda: [
                hf_hub_download("org/bench-model", n, cache_dir=hf_cache, local_files_only=True)
                for n in names],
        }
        out: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(runs):
            for label, fn in cases.items():
                count = number if "hf_hub_download" not in label else max(1, number // 20)
                seconds = timeit.timeit(fn, number=count)
                out[label].append(seconds / count / len(names) * 1e6)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the samples as JSON")
    args = parser.parse_args()
    samples = measure(args.files, args.number, args.runs)
    if args.json:
        print(json.dumps(samples))
        return
    import statistics

    for label, values in samples.items():
        print(f"{label:58s} median {statistics.median(values):8.2f} us/file "
              f"[{min(values):.2f}-{max(values):.2f}]")


if __name__ == "__main__":
    main()
