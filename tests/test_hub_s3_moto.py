"""S3 against a second server implementation: moto's S3 (``moto[server]``) on 127.0.0.1.
SeaweedFS carries the rest of the S3 tests; this one checks that another server's listings
(several pages), checksums, ranges and errors read the same."""

from __future__ import annotations

import hashlib
import os

import pytest

import hubloader
from hubloader.errors import IntegrityError, RemoteNotFoundError
from hubloader.hub.sources import s3 as s3_source
from hub_helpers import files_in

FILES = {
    "config.json": b'{"model_type": "bert"}',
    "model.safetensors": os.urandom(3 << 20),
    "dir with space/ünï+code.txt": "ünïcode".encode(),
}


@pytest.fixture
def moto_env(hub_env, moto_url, monkeypatch):
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", moto_url)
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = "moto-" + hashlib.sha1(str(hub_env).encode()).hexdigest()[:12]
    s3.create_bucket(Bucket=bucket)
    for key, body in FILES.items():
        # the weights carry a full-object sha256 checksum, which the HEAD reads back
        extra = {"ChecksumAlgorithm": "SHA256"} if key.endswith(".safetensors") else {}
        s3.put_object(Bucket=bucket, Key=f"m/{key}", Body=body, **extra)
    return s3, bucket


def test_download_matches_the_objects(moto_env, monkeypatch):
    s3, bucket = moto_env
    monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")  # the weights go as ranged GETs
    monkeypatch.setattr(s3_source, "_LIST_PAGE", 2)  # three pages of listing
    path = hubloader.download(f"s3://{bucket}/m", allow_patterns=["*"])
    assert files_in(path) == FILES


def test_head_reads_stated_digests_and_a_false_one_fails(moto_env, monkeypatch):
    """The HEAD finds the object's full-object x-amz-checksum-sha256, or else a sha256 in its
    user metadata; a server that states another digest than its bytes fails the download."""
    from hubloader.hub.sources.s3 import S3Source

    s3, bucket = moto_env
    other = hashlib.sha256(b"other bytes").hexdigest()
    s3.put_object(Bucket=bucket, Key="bad/model.safetensors", Body=FILES["model.safetensors"],
                  Metadata={"sha256": other})
    weights = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    for prefix, stated in (("m", weights), ("bad", other)):
        source = S3Source(f"{bucket}/{prefix}")
        listed = {f.path: f for f in source.list_files(None).files}
        assert source.stated_digests(listed["model.safetensors"]).sha256 == stated
    with pytest.raises(IntegrityError, match="sha256"):
        hubloader.download(f"s3://{bucket}/bad", allow_patterns=["*"])


def test_missing_bucket_is_not_found(moto_env, monkeypatch):
    with pytest.raises(RemoteNotFoundError, match="no-such-bucket") as info:
        hubloader.download("s3://no-such-bucket/m")
    assert isinstance(info.value, FileNotFoundError)
