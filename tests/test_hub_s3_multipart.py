"""S3 objects uploaded in parts, verified end to end with no card sha256 and no
``x-amz-meta-sha256``: their composite CRC32 checksum (boto3's ``upload_file`` default) or
their multipart ETag (uploads without checksums) is recomputed over the parts, on SeaweedFS
and on moto's S3. A byte flipped in transit is an ``IntegrityError`` with nothing stored; a
corrupted partial file is caught when it resumes; where the server states nothing usable the
file is recorded unverified, with one warning, and ``hubloader cache verify`` says so."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hubloader
from hubloader import cli
from hubloader.errors import IntegrityError
from hubloader.hub import cache
from hub_helpers import WORKTREE
import servers

MiB = 1 << 20
WEIGHTS = random.Random(13).randbytes(11 * MiB)  # boto3's upload_file: parts of 8 + 3 MiB
CONFIG = b'{"model_type": "bert"}'
KINDS = {"crc": "composite crc32 checksum", "etag": "multipart ETag"}


@pytest.fixture(autouse=True)
def _clean_env(hub_env):
    """Every test runs in a clean hubloader environment."""


def _client(endpoint: str, *, checksums: bool, **keys):
    """A boto3 client; ``checksums=False`` uploads without any (the multipart ETag only)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_supported" if checksums else "when_required"),
        **keys)


def _upload(s3, bucket: str, prefix: str, tmp_path) -> None:
    """config.json and the weights, the weights through ``upload_file`` (in parts)."""
    weights = tmp_path / f"{prefix}.bin"
    weights.write_bytes(WEIGHTS)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/config.json", Body=CONFIG)
    s3.upload_file(str(weights), bucket, f"{prefix}/model.safetensors")


def _upload_uneven(s3, bucket: str, key: str) -> None:
    """Parts of 5, 5.5 and 0.5 MiB without checksums: the part-1 HEAD does not give them."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts, pos = [], 0
    for number, size in enumerate((5 * MiB, 5 * MiB + MiB // 2, MiB // 2), 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                              Body=WEIGHTS[pos:pos + size])["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        pos += size
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                 MultipartUpload={"Parts": parts})


def _entry(uri: str) -> dict:
    return cache.read_manifest(cache.managed_paths(uri, "main"))["files"]["model.safetensors"]


@pytest.fixture(scope="module")
def weed_objects(weed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multipart")
    weed.ensure_bucket("multipart")
    keys = dict(aws_access_key_id=servers.ACCESS_KEY, aws_secret_access_key=servers.SECRET_KEY)
    for prefix in KINDS:
        _upload(_client(weed.endpoint, checksums=prefix == "crc", **keys), "multipart", prefix, tmp)
    head = weed.client().head_object(Bucket="multipart", Key="crc/model.safetensors",
                                     ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-2"') and head["ChecksumType"] == "COMPOSITE", head


@pytest.fixture
def moto_bucket(hub_env, moto_url, monkeypatch, tmp_path):
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", moto_url)
    bucket = "mp-" + hashlib.sha1(str(hub_env).encode()).hexdigest()[:12]
    _client(moto_url, checksums=False).create_bucket(Bucket=bucket)
    for prefix in KINDS:
        _upload(_client(moto_url, checksums=prefix == "crc"), bucket, prefix, tmp_path)
    return bucket


@pytest.mark.parametrize("prefix,ranges", [("crc", False), ("etag", False), ("etag", True)])
def test_seaweedfs_multipart_object_is_verified(proxy, weed_objects, monkeypatch, prefix, ranges):
    if ranges:  # parallel ranged GETs: the hash follows the completed prefix
        monkeypatch.setenv("HUBLOADER_PARALLEL_THRESHOLD_MB", "1")
        monkeypatch.setenv("HUBLOADER_MAX_WORKERS", "3")
    path = hubloader.download(f"s3://multipart/{prefix}")
    assert len(proxy.range_headers()) == (2 if ranges else 0)  # 8 MiB per range at least
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert _entry(f"s3://multipart/{prefix}/")["verified"] == KINDS[prefix]


def test_seaweedfs_uneven_parts_are_verified_by_their_listed_sizes(proxy, weed, weed_objects):
    keys = dict(aws_access_key_id=servers.ACCESS_KEY, aws_secret_access_key=servers.SECRET_KEY)
    _upload_uneven(_client(weed.endpoint, checksums=False, **keys), "multipart",
                   "uneven/model.safetensors")
    path = hubloader.download("s3://multipart/uneven")
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert _entry("s3://multipart/uneven/")["verified"] == "multipart ETag"
    assert any("?attributes" in g for g in proxy.get_lines())  # GetObjectAttributes said


@pytest.mark.parametrize("prefix", sorted(KINDS))
def test_moto_multipart_object_is_verified(moto_bucket, prefix):
    uri = f"s3://{moto_bucket}/{prefix}"
    path = hubloader.download(uri)
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert _entry(uri + "/")["verified"] == KINDS[prefix]


@pytest.mark.parametrize("prefix", sorted(KINDS))
def test_byte_flipped_in_transit_is_an_integrity_error(proxy, weed_objects, prefix):
    proxy.flip = (f"/multipart/{prefix}/model.safetensors", 3 * MiB, 10)  # every GET of it
    with pytest.raises(IntegrityError, match="twice") as info:
        hubloader.download(f"s3://multipart/{prefix}")
    assert KINDS[prefix] in str(info.value)
    snap = cache.managed_paths(f"s3://multipart/{prefix}/", "main")
    assert not snap.file("model.safetensors").exists()
    assert not any(p.is_file() for p in (snap.meta_dir / "partial").rglob("*"))
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    assert not any(p.name != cache.blobs_root().joinpath(sha).name and p.stat().st_size == len(WEIGHTS)
                   for p in cache.blobs_root().glob("*")), "wrong bytes stored as a blob"


def test_moto_byte_flipped_in_transit_is_an_integrity_error(moto_bucket, moto_url, monkeypatch):
    port = int(moto_url.rsplit(":", 1)[1])
    tamper = servers.FaultProxy(port)
    try:
        monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", tamper.url)
        tamper.flip = (f"/{moto_bucket}/etag/model.safetensors", 5 * MiB, 10)
        with pytest.raises(IntegrityError, match="multipart ETag"):
            hubloader.download(f"s3://{moto_bucket}/etag")
        assert not cache.managed_paths(f"s3://{moto_bucket}/etag/", "main").file(
            "model.safetensors").exists()
    finally:
        tamper.close()


KILLABLE = """
import hubloader
hubloader.download("s3://multipart/etag")
"""


def test_corrupted_partial_is_caught_when_it_resumes(proxy, weed_objects, caplog):
    proxy.throttle_bps = 4 * MiB
    child = subprocess.Popen([sys.executable, "-c", KILLABLE],
                             env=dict(os.environ, PYTHONPATH=str(WORKTREE)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial_dir = cache.managed_paths("s3://multipart/etag/", "main").meta_dir / "partial"
    deadline = time.monotonic() + 60
    try:
        while True:
            parts = [p for p in partial_dir.glob("*.incomplete*") if p.is_file()] \
                if partial_dir.exists() else []
            if parts and parts[0].stat().st_size >= 3 * MiB:
                break
            assert child.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline, "no partial file appeared"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    with open(parts[0], "r+b") as fh:  # bit rot in the kept prefix
        fh.seek(MiB + 7)
        fh.write(bytes([WEIGHTS[MiB + 7] ^ 0x01]))
    proxy.reset()
    proxy.throttle_bps = None
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        path = hubloader.download("s3://multipart/etag")
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert any("multipart ETag mismatch" in r.getMessage() for r in caplog.records)
    weights = [g for g in proxy.get_lines() if g.startswith("GET /multipart/etag/model.safetensors")
               and "partNumber" not in g and "attributes" not in g]
    assert len(weights) == 2 and proxy.range_headers()[0].startswith("bytes=")  # resume, refetch


def test_nothing_to_verify_against_is_recorded_and_warned_once(moto_bucket, moto_url, caplog):
    s3 = _client(moto_url, checksums=False)
    for name in ("model.safetensors", "model-2.safetensors"):
        _upload_uneven(s3, moto_bucket, f"uneven/{name}")
    uri = f"s3://{moto_bucket}/uneven"
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        path = hubloader.download(uri, allow_patterns=["*.safetensors"])
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    files = cache.read_manifest(cache.managed_paths(uri + "/", "main"))["files"]
    assert {k: v["verified"] for k, v in files.items()} == {"model.safetensors": None,
                                                           "model-2.safetensors": None}
    warnings = [r.getMessage() for r in caplog.records if "stored unverified" in r.getMessage()]
    assert len(warnings) == 1 and uri in warnings[0], warnings


def test_cache_verify_lists_unverified_files(moto_bucket, moto_url, capsys):
    _upload_uneven(_client(moto_url, checksums=False), moto_bucket, "uneven/model.safetensors")
    hubloader.download(f"s3://{moto_bucket}/crc")
    unverified = hubloader.download(f"s3://{moto_bucket}/uneven")
    code = cli.main(["cache", "verify"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("UNVERIFIED") == 1 and str(unverified / "model.safetensors") in out, out
    assert "0 problem(s), 1 never verified against their source" in out


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=4096), cuts=st.lists(st.integers(1, 512), max_size=8),
       chunks=st.lists(st.integers(1, 700), min_size=1, max_size=8),
       algorithm=st.sampled_from(["md5", "crc32", "sha1", "sha256"]))
def test_part_digest_does_not_depend_on_how_the_bytes_arrive(data, cuts, chunks, algorithm):
    """The value over parts is the same however the stream is chunked, and is S3's formula:
    the digest of the parts' digests (hex + -N for the ETag, base64 + -N for a checksum)."""
    import base64
    import zlib

    from hubloader.hub.sources.part_digests import Expected, PartDigest

    sizes, pos = [], 0
    for cut in cuts:
        if pos + cut >= len(data):
            break
        sizes.append(cut)
        pos += cut
    sizes.append(len(data) - pos)

    def raw(b: bytes) -> bytes:
        return zlib.crc32(b).to_bytes(4, "big") if algorithm == "crc32" \
            else hashlib.new(algorithm, b).digest()

    parts, pos = [], 0
    for size in sizes:
        parts.append(raw(data[pos:pos + size]))
        pos += size
    joined = b"".join(parts)
    want = (hashlib.md5(joined).hexdigest() if algorithm == "md5"
            else base64.b64encode(raw(joined)).decode()) + f"-{len(sizes)}"
    digest = PartDigest(Expected("test", algorithm, want, tuple(sizes)))
    pos, i = 0, 0
    while pos < len(data):
        step = chunks[i % len(chunks)]
        digest.update(data[pos:pos + step])
        pos, i = pos + step, i + 1
    assert digest.mismatch() is None
    digest.update(b"x")  # one byte too many is a mismatch, never a pass
    assert digest.mismatch() is not None
