"""One cold process of the LLM scenario: fetch a sharded bf16 Llama from S3, load it, generate the
first token; print JSON with the wall-clock time of that token and the process's peak RSS.

    python _llm_worker.py hubloader CARD_NAME
    python _llm_worker.py transformers-boto3 BUCKET PREFIX DEST
    python _llm_worker.py runai BUCKET PREFIX DEST

S3 settings come from the environment (HUBLOADER_S3_ENDPOINT_URL, AWS_* credentials).
"""

from __future__ import annotations

import json
import os
import sys
import time

PROMPT = [[1, 15, 27, 300, 4000]]


def _peak_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _emit(first_token: int, extra: dict | None = None) -> None:
    print(json.dumps({"first_token_at": time.time(), "peak_rss": _peak_rss(),
                      "token": first_token, **(extra or {})}))


def _client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["HUBLOADER_S3_ENDPOINT_URL"])


def _keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def run_hubloader(name: str) -> None:
    import torch

    from hubloader import AutoLoader

    model = AutoLoader("lm", model_name=name).get_model()
    out = model.generate(torch.tensor(PROMPT), max_new_tokens=1, eos_token_id=[])
    _emit(int(out[0, -1]), {"dtype": str(model.dtype)})


def run_transformers_boto3(bucket: str, prefix: str, dest: str) -> None:
    """What a user does without a loader: download every file with boto3, then transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    client = _client()
    for key in _keys(client, bucket, prefix):
        client.download_file(bucket, key, os.path.join(dest, key[len(prefix):]))
    model = AutoModelForCausalLM.from_pretrained(dest, dtype="auto")
    out = model.generate(torch.tensor(PROMPT), attention_mask=torch.ones(1, 5, dtype=torch.long),
                         max_new_tokens=1, do_sample=False, pad_token_id=0)
    _emit(int(out[0, -1]), {"dtype": str(model.dtype)})


def run_runai(bucket: str, prefix: str, dest: str) -> None:
    """runai-model-streamer streams the shards from S3 into a state dict, which is loaded into
    transformers' model built from the downloaded config."""
    import torch
    from runai_model_streamer import SafetensorsStreamer
    from transformers import AutoConfig, AutoModelForCausalLM

    client = _client()
    keys = _keys(client, bucket, prefix)
    client.download_file(bucket, prefix + "config.json", os.path.join(dest, "config.json"))
    config = AutoConfig.from_pretrained(dest)
    shards = [f"s3://{bucket}/{k}" for k in sorted(keys) if k.endswith(".safetensors")]
    state = {}
    with SafetensorsStreamer() as streamer:
        streamer.stream_files(shards)
        for name, tensor in streamer.get_tensors():
            state[name] = tensor
    # the Auto class wants a path; the concrete class takes the state dict alone
    model_class = AutoModelForCausalLM._model_mapping[type(config)]
    model = model_class.from_pretrained(None, config=config, state_dict=state, dtype=torch.bfloat16)
    out = model.generate(torch.tensor(PROMPT), attention_mask=torch.ones(1, 5, dtype=torch.long),
                         max_new_tokens=1, do_sample=False, pad_token_id=0)
    _emit(int(out[0, -1]), {"dtype": str(model.dtype)})


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    {"hubloader": run_hubloader, "transformers-boto3": run_transformers_boto3,
     "runai": run_runai}[mode](*rest)
