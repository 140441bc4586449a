"""Where scenario 10's cold hf:// path goes, phase by phase (as profile_cold.py does for S3).

    python benchmarks/profile_hf.py [--runs 3]

Each run is a fresh process (this file with ``--worker``) doing ``hubloader.download`` of
BERT-base pinned to a commit from the project's hub test server (tests/servers.py) into an
empty cache, with timestamps taken around hubloader's own functions (the source's listing and
byte streams, the file transfer, the store): spawn, imports, listing, requests before the
first byte, transfer, the hash's catch-up and the verification after the last byte, the store.
A plain GET of the same bytes in a fresh process (bytes dropped) is measured in turn: the
server's floor. Medians are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(uri: str) -> None:
    marks: dict[str, float] = {"start": time.monotonic()}
    import hubloader

    marks["hubloader imported"] = time.monotonic()
    from huggingface_hub.utils import build_hf_headers, get_session  # noqa: F401

    marks["HTTP stack imported"] = time.monotonic()
    from hubloader.hub import snapshot
    from hubloader.hub.sources.hf import HfSource

    lock = threading.Lock()
    chunks: list[float] = []
    list_files, iter_bytes = HfSource.list_files, HfSource.iter_bytes
    fetch_file, store = snapshot.fetch_file, snapshot._store

    def timed_list(self, revision):
        marks["listing sent"] = time.monotonic()
        try:
            return list_files(self, revision)
        finally:
            marks["listing answered"] = time.monotonic()

    def timed_bytes(self, file, **kw):
        for chunk in iter_bytes(self, file, **kw):
            if file.path.endswith(".safetensors"):
                with lock:
                    chunks.append(time.monotonic())
            yield chunk

    def timed_fetch(source, file, **kw):
        out = fetch_file(source, file, **kw)
        if file.path.endswith(".safetensors"):
            marks["weights verified"] = time.monotonic()
        return out

    def timed_store(paths, verified, sha256, path, **kw):
        out = store(paths, verified, sha256, path, **kw)
        if path.endswith(".safetensors"):
            marks["weights stored"] = time.monotonic()
        return out

    HfSource.list_files, HfSource.iter_bytes = timed_list, timed_bytes
    snapshot.fetch_file, snapshot._store = timed_fetch, timed_store
    hubloader.download(uri, progress=False)
    marks["done"] = time.monotonic()
    marks["first byte"], marks["last byte"] = min(chunks), max(chunks)
    print(json.dumps(marks))


_PHASES = [  # (phase, from mark, to mark)
    ("spawn: interpreter start", "spawned", "start"),
    ("import hubloader", "start", "hubloader imported"),
    ("import huggingface_hub's HTTP stack (httpx)", "hubloader imported", "HTTP stack imported"),
    ("download() before the listing request (names, cache, locks)", "HTTP stack imported",
     "listing sent"),
    ("listing request (one GET)", "listing sent", "listing answered"),
    ("listing -> first byte of the weights (config.json, range GETs sent)", "listing answered",
     "first byte"),
    ("transfer: first -> last byte of the weights (written as they come)", "first byte",
     "last byte"),
    ("after the last byte: the hash catches up, verified, renamed", "last byte",
     "weights verified"),
    ("store: into blobs/, linked into the snapshot", "weights verified", "weights stored"),
    ("manifest, ref, exit of download()", "weights stored", "done"),
    ("total: spawn -> files in place", "spawned", "done"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    sys.path.insert(0, str(HERE.parent / "tests"))
    import servers
    from run import interleave, make_bert_checkpoint

    ckpt = make_bert_checkpoint(12)
    hub = servers.HubServer()
    tmp = Path(tempfile.mkdtemp(prefix="hubloader-profile-hf-"))
    try:
        files = {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}
        commit = hub.add_commit("bench/bert", files)
        hub._tree("bench/bert", commit)
        env = {**os.environ, "HUBLOADER_HF_ENDPOINT": hub.url, "HUBLOADER_HOME": str(tmp / "home"),
               "HF_HOME": str(tmp / "hf-home"), "HUBLOADER_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_DISABLE_XET": "1"}
        rows: list[dict[str, float]] = []

        def ours() -> float:
            shutil.rmtree(tmp / "home", ignore_errors=True)
            os.sync()
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, __file__, "--worker",
                                   f"hf://bench/bert@{commit}"], env=env, capture_output=True,
                                  text=True, check=True)
            marks = json.loads(proc.stdout.strip().splitlines()[-1])
            marks["spawned"] = t0
            rows.append({name: marks[b] - marks[a] for name, a, b in _PHASES})
            return marks["done"] - t0

        urls = ",".join(f"{hub.url}/bench/bert/resolve/{commit}/{n}" for n in sorted(files))

        def floor() -> float:  # scenario 10's plain GET (bytes dropped), the server's floor
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, str(HERE / "_peer_worker.py"), "hf-raw", urls],
                                  env=env, capture_output=True, text=True, check=True)
            return json.loads(proc.stdout.strip().splitlines()[-1])["done_at"] - t0

        walls = interleave(args.runs, {"hubloader": ours, "floor": floor})
        rows = rows[1:]  # interleave's untimed first round
        print(f"| phase (medians of {args.runs} runs) | seconds |\n|---|---:|")
        for name, _, _ in _PHASES:
            print(f"| {name} | {statistics.median(r[name] for r in rows):.3f} |")
        print(f"| plain GET of the same bytes in a fresh process, dropped (server's floor) | "
              f"{statistics.median(walls['floor']):.3f} |")
    finally:
        hub.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
