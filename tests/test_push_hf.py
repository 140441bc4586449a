"""hf:// push through the real ``huggingface_hub.HfApi`` against ``servers.HubServer`` on
127.0.0.1 (LFS upload protocol; the hub's Xet storage is not served, so these pushes run with
``HF_HUB_DISABLE_XET=1``). Also: the unchanged-file test uses the same blob id git computes,
and a refused connection surfaces as a typed NetworkError."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hubloader import NetworkError
from hubloader.hub.digests import git_blob_sha1
from hubloader.publish import push
from publish_helpers import tiny_bert
import servers


def test_git_blob_sha1_matches_git(tmp_path):
    d = tiny_bert().save_pretrained(tmp_path / "m")
    for p in d.iterdir():
        expected = subprocess.run(["git", "hash-object", str(p)], capture_output=True,
                                  text=True, check=True).stdout.strip()
        assert git_blob_sha1(p) == expected


def test_unreachable_hub_is_a_network_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    d = tiny_bert().save_pretrained(tmp_path / "m")
    endpoint = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    with pytest.raises(NetworkError, match="hf://org/tiny@main"):
        push(d, "hf://org/tiny", endpoint_url=endpoint, token="hf_dummy", progress=False)


def _push_cli(folder, uri, server, home):
    env = dict(os.environ, HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1", HF_TOKEN="hf_test",
               HF_HUB_DISABLE_TELEMETRY="1", HUBLOADER_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "hubloader.cli", "push", str(folder), uri,
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=180)


def test_push_to_a_hub_server_then_load_it_back(tmp_path, monkeypatch):
    model = tiny_bert(seed=3)
    folder = model.save_pretrained(tmp_path / "m")
    local = {p.name: p.read_bytes() for p in folder.iterdir()}
    server = servers.HubServer()
    try:
        out = _push_cli(folder, "hf://org/tiny", server, tmp_path / "home")
        assert out.returncode == 0, out.stderr[-3000:]
        # the branch holds exactly the local files, byte for byte
        head = server.repos["org/tiny"]["refs"]["main"]
        assert server.repos["org/tiny"]["commits"][head] == local
        # data first, then config and card in a commit of their own
        assert server.commits_made == [["model.safetensors"], ["config.json", "README.md"]]
        assert any(h.startswith("PUT /lfs/") for h in server.hits)  # weights went over LFS
        assert server.bytes_received == sum(len(b) for b in local.values())

        # load it back by hf:// URI through hubloader's own hf source
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "cache"))
        from hubloader.models import BertModel

        loaded = BertModel.from_pretrain("hf://org/tiny")
        for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name

        # unchanged: nothing is sent and no commit is made
        before = (server.bytes_received, len(server.commits_made))
        again = _push_cli(folder, "hf://org/tiny", server, tmp_path / "home")
        assert again.returncode == 0, again.stderr[-3000:]
        assert (server.bytes_received, len(server.commits_made)) == before

        # only the card changed: only the card is sent
        card = folder / "README.md"
        card.write_text(card.read_text() + "\nMore words.\n")
        third = _push_cli(folder, "hf://org/tiny", server, tmp_path / "home")
        assert third.returncode == 0, third.stderr[-3000:]
        assert server.commits_made[-1] == ["README.md"]
        assert server.bytes_received - before[0] == card.stat().st_size
    finally:
        server.close()


def test_push_to_a_new_branch(tmp_path):
    folder = tiny_bert(seed=4).save_pretrained(tmp_path / "m")
    server = servers.HubServer()
    try:
        out = _push_cli(folder, "hf://org/tiny@dev", server, tmp_path / "home")
        assert out.returncode == 0, out.stderr[-3000:]
        refs = server.repos["org/tiny"]["refs"]
        assert server.repos["org/tiny"]["commits"][refs["main"]] == {}  # main untouched
        assert set(server.repos["org/tiny"]["commits"][refs["dev"]]) == {
            "model.safetensors", "config.json", "README.md"}
    finally:
        server.close()
