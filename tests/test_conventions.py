"""The conventions users expect: ``hubloader --version``, ``--json`` on ``ls`` and ``info``,
``HF_HUB_DISABLE_PROGRESS_BARS``, progress bars that end at 100%, and a user agent naming
hubloader and its version on hub and S3 requests."""

from __future__ import annotations

import json
import re

import pytest

import hubloader
from hubloader.cli import main
from hub_helpers import make_tiny_bert, write_card


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"hubloader {hubloader.__version__}"


def test_ls_and_info_json(hub_env, capsys):
    write_card(hub_env / "cards", "json-bert", source="s3://b/json-bert",
               files=[{"path": "config.json", "sha256": "ab" * 32, "size": 12}])
    assert main(["ls", "--json", "--pattern", "json-*"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in listed] == ["json-bert"]
    assert listed[0]["architecture"] == "bert" and listed[0]["source"] == "s3://b/json-bert"
    assert main(["info", "json-bert", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["source"] == "s3://b/json-bert" and card["architecture"] == "bert"
    assert card["files"] == [{"path": "config.json", "sha256": "ab" * 32, "size": 12}]


@pytest.fixture
def hf_repo(hub_env, hub, monkeypatch, tmp_path):
    folder = make_tiny_bert(tmp_path / "conv-bert")
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    hub.add_commit("conv/tiny", files)
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HUBLOADER_DISABLE_PROGRESS_BARS")
    return files


def test_progress_bars_end_at_100_percent(hf_repo, capsys):
    hubloader.download("hf://conv/tiny", progress=True)
    err = capsys.readouterr().err
    for name in hf_repo:
        renders = [r for r in re.split(r"[\r\n]", err) if r.startswith(f"{name}:")]
        assert renders and "100%" in renders[-1], (name, renders)


def test_hf_hub_disable_progress_bars(hf_repo, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    hubloader.download("hf://conv/tiny", progress=True)
    assert "%|" not in capsys.readouterr().err


def test_user_agent_on_hub_requests(hf_repo, hub):
    hubloader.download("hf://conv/tiny", progress=False)
    assert hub.user_agents and all(
        f"hubloader/{hubloader.__version__}" in ua for ua in hub.user_agents), hub.user_agents


def test_user_agent_on_s3_requests(proxy, weed, hub_env, tmp_path):
    weed.ensure_bucket("ua-s3")
    folder = make_tiny_bert(tmp_path / "ua-bert")
    hubloader.push(folder, "s3://ua-s3/m/", progress=False, endpoint_url=proxy.url)
    pushed = list(proxy.requests)
    proxy.reset()
    hubloader.download("s3://ua-s3/m/", progress=False)
    for head in pushed + proxy.requests:
        agent = re.search(r"(?im)^user-agent:\s*(.*)$", head)
        assert agent and f"hubloader/{hubloader.__version__}" in agent.group(1), head[:300]
