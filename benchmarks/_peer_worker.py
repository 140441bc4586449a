"""One cold process against a peer loader; prints JSON on its last stdout line.

    python benchmarks/_peer_worker.py MODE ARGS...

S3 -> model ready (BERT, one model.safetensors); every mode builds the same hubloader
``BertModel`` on the meta device and assigns the tensors it read (so only the reading differs):

hubloader NAME              import the model class, then BertModel.from_pretrain(NAME)
                            (card sha256s verified, cached): the fetch waits for torch
hubloader-prefetch NAME     hubloader.prefetch(NAME) first: the fetch overlaps the import, and
                            from_pretrain reads the shards as they land
hubloader-prefetch-join NAME  the same, but the fetch is joined before from_pretrain: the load
                            reads every shard after the last byte
hubloader-auto NAME         AutoLoader("base", NAME): the fetch overlaps the import
download NAME               hubloader.download(NAME) alone, no torch (the download's own time)
torch                       import torch alone (the floor)
runai S3URIS CONFIG         runai-model-streamer's SafetensorsStreamer (runai-model-streamer-s3)
s3torch S3URIS CONFIG       s3torchconnector's S3Checkpoint reader, then safetensors.torch.load
boto3 S3URIS CONFIG         boto3 get_object into memory, then safetensors.torch.load
boto3-file S3URIS CONFIG    boto3 download_file of each file (default TransferConfig) into a
                            temp folder, then safetensors.torch.load_file of each
boto3-file-tuned S3URIS CONFIG  the same with max_concurrency=16 and 32 MiB parts
transformers S3URIS CONFIG  boto3 download_file of each file, then transformers' from_pretrained
(S3URIS: the weight files' URIs, comma-separated, for a sharded checkpoint)

The peers get config.json as a local file (a head start: hubloader fetches it from S3).

hf:// snapshot into a local directory:

hf-hubloader URI            hubloader.download("hf://org/repo@REV")
hf-snapshot REPO REV        huggingface_hub.snapshot_download(REPO, revision=REV) into its cache
hf-file REPO REV FILES      huggingface_hub.hf_hub_download(REPO, FILE, revision=REV) per file
                            (FILES comma-separated), into its cache
hf-raw URLS                 a plain GET of each URL with http.client, bytes dropped: the hub
                            test server's floor, no client, no hashing, no disk

BENCH_LOAD_DTYPE=bfloat16 (say) loads the weights in that dtype in every mode.

Reported: ``after_imports`` (seconds from the end of this mode's imports to ready) and
``done_at`` (CLOCK_MONOTONIC at ready, for the parent's spawn-to-ready wall); with
``BENCH_CPU_AT_READY=1``, ``cpu_at_ready``: the CPU seconds of this process and its reaped
children by then, before the interpreter's teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time


def _dtype():
    import torch

    return getattr(torch, os.environ.get("BENCH_LOAD_DTYPE", "float32"))


def _build(config_path: str, state: dict):

    from hubloader.load.config import read_config_file
    from hubloader.load.modeling import skip_init_on_meta
    from hubloader.models import BertModel
    from hubloader.load.weights import assign_state_dict

    config = BertModel.config_class.from_dict(read_config_file(config_path))
    with skip_init_on_meta():
        model = BertModel(config)
    assign_state_dict(model, state, strict=True, device="cpu", dtype=_dtype())
    return model.eval()


_TEMP: list[str] = []  # removed once the figure is out: a sharded model is GBs a run


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def main() -> None:
    mode, args = sys.argv[1], sys.argv[2:]
    out: dict = {}
    uris = args[0].split(",") if args else []
    if mode == "hubloader":
        import torch  # noqa: F401

        from hubloader.models import BertModel

        t0 = time.monotonic()
        BertModel.from_pretrain(args[0], torch_dtype=_dtype())
    elif mode in ("hubloader-prefetch", "hubloader-prefetch-join"):
        t0 = time.monotonic()
        import hubloader

        handle = hubloader.prefetch(args[0])
        from hubloader.models import BertModel

        if mode == "hubloader-prefetch-join":
            handle.result()
        model = BertModel.from_pretrain(args[0], torch_dtype=_dtype())
        out["read_as_landed"] = len(model.load_report.read_as_landed)
    elif mode == "hubloader-auto":
        t0 = time.monotonic()
        from hubloader import AutoLoader

        AutoLoader("base", args[0], torch_dtype=os.environ.get("BENCH_LOAD_DTYPE")).get_model()
    elif mode == "download":
        import hubloader

        t0 = time.monotonic()
        hubloader.download(args[0], progress=False)
    elif mode == "torch":
        t0 = time.monotonic()
        import torch  # noqa: F401
    elif mode == "runai":
        import torch  # noqa: F401
        from runai_model_streamer import SafetensorsStreamer

        t0 = time.monotonic()
        with SafetensorsStreamer() as streamer:
            streamer.stream_files(uris)
            state = dict(streamer.get_tensors())
            _build(args[1], state)  # inside the block: the tensors view the streamer's buffer
    elif mode == "s3torch":
        import torch  # noqa: F401
        from safetensors.torch import load
        from s3torchconnector import S3Checkpoint, S3ClientConfig

        t0 = time.monotonic()
        checkpoint = S3Checkpoint(region="us-east-1", endpoint=os.environ["AWS_ENDPOINT_URL"],
                                  s3client_config=S3ClientConfig(force_path_style=True))
        state = {}
        for uri in uris:
            with checkpoint.reader(uri) as reader:
                state.update(load(reader.read()))
        _build(args[1], state)
    elif mode == "boto3":
        import boto3
        import torch  # noqa: F401
        from botocore.config import Config
        from safetensors.torch import load

        t0 = time.monotonic()
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        state = {}
        for uri in uris:
            bucket, key = _split(uri)
            state.update(load(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        _build(args[1], state)
    elif mode in ("boto3-file", "boto3-file-tuned"):
        import tempfile

        import boto3
        import torch  # noqa: F401
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config
        from safetensors.torch import load_file

        t0 = time.monotonic()
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        transfer = TransferConfig() if mode == "boto3-file" else TransferConfig(
            max_concurrency=16, multipart_chunksize=32 << 20, multipart_threshold=32 << 20)
        dest = tempfile.mkdtemp(prefix="bench-boto3-file-")
        _TEMP.append(dest)
        state = {}
        for uri in uris:
            bucket, key = _split(uri)
            local = os.path.join(dest, key.rsplit("/", 1)[1])
            s3.download_file(bucket, key, local, Config=transfer)
            state.update(load_file(local))
        _build(args[1], state)
    elif mode == "transformers":
        import tempfile

        import boto3
        import transformers
        from botocore.config import Config

        t0 = time.monotonic()
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        dest = tempfile.mkdtemp(prefix="bench-transformers-")
        _TEMP.append(dest)
        shutil.copy(args[1], dest)
        for uri in uris + [u.rsplit("/", 1)[0] + "/model.safetensors.index.json"
                           for u in uris[:1] if len(uris) > 1]:
            bucket, key = _split(uri)
            s3.download_file(bucket, key, os.path.join(dest, key.rsplit("/", 1)[1]))
        transformers.BertModel.from_pretrained(dest, dtype=_dtype())
    elif mode == "hf-hubloader":
        import hubloader

        t0 = time.monotonic()
        hubloader.download(args[0], progress=False)
    elif mode == "hf-snapshot":
        from huggingface_hub import snapshot_download

        t0 = time.monotonic()
        snapshot_download(args[0], revision=args[1])
    elif mode == "hf-file":
        from huggingface_hub import hf_hub_download

        t0 = time.monotonic()
        for name in args[2].split(","):
            hf_hub_download(args[0], name, revision=args[1])
    elif mode == "hf-raw":
        import http.client
        from urllib.parse import urlsplit

        t0 = time.monotonic()
        buf = bytearray(1 << 20)
        for url in args[0].split(","):
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.netloc)
            conn.request("GET", parts.path)
            response = conn.getresponse()
            while response.readinto(buf):
                pass
            conn.close()
    else:
        raise SystemExit(f"unknown mode {mode}")
    done = time.monotonic()
    out.update(after_imports=done - t0, done_at=done)
    if os.environ.get("BENCH_CPU_AT_READY"):
        import resource

        time.sleep(0.3)  # a prefetch child that answered has flushed, left and been reaped
        out["cpu_at_ready"] = sum(getattr(resource.getrusage(who), field)
                                  for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                                  for field in ("ru_utime", "ru_stime"))
    print(json.dumps(out))
    for path in _TEMP:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
