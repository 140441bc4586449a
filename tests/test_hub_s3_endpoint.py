"""S3 at a configured endpoint, as users meet it: keys needing escapes, listings of several
pages, unsigned requests, HTTPS with a private CA and a proxy from the environment. Against
SeaweedFS on 127.0.0.1, through the counting proxy where requests are counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hubloader
from hubloader.errors import AccessDeniedError, NetworkError
from hubloader.hub.sources import s3 as s3_source
from hub_helpers import files_in

# keys whose path must be percent-encoded, in the URL and in the signature alike
ODD_KEYS = {
    "dir with space/a+b=c.json": b'{"plus": true}',
    "ünïcode/çødé.txt": "bytes of ünïcode".encode(),
    "pct%41/x.txt": b"a literal percent sign",
    "tilde~/semi;colon,comma.txt": b"more punctuation",
    "config.json": b"{}",
}


@pytest.fixture
def odd_bucket(weed):
    s3 = weed.client()
    try:
        s3.create_bucket(Bucket="odd")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for key, body in ODD_KEYS.items():
        s3.put_object(Bucket="odd", Key="keys/" + key, Body=body)
    return "s3://odd/keys"


def test_keys_needing_escapes_list_and_fetch_alike(proxy, odd_bucket):
    path = hubloader.download(odd_bucket, allow_patterns=["*"])
    assert files_in(path) == ODD_KEYS


def test_listing_follows_continuation_tokens(proxy, odd_bucket, monkeypatch):
    monkeypatch.setattr(s3_source, "_LIST_PAGE", 2)
    path = hubloader.download(odd_bucket, allow_patterns=["*"])
    assert set(files_in(path)) == set(ODD_KEYS)
    listings = [line for line in proxy.get_lines() if "list-type=2" in line]
    assert len(listings) == 3, listings  # 5 keys, 2 per page
    assert sum("continuation-token=" in line for line in listings) == 2


def test_without_credentials_requests_go_unsigned_and_are_refused(proxy, odd_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AccessDeniedError, match="credentials") as info:
        hubloader.download(odd_bucket)
    assert isinstance(info.value, PermissionError)
    requests = [r for r in proxy.requests if "list-type=2" in r]
    assert requests and not any("authorization:" in r.lower() for r in requests)


def test_a_fetch_imports_botocore_but_not_boto3(proxy, odd_bucket):
    """The client is botocore's, built without boto3's layer (whose import, s3transfer with
    it, is a cold process's cost for nothing): a fresh process fetches and verifies the files
    without importing either."""
    code = ("import json, sys, hubloader\n"
            f"path = hubloader.download({odd_bucket!r}, progress=False)\n"
            "print(json.dumps([str(path), sorted(m for m in ('boto3', 's3transfer', 'botocore')"
            " if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    path, imported = json.loads(out.splitlines()[-1])
    assert imported == ["botocore"]
    assert files_in(Path(path)) == ODD_KEYS
    assert any("list-type=2" in r for r in proxy.requests)


@pytest.fixture
def tls(weed, hub_env, tmp_path, monkeypatch):
    """SeaweedFS behind HTTPS with a self-signed certificate, as the S3 endpoint."""
    import servers

    proxy = servers.TLSProxy(weed.s3_port, tmp_path)
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("HUBLOADER_TIMEOUT", "5")
    yield proxy
    proxy.close()


@pytest.mark.parametrize("bundle_var", ["AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"])
def test_https_endpoint_trusts_the_ca_bundle(tls, odd_bucket, monkeypatch, bundle_var):
    with pytest.raises(NetworkError, match="(?i)ssl|certificate") as info:
        hubloader.download(odd_bucket)  # the certificate is not trusted yet
    assert isinstance(info.value, ConnectionError) and tls.handshakes_failed >= 1
    monkeypatch.setenv(bundle_var, str(tls.cert))
    path = hubloader.download(odd_bucket, allow_patterns=["*"])
    assert files_in(path) == ODD_KEYS


def test_http_proxy_from_the_environment_is_used(proxy, weed, odd_bucket, monkeypatch):
    """HTTP_PROXY is honoured: the counting proxy (which relays to SeaweedFS) becomes the
    forward proxy of a direct endpoint and sees every request."""
    monkeypatch.setenv("HUBLOADER_S3_ENDPOINT_URL", weed.endpoint)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    path = hubloader.download(odd_bucket, allow_patterns=["*"])
    assert (path / "config.json").read_bytes() == ODD_KEYS["config.json"]
    lines = proxy.get_lines()
    assert any("list-type=2" in line for line in lines), lines
    assert all(line.startswith(f"GET {weed.endpoint}/") for line in lines), lines
