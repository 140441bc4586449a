"""``hubloader download`` and ``hubloader cache ls|verify|prune|rm`` on a real folder hub."""

from __future__ import annotations

import os
import time

import pytest

from hubloader import cli
from hubloader.hub import cache
from hub_helpers import make_tiny_bert, write_card


@pytest.fixture
def run_cli(capsys):
    def run(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def tiny_card(hub_env):
    hub = hub_env / "hub"
    make_tiny_bert(hub / "tiny-bert")
    write_card(hub_env / "cards", "tiny-bert", source=(hub / "tiny-bert").as_uri())
    return hub / "tiny-bert"


def test_download_ls_verify_rm(run_cli, tiny_card, hub_env):
    code, out, _ = run_cli("download", "tiny-bert", "-q")
    assert code == 0
    path = cache.Path(out.strip())
    assert (path / "model.safetensors").is_file()

    code, out, _ = run_cli("cache", "ls")
    assert code == 0 and tiny_card.as_uri() in out and f"{sum(1 for f in tiny_card.iterdir() if f.is_file())} files" in out and "complete" in out
    assert "1 snapshot(s): " in out and "0 B shared between snapshots" in out

    code, out, _ = run_cli("cache", "verify")
    assert code == 0 and f"{sum(1 for f in tiny_card.iterdir() if f.is_file())} file(s) checked, 0 problem(s)" in out

    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, out, _ = run_cli("cache", "verify", "tiny-bert")
    assert code == 1 and "BAD sha256" in out and "model.safetensors" in out

    code, out, _ = run_cli("cache", "rm", "tiny-bert")
    assert code == 0 and "removed" in out and not path.exists()
    code, _, err = run_cli("cache", "rm", "tiny-bert")
    assert code == 1 and "nothing cached" in err


def test_prune(run_cli, tiny_card, hub_env):
    run_cli("download", "tiny-bert", "-q")
    repo = cache.managed_paths(tiny_card.as_uri(), "main").meta_dir
    old = repo / "partial" / "0123.incomplete"
    old.write_bytes(b"x" * 1000)
    fresh = repo / "partial" / "4567.incomplete"
    fresh.write_bytes(b"y" * 10)
    past = time.time() - 7200
    os.utime(old, (past, past))
    broken = repo / "snapshots" / "never-finished"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    os.utime(broken, (past, past))

    code, out, _ = run_cli("cache", "prune", "--dry-run")
    assert code == 0 and "would remove 2 item(s)" in out and old.exists()
    code, out, _ = run_cli("cache", "prune")
    assert code == 0 and not old.exists() and not broken.exists()
    assert fresh.exists(), "a partial younger than --min-age may belong to a running download"
    assert (repo / "snapshots" / "main" / "config.json").is_file()


def test_offline_cli_error_is_one_line(run_cli, tiny_card):
    code, out, err = run_cli("download", "tiny-bert", "--offline")
    assert code == 1 and err.startswith("error: ") and "offline" in err and out == ""
