"""One download measurement in a fresh process; prints JSON on its last stdout line.

    python benchmarks/_fetch_worker.py MODE ARGS...

hubloader NAME                      hubloader.download(NAME) (card sha256s verified while streaming);
                                    also the time until hubloader.hub.flush() has the bytes on disk
boto3-default BUCKET (KEY DEST SHA)...   boto3 download_file, default TransferConfig, then a sha256 pass
boto3-tuned   BUCKET (KEY DEST SHA)...   boto3 download_file, max_concurrency=16, 32 MiB parts, then sha256
boto3-default-fsync BUCKET (KEY DEST SHA)...   as boto3-default, then fsync (on disk, as hubloader + flush)
stream        BUCKET (KEY DEST SHA)...   one GET per object, streamed to disk while hashing
    (the baselines fetch every object given, one after another with one client, as a user's
    loop over a model's files would)
load NAME                           import torch + hubloader, then from_pretrain(NAME) (8-process scenario)
load-sync NAME                      the same, but after the imports print "ready" and wait for a line on
                                    stdin, so that all processes start fetching at the same moment
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def _client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ["HUBLOADER_S3_ENDPOINT_URL"],
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def _fetch_one(s3, mode: str, bucket: str, key: str, dest: str) -> str:
    """One object to ``dest`` the way ``mode`` does it; returns its sha256."""
    if mode == "stream":
        h = hashlib.sha256()
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        with open(dest, "wb") as fh:
            for chunk in body.iter_chunks(1 << 20):
                h.update(chunk)
                fh.write(chunk)
        return h.hexdigest()
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig() if mode != "boto3-tuned" else TransferConfig(
        max_concurrency=16, multipart_chunksize=32 << 20, multipart_threshold=32 << 20)
    s3.download_file(bucket, key, dest, Config=config)
    digest = _sha256(dest)
    if mode == "boto3-default-fsync":  # on disk before it counts as downloaded
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return digest


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    out: dict = {}
    if mode == "hubloader":
        import boto3  # noqa: F401  (imported outside the clock, as the baselines' boto3 is)

        import hubloader

        t0 = time.perf_counter()
        path = hubloader.download(args[0], progress=False)
        handed_over = time.perf_counter()
        hubloader.hub.flush()  # the background flush of the fetched blobs
        out.update(seconds=handed_over - t0, durable_seconds=time.perf_counter() - t0,
                   path=str(path))
    elif mode in ("boto3-default", "boto3-tuned", "stream", "boto3-default-fsync"):
        bucket, triples = args[0], args[1:]
        t0 = time.perf_counter()
        s3 = _client()  # on the clock: hubloader.download builds its S3 client on the clock too
        for key, dest, expected in zip(triples[0::3], triples[1::3], triples[2::3]):
            if _fetch_one(s3, mode, bucket, key, dest) != expected:
                raise SystemExit(f"sha256 mismatch for {key}")
        out["seconds"] = time.perf_counter() - t0
    elif mode in ("load", "load-sync"):
        t_start = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on one machine
        import torch  # noqa: F401

        from hubloader.models import BertModel

        if mode == "load-sync":
            print("ready", flush=True)
            sys.stdin.readline()
        t0 = time.monotonic()
        BertModel.from_pretrain(args[0])
        done = time.monotonic()
        out.update(load_s=done - t0, total_s=done - t_start, done_at=done)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
