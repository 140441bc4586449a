"""push to a real S3 server (SeaweedFS on 127.0.0.1): multipart with SHA256 checksums,
config + card last, re-push uploads nothing; objects checked with plain boto3."""

from __future__ import annotations

import base64
import hashlib

import pytest
import torch

from hubloader import (AccessDeniedError, BaseModel, RemoteNotFoundError,
                       UnsupportedSourceError)
from hubloader.commands.models import validate_path
from hubloader.models import BertConfig, BertModel
from hubloader.publish import push
from publish_helpers import TINY, run_cli, sha256
import servers

CHUNK = 5 * 2**20


@pytest.fixture(scope="module")
def server():
    s = servers.SeaweedFS().start()
    try:
        s.client().create_bucket(Bucket="models")
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _env(server, monkeypatch):
    for k, v in server.env().items():  # boto3's standard chain, as a user would set it
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HUBLOADER_MULTIPART_THRESHOLD_MB", "8")
    monkeypatch.setenv("HUBLOADER_MULTIPART_CHUNK_MB", "5")
    monkeypatch.setenv("HUBLOADER_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)  # embeddings of 24000 x 128 float32: one 12.3 MB file -> 3 parts
    model = BertModel.from_config(BertConfig(**{**TINY, "vocab_size": 24000, "hidden_size": 128,
                                                "num_attention_heads": 4}))
    return model.save_pretrained(tmp_path_factory.mktemp("push") / "bert-push",
                                 card={"license": "apache-2.0", "author": "tests"})


def _objects(s3, prefix: str) -> dict[str, dict]:
    out = {}
    for obj in s3.list_objects_v2(Bucket="models", Prefix=prefix + "/").get("Contents", []):
        head = s3.head_object(Bucket="models", Key=obj["Key"], ChecksumMode="ENABLED")
        out[obj["Key"][len(prefix) + 1:]] = head
    return out


def _composite_sha256(data: bytes) -> str:
    digests = [hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK)]
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode() + f"-{len(digests)}"


def test_push_multipart_checksums_order_and_repush(server, model_dir, tmp_path):
    s3 = server.client()
    result = push(model_dir, "s3://models/bert-push")
    local = sorted(p.name for p in model_dir.iterdir())
    assert sorted(result.uploaded) == local and result.skipped == []
    assert result.uploaded[-2:] == ["config.json", "README.md"]  # card last
    assert result.bytes_uploaded == sum(p.stat().st_size for p in model_dir.iterdir())

    objects = _objects(s3, "bert-push")
    assert sorted(objects) == local
    for name, head in objects.items():
        body = s3.get_object(Bucket="models", Key=f"bert-push/{name}")["Body"].read()
        data = (model_dir / name).read_bytes()
        assert body == data and head["Metadata"]["sha256"] == sha256(data)
    weights = (model_dir / "model.safetensors").read_bytes()
    assert len(weights) > 8 * 2**20
    big = objects["model.safetensors"]
    assert big["ETag"].strip('"').endswith("-3")  # multipart, three 5 MiB parts
    assert big["ChecksumSHA256"] == _composite_sha256(weights)  # the server kept our checksums
    small = objects["config.json"]
    assert small["ChecksumSHA256"] == base64.b64encode(
        hashlib.sha256((model_dir / "config.json").read_bytes()).digest()).decode()
    card_time = objects["README.md"]["LastModified"]
    assert all(h["LastModified"] <= card_time for h in objects.values())

    # the pushed prefix is a complete, valid model: fetch it with plain boto3 and validate
    fetched = tmp_path / "bert-push"
    fetched.mkdir()
    for name in objects:
        s3.download_file("models", f"bert-push/{name}", str(fetched / name))
    assert any(line.startswith("weights ok") for line in validate_path(fetched))
    loaded = BaseModel.from_pretrain(str(fetched))
    assert torch.equal(loaded.embeddings.word_embeddings.weight,
                       BaseModel.from_pretrain(str(model_dir)).embeddings.word_embeddings.weight)

    # re-push unchanged: nothing uploaded, objects untouched
    again = push(model_dir, "s3://models/bert-push")
    assert again.uploaded == [] and again.bytes_uploaded == 0
    assert sorted(again.skipped) == local
    after = _objects(s3, "bert-push")
    assert {k: (h["ETag"], h["LastModified"]) for k, h in after.items()} == \
           {k: (h["ETag"], h["LastModified"]) for k, h in objects.items()}


def test_repush_sends_only_changed_files(server, tmp_path):
    from publish_helpers import tiny_bert

    d = tiny_bert().save_pretrained(tmp_path / "m", max_shard_size="40KB")
    first = push(d, "s3://models/changing/m")
    assert first.uploaded[-1] == "README.md"
    before = _objects(server.client(), "changing/m")
    tiny_bert().save_pretrained(d, max_shard_size="40KB",  # same weights, new card text
                                card={"license": "mit"})
    second = push(d, "s3://models/changing/m")
    assert second.uploaded == ["README.md"]
    after = _objects(server.client(), "changing/m")
    assert after["README.md"]["ETag"] != before["README.md"]["ETag"]
    assert all(after[k]["ETag"] == before[k]["ETag"] for k in before if k != "README.md")


def test_cli_push(server, model_dir, monkeypatch, capsys):
    rc, out, err = run_cli(["push", model_dir, "s3://models/cli/bert", "--no-progress"],
                           monkeypatch, capsys)
    assert rc == 0, err
    assert f"{len(list(model_dir.iterdir()))} file(s) uploaded" in out
    rc, out, err = run_cli(["push", model_dir, "s3://models/cli/bert"], monkeypatch, capsys)
    assert rc == 0 and "0 file(s) uploaded (0 bytes)" in out


def test_push_errors(server, model_dir, monkeypatch):
    with pytest.raises(RemoteNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        push(model_dir, "s3://no-such-bucket/x")
    with pytest.raises(UnsupportedSourceError, match="cannot push"):
        push(model_dir, "./elsewhere")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(AccessDeniedError, match="refused"):
        push(model_dir, "s3://models/denied")
    assert not server.client().list_objects_v2(Bucket="models", Prefix="denied/").get("Contents")


def test_public_push_is_the_function_even_after_submodule_imports():
    """``hubloader.push`` must stay the function: no submodule may share its name."""
    import importlib

    import hubloader

    importlib.import_module("hubloader.publish")
    importlib.import_module("hubloader.publish.hf")
    importlib.import_module("hubloader.publish.s3")
    assert callable(hubloader.push) and hubloader.push.__name__ == "push"
    assert callable(hubloader.download) and hubloader.download.__name__ == "download"


def test_a_refused_part_aborts_the_upload_and_publishes_nothing(server, model_dir):
    """Part 2 of 3 is refused (403 at a proxy in front of SeaweedFS, its body dropped there):
    the push raises a typed error, the multipart upload is aborted, and neither the weights
    nor config.json nor the card appear."""
    proxy = servers.FaultProxy(server.s3_port)
    try:
        proxy.fault_methods = ("PUT",)
        proxy.fail = ("partNumber=2", 403, 1000)
        with pytest.raises(AccessDeniedError):
            push(model_dir, "s3://models/refused-part", endpoint_url=proxy.url, progress=False)
        assert any("partNumber=2" in i for i in proxy.injected)
    finally:
        proxy.close()
    s3 = server.client()
    uploads = s3.list_multipart_uploads(Bucket="models", Prefix="refused-part/")
    assert uploads.get("Uploads", []) == [], "the multipart upload was not aborted"
    assert s3.list_objects_v2(Bucket="models", Prefix="refused-part/").get("Contents", []) == []
