"""Content-addressed storage: ``$HUBLOADER_HOME/blobs/<sha256>`` with snapshot entries hard
linked to it. Identical files across revisions and repositories are stored once, and fetched
once when their sha256 is known beforehand (card, hub LFS metadata); request and byte counts
are taken at the servers (the hub server's request log, the TCP proxy in front of SeaweedFS).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil

import pytest

import hubloader
from hubloader.hub import cache, cached_file
from hubloader.hub.cache_admin import (cache_usage, prune_cache, remove_from_cache,
                                       verify_cache)
from hub_helpers import sha256_of, write_card

SIZE = 4 << 20
WEIGHTS = random.Random(11).randbytes(SIZE)
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()


def _blob() -> "cache.Path":
    return cache.blobs_root() / WEIGHTS_SHA


# -- hf://: two revisions share the weights (LFS sha256 listed) -------------------------------
def test_second_revision_links_the_weights_without_a_get(hub_env, hub, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    v1 = hub.add_commit("org/twins", {"config.json": b'{"v": 1}', "model.safetensors": WEIGHTS},
                        branch="v1")
    v2 = hub.add_commit("org/twins", {"config.json": b'{"v": 2}', "model.safetensors": WEIGHTS})
    hub.hits.clear()
    old = hubloader.download("hf://org/twins@v1")
    new = hubloader.download("hf://org/twins")
    assert (old.name, new.name) == (v1, v2)
    weight_gets = [h for h in hub.hits if h.startswith("GET") and "model.safetensors" in h]
    assert len(weight_gets) == 1, weight_gets
    config_gets = [h for h in hub.hits if h.startswith("GET") and "config.json" in h]
    assert len(config_gets) == 2, "different bytes are fetched per revision"
    a, b, blob = (old / "model.safetensors").stat(), (new / "model.safetensors").stat(), _blob().stat()
    assert a.st_ino == b.st_ino == blob.st_ino and blob.st_nlink == 3
    assert (new / "model.safetensors").read_bytes() == WEIGHTS
    assert not (old / "model.safetensors").is_symlink()
    assert cached_file("hf://org/twins", "model.safetensors", revision="v1") == old / "model.safetensors"
    usage = cache_usage()
    assert usage.shared == SIZE and usage.on_disk < usage.files


# -- s3://: two repositories with the same weights ------------------------------------------
@pytest.fixture(scope="module")
def twins(weed, tmp_path_factory):
    for prefix, config in (("a", b'{"name": "a"}'), ("b", b'{"name": "bb"}')):
        folder = tmp_path_factory.mktemp(f"twin-{prefix}")
        (folder / "config.json").write_bytes(config)
        (folder / "model.safetensors").write_bytes(WEIGHTS)
        weed.upload_dir("twins", prefix, folder)
    return "twins"


def _cards(hub_env, *, with_sha: bool) -> None:
    for name in ("a", "b"):
        files = [{"path": "config.json"},
                 {"path": "model.safetensors", **({"sha256": WEIGHTS_SHA} if with_sha else {})}]
        write_card(hub_env / "cards", f"twin-{name}", source=f"s3://twins/{name}", files=files)


def test_second_repo_with_card_sha256_makes_no_get_for_the_weights(proxy, twins, hub_env):
    _cards(hub_env, with_sha=True)
    a = hubloader.download("twin-a")
    first = proxy.down_bytes
    assert first >= SIZE
    proxy.reset()
    b = hubloader.download("twin-b")
    gets = proxy.get_lines()
    assert not any("/twins/b/model.safetensors" in g for g in gets), gets
    assert any("/twins/b/config.json" in g for g in gets)
    assert proxy.down_bytes < 64 << 10
    print(f"blob reuse: first repo {first:,} bytes down, second {proxy.down_bytes:,} bytes "
          f"({len(gets)} GETs, none for the {SIZE:,}-byte weights)")
    assert (b / "model.safetensors").stat().st_ino == (a / "model.safetensors").stat().st_ino
    assert sha256_of(b / "model.safetensors") == WEIGHTS_SHA
    manifest = cache.read_manifest(cache.managed_paths("s3://twins/b/", "main"))
    assert manifest["files"]["model.safetensors"]["sha256"] == WEIGHTS_SHA


def test_without_digests_both_are_fetched_but_stored_once(proxy, twins, hub_env):
    _cards(hub_env, with_sha=False)
    a = hubloader.download("twin-a")
    b = hubloader.download("twin-b")
    assert sum("model.safetensors" in g for g in proxy.get_lines()) == 2
    assert (b / "model.safetensors").stat().st_ino == (a / "model.safetensors").stat().st_ino
    blobs = sorted(p.name for p in cache.blobs_root().iterdir())
    assert WEIGHTS_SHA in blobs and len(blobs) == 3, blobs  # weights + two different configs


def _put(weed, bucket: str, key: str, data: bytes, **extra) -> None:
    weed.ensure_bucket(bucket).put_object(Bucket=bucket, Key=key, Body=data, **extra)


def test_stated_checksum_links_identical_weights_without_a_get(proxy, weed, hub_env):
    """No card: the object's x-amz-checksum-sha256 (one HEAD) names the blob before any GET."""
    import base64

    checksum = base64.b64encode(hashlib.sha256(WEIGHTS).digest()).decode()
    for prefix in ("a", "b"):
        _put(weed, "stated", f"{prefix}/config.json", b'{"name": "%s"}' % prefix.encode())
        _put(weed, "stated", f"{prefix}/model.safetensors", WEIGHTS, ChecksumSHA256=checksum)
    a = hubloader.download("s3://stated/a")
    proxy.reset()
    b = hubloader.download("s3://stated/b")
    lines = [r.split("\r\n", 1)[0] for r in proxy.requests]
    assert any(r.startswith("HEAD ") and "/stated/b/model.safetensors" in r for r in lines), lines
    assert not any(r.startswith("GET ") and "/stated/b/model.safetensors" in r for r in lines)
    assert proxy.down_bytes < 64 << 10
    assert (b / "model.safetensors").stat().st_ino == (a / "model.safetensors").stat().st_ino
    manifest = cache.read_manifest(cache.managed_paths("s3://stated/b/", "main"))
    assert manifest["files"]["model.safetensors"]["sha256"] == WEIGHTS_SHA


def test_stated_sha256_that_disagrees_is_an_integrity_error(proxy, weed, hub_env):
    """A sha256 in the object's metadata (as ``hubloader push`` writes it) is checked too: a
    wrong one fails the download even though the ETag's md5 matches, and nothing is kept."""
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    _put(weed, "statedbad", "m/config.json", b"{}")
    _put(weed, "statedbad", "m/model.safetensors", WEIGHTS, Metadata={"sha256": wrong})
    with pytest.raises(hubloader.IntegrityError) as info:
        hubloader.download("s3://statedbad/m")
    assert info.value.expected == wrong and info.value.actual == WEIGHTS_SHA
    assert "model.safetensors" in str(info.value)
    assert not (cache.blobs_root() / WEIGHTS_SHA).exists()


def test_rm_collects_blobs_only_when_no_snapshot_links_them(proxy, twins, hub_env):
    _cards(hub_env, with_sha=True)
    hubloader.download("twin-a")
    b = hubloader.download("twin-b")
    assert _blob().stat().st_nlink == 3
    folder, freed = remove_from_cache("twin-a")
    assert not folder.exists()
    assert _blob().stat().st_nlink == 2, "twin-b still links the weights"
    assert freed < SIZE, "the shared weights are not freed while twin-b uses them"
    assert sha256_of(b / "model.safetensors") == WEIGHTS_SHA
    _, freed = remove_from_cache("twin-b")
    assert freed >= SIZE
    assert list(cache.blobs_root().iterdir()) == []


def test_prune_collects_an_unreferenced_blob(proxy, twins, hub_env):
    _cards(hub_env, with_sha=True)
    a = hubloader.download("twin-a")
    shutil.rmtree(a.parents[1])  # a repository deleted by hand: its blobs stay behind
    assert _blob().stat().st_nlink == 1
    report = prune_cache(dry_run=True)
    assert _blob() in report.removed and report.freed >= SIZE and _blob().exists()
    report = prune_cache()
    assert _blob() in report.removed and not _blob().exists()
    assert list(cache.blobs_root().iterdir()) == []


def test_verify_hashes_each_blob_once_and_reports_a_damaged_one(proxy, twins, hub_env, caplog):
    _cards(hub_env, with_sha=True)
    a = hubloader.download("twin-a")
    b = hubloader.download("twin-b")
    with caplog.at_level(logging.DEBUG, logger="hubloader.hub.cache_admin"):
        checked, problems = verify_cache()
    assert (checked, problems) == (4, [])
    # inodes: the weights blob, two configs; 4 entries + 3 blobs, read 3 times
    assert any(r.getMessage() == "verify: 3 file(s) hashed once each" for r in caplog.records)
    with open(_blob(), "r+b") as fh:  # bit rot in the blob: every entry linking it is bad
        fh.seek(1000)
        fh.write(bytes([WEIGHTS[1000] ^ 0xFF]))
    checked, problems = verify_cache()
    bad = sorted(str(p.path) for p in problems)
    assert bad == sorted([str(_blob()), str(a / "model.safetensors"), str(b / "model.safetensors")])
    assert all(p.kind == "sha256" for p in problems)


def test_download_path_holds_plain_files(proxy, twins, hub_env):
    _cards(hub_env, with_sha=True)
    hubloader.download("twin-a")  # the blob exists; download_path still gets a plain copy
    proxy.reset()
    out = hubloader.download("twin-b", download_path=hub_env / "flat")
    assert out == hub_env / "flat" / "twin-b"
    st = (out / "model.safetensors").stat()
    assert st.st_nlink == 1 and st.st_ino != _blob().stat().st_ino
    assert sha256_of(out / "model.safetensors") == WEIGHTS_SHA
    assert not any(p.name == "blobs" for p in (hub_env / "flat").rglob("*"))


def test_blobs_on_another_filesystem_fall_back_to_plain_files(proxy, twins, hub_env):
    shm = "/dev/shm"
    if os.stat(shm).st_dev == os.stat(hub_env).st_dev:
        pytest.fail("the test needs /dev/shm on another filesystem than the test's tmp dir")
    elsewhere = cache.Path(shm) / f"hubloader-blobs-{os.getpid()}-{hub_env.name}"
    elsewhere.mkdir()
    try:
        cache.blobs_root().parent.mkdir(parents=True, exist_ok=True)
        cache.blobs_root().symlink_to(elsewhere)  # hard links into it fail with EXDEV
        _cards(hub_env, with_sha=True)
        a = hubloader.download("twin-a")
        assert (a / "model.safetensors").stat().st_nlink == 1
        assert sha256_of(a / "model.safetensors") == WEIGHTS_SHA
        assert list(elsewhere.iterdir()) == []
        assert list((a.parents[1] / "partial").glob("*")) == []
        assert hubloader.download("twin-a") == a  # warm: the card vouches, no request
    finally:
        shutil.rmtree(elsewhere)
