"""hf:// push. No hub server that accepts uploads runs offline, so the upload itself is not
tested here; what is: the unchanged-file test uses the same blob id git computes, and a
refused connection surfaces as a typed NetworkError (real HfApi, real socket)."""

from __future__ import annotations

import subprocess

import pytest

from hubloader import NetworkError
from hubloader.publish import git_blob_sha1, push
from publish_helpers import tiny_bert
from publish_servers import free_port


def test_git_blob_sha1_matches_git(tmp_path):
    d = tiny_bert().save_pretrained(tmp_path / "m")
    for p in d.iterdir():
        expected = subprocess.run(["git", "hash-object", str(p)], capture_output=True,
                                  text=True, check=True).stdout.strip()
        assert git_blob_sha1(p) == expected


def test_unreachable_hub_is_a_network_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    d = tiny_bert().save_pretrained(tmp_path / "m")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(NetworkError, match="hf://org/tiny@main"):
        push(d, "hf://org/tiny", endpoint_url=endpoint, token="hf_dummy", progress=False)
