"""One cold process from S3 to a ready model; prints JSON with the wall-clock time at which
the model (or state dict) was ready, so the parent measures from before the spawn.

    python benchmarks/_cold_worker.py MODE URI BUCKET PREFIX DEST

hub-auto        AutoLoader("base", URI).get_model()  (fetch overlaps the import)
hub-prefetch    hubloader.prefetch(URI), import the model class, from_pretrain(URI)
hub-serial      import the model class, then from_pretrain(URI): fetch after the import
download        hubloader.download(URI) alone, no torch (the download's own time)
torch           import torch alone (the floor)
boto3-st        boto3 download_file of every object, then safetensors load_file (no model)
transformers    boto3 download_file of every object, then transformers from_pretrained
runai           runai-model-streamer streams the safetensors from S3 into a state dict,
                assigned to transformers' model built on the meta device (config via boto3)
load-local      import the model class, then from_pretrain(DEST) of a local copy: the load
"""

from __future__ import annotations

import json
import os
import sys
import time


def _client():
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=os.environ["HUBLOADER_S3_ENDPOINT_URL"],
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _download_all(bucket: str, prefix: str, dest: str) -> list[str]:
    s3 = _client()
    paths = []
    for key in _keys(s3, bucket, prefix):
        path = os.path.join(dest, key[len(prefix) + 1:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, key, path)
        paths.append(path)
    return paths


def main() -> None:
    mode, uri, bucket, prefix, dest = sys.argv[1:6]
    out: dict = {}
    if mode == "hub-auto":
        from hubloader import AutoLoader

        model = AutoLoader("base", uri).get_model()
    elif mode == "hub-prefetch":
        import hubloader

        hubloader.prefetch(uri)
        from hubloader.models import BertModel

        model = BertModel.from_pretrain(uri)
    elif mode == "hub-serial":
        from hubloader.models import BertModel

        model = BertModel.from_pretrain(uri)
    elif mode == "download":
        import hubloader

        hubloader.download(uri)
    elif mode == "torch":
        import torch  # noqa: F401
    elif mode == "boto3-st":
        import torch  # noqa: F401
        from safetensors.torch import load_file

        state = {}
        for path in _download_all(bucket, prefix, dest):
            if path.endswith(".safetensors"):
                state.update(load_file(path))
    elif mode == "transformers":
        import transformers

        _download_all(bucket, prefix, dest)
        model = transformers.BertModel.from_pretrained(dest)
    elif mode == "runai":
        import torch
        import transformers
        from runai_model_streamer import SafetensorsStreamer
        from runai_model_streamer_s3.credentials.credentials import S3Credentials

        s3 = _client()
        keys = _keys(s3, bucket, prefix)
        os.makedirs(dest, exist_ok=True)
        s3.download_file(bucket, f"{prefix}/config.json", os.path.join(dest, "config.json"))
        config = transformers.BertConfig.from_pretrained(dest)
        with torch.device("meta"):
            model = transformers.BertModel(config)
        creds = S3Credentials(access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                              secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                              region_name="us-east-1",
                              endpoint=os.environ["HUBLOADER_S3_ENDPOINT_URL"])
        state = {}
        with SafetensorsStreamer() as streamer:
            streamer.stream_files([f"s3://{bucket}/{k}" for k in keys
                                   if k.endswith(".safetensors")], s3_credentials=creds)
            for name, tensor in streamer.get_tensors():
                state[name] = tensor
        model.load_state_dict(state, strict=False, assign=True)
    elif mode == "load-local":
        from hubloader.models import BertModel

        t0 = time.perf_counter()
        model = BertModel.from_pretrain(dest)
        out["load_s"] = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown mode {mode}")
    out["ready"] = time.time()
    print(json.dumps(out), flush=True)
    os._exit(0)  # the time that counts is until ready; skip the interpreter's teardown


if __name__ == "__main__":
    main()
