"""Every input a careless user or a hostile source can give ends in a typed
``HubLoaderError`` with a message saying what to do, and the CLI prints one ``error: ...``
line, never a traceback: over-long names, malformed ``s3://`` and ``hf://`` URIs, wrong
argument types, ``offline="false"``, a file as ``download_path``, a bucket with a key that is
both a file and a folder, keys with ``\\..\\`` or an empty part, and absurd tensor shapes."""

from __future__ import annotations

import json
import struct

import pytest

import hubloader
from hubloader import AutoLoader, cli, list_models
from hubloader.errors import (ConfigError, HubLoaderError, InvalidModelNameError,
                              UnknownTaskError, WeightsError)
from hubloader.models import BertModel
from hubloader.load.weights import read_safetensors
from hub_helpers import make_tiny_bert, write_card

CLI_CASES = [
    (["download", "x" * 5000], "too long"),
    (["download", "./" + "y" * 300], "too long"),
    (["download", "s3:///prefix"], "names no bucket"),
    (["download", "s3:// /prefix"], "not a bucket name"),
    (["download", "s3://bucket//prefix"], "leading '/'"),
    (["download", "hf://org/re po"], "a hub repository is 'org/name'"),
    (["download", "bert-base-en", "--download-path", "{a_file}"], "is a file"),
    (["cache", "rm", ""], "does not name one cached model"),
    (["run", "embedding", "x" * 5000, "hello"], "too long"),
]


@pytest.mark.parametrize("argv,needle", CLI_CASES)
def test_cli_prints_one_error_line(argv, needle, capsys, hub_env):
    (hub_env / "a-file").write_text("x")
    argv = [a.replace("{a_file}", str(hub_env / "a-file")) for a in argv]
    assert cli.main(argv) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and needle in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("call,error,needle", [
    (lambda: AutoLoader(None, "bert-base-en"), UnknownTaskError, "got None"),
    (lambda: list_models(task=5), UnknownTaskError, "got 5"),
    (lambda: hubloader.download("hf://org/repo", offline="false"), ConfigError, "True, False or None"),
    (lambda: hubloader.download("bert-base-en", download_path=5), InvalidModelNameError, "got 5"),
    (lambda: BertModel.from_pretrain("a/" * 2500), InvalidModelNameError, "too long"),
    (lambda: hubloader.download("hf://org/" + "r" * 200), InvalidModelNameError, "hub repository"),
    (lambda: hubloader.download("s3://b/x\x00y"), InvalidModelNameError, "NUL"),
])
def test_api_misuse_is_typed(call, error, needle, hub_env):
    with pytest.raises(error, match=needle) as info:
        call()
    assert isinstance(info.value, HubLoaderError)


@pytest.mark.parametrize("device,needle", [
    ("bogus", "not a device name"), (123, "must be a string"), (True, "must be a string"),
    ("cuda:99", "CUDA"),
])
def test_bad_devices(device, needle, tmp_path):
    folder = make_tiny_bert(tmp_path / "tiny")
    with pytest.raises(ConfigError, match=needle):
        BertModel.from_pretrain(str(folder), device=device)
    with pytest.raises(ConfigError, match=needle):
        AutoLoader("embedding", str(folder), device=device)


def test_download_path_that_is_a_file(tmp_path, hub_env):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    folder = make_tiny_bert(tmp_path / "tiny")
    write_card(hub_env / "cards", "tiny-bert", source=folder.as_uri())
    with pytest.raises(InvalidModelNameError, match="is a file, not a directory"):
        BertModel.from_pretrain("tiny-bert", download_path=a_file)
    with pytest.raises(InvalidModelNameError, match="is a file, not a directory"):
        hubloader.download("tiny-bert", download_path=str(a_file))
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("shape", [[0, 2**62, 2**62], [0, 2**63 + 5], [2**40, 0, 2**40],
                                   [1] * 100])
def test_absurd_tensor_shapes(tmp_path, shape):
    header = json.dumps({"a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(WeightsError, match="absurd shape"):
        read_safetensors(path)


def test_absurd_config_sizes_are_typed(tmp_path):
    folder = make_tiny_bert(tmp_path / "tiny")
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_size=2**40, num_attention_heads=1)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError):
        BertModel.from_pretrain(str(folder), strict=False)


# -- a source whose keys cannot be a snapshot folder -------------------------------------------
@pytest.mark.parametrize("keys,needle", [
    (["a.json", "a.json/b.json"], "both as a file and as a folder"),
    (["..\\..\\evil.json"], "not a plain relative file name"),
    (["/abs.json"], "not a plain relative file name"),
    (["d/./e.json"], "not a plain relative file name"),
    (["n" * 256 + ".json"], "longer than the 255 bytes"),
])
def test_s3_keys_a_snapshot_cannot_hold(moto_url, hub_env, monkeypatch, keys, needle):
    import boto3

    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", moto_url)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = f"keys-{abs(hash(tuple(keys))) % 10**8}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="m/config.json", Body=b'{"model_type": "bert"}')
    for key in keys:
        s3.put_object(Bucket=bucket, Key="m/" + key, Body=b"{}")
    with pytest.raises(InvalidModelNameError, match=needle):
        hubloader.download(f"s3://{bucket}/m", allow_patterns=["*"])
    assert cli.main(["download", f"s3://{bucket}/m", "--include", "*", "-q"]) == 1
    # leaving the stray key out, as the message says, works
    path = hubloader.download(f"s3://{bucket}/m", allow_patterns=["config.json"])
    assert [p.name for p in path.iterdir()] == ["config.json"]


def test_s3_key_of_250_characters(moto_url, hub_env, monkeypatch):
    import boto3

    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", moto_url)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = "long-key"
    s3.create_bucket(Bucket=bucket)
    name = "k" * 245 + ".json"
    s3.put_object(Bucket=bucket, Key="m/config.json", Body=b'{"model_type": "bert"}')
    s3.put_object(Bucket=bucket, Key="m/" + name, Body=b"{}")
    path = hubloader.download(f"s3://{bucket}/m", allow_patterns=["*"])
    assert (path / name).read_bytes() == b"{}"


def test_s3_prefix_longer_than_a_folder_name(moto_url, hub_env, monkeypatch, tmp_path):
    """Cached under a shortened key it works; as a download_path folder it cannot exist."""
    import boto3

    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", moto_url)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = "long-prefix"
    s3.create_bucket(Bucket=bucket)
    prefix = "p" * 300
    s3.put_object(Bucket=bucket, Key=f"{prefix}/config.json", Body=b'{"model_type": "bert"}')
    assert (hubloader.download(f"s3://{bucket}/{prefix}") / "config.json").is_file()
    with pytest.raises(InvalidModelNameError, match="longer than the 255 bytes"):
        hubloader.download(f"s3://{bucket}/{prefix}", download_path=tmp_path / "dp")
    assert not any((tmp_path / "dp").rglob("*")) if (tmp_path / "dp").exists() else True
