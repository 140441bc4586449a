"""The command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "hubloader.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_ls_and_task_filter():
    out = run("ls")
    assert out.returncode == 0 and "all-MiniLM-L6-v2" in out.stdout and "BERT-base-en" in out.stdout
    ner = run("ls", "--task", "ner")
    assert ner.returncode == 0 and "BERT-base-en" in ner.stdout
    assert "all-MiniLM-L6-v2" not in ner.stdout


def test_info():
    out = run("info", "all-minilm-l6-v2")
    assert out.returncode == 0
    assert "architecture: bert" in out.stdout
    assert "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db" in out.stdout


@pytest.mark.parametrize("args,needle", [
    (("info", "bert-base-uncase"), "Did you mean: bert-base-uncased"),
    (("ls", "--task", "clasification"), "unknown task"),
    (("validate", "/nonexistent/dir"), "neither a model directory nor a card"),
])
def test_errors_are_one_line_without_traceback(args, needle):
    out = run(*args)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and needle in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_validate_model_dir_and_card(hf_bert, tmp_path):
    _, path = hf_bert("BertForTokenClassification")
    out = run("validate", str(path))
    assert out.returncode == 0, out.stderr
    assert "BertForTokenClassification (strict)" in out.stdout and out.stdout.strip().endswith("valid")
    (path / "config.json").write_text("{")
    bad = run("validate", str(path))
    assert bad.returncode == 1 and "not valid JSON" in bad.stderr
    card = tmp_path / "card.md"
    card.write_text("---\nname: x\ntasks: [ner]\nlicense: MIT\nauthor: me\narchitecture: bert\n---\n")
    assert run("validate", str(card)).returncode == 0
    card.write_text("---\nname: x\n---\n")
    out = run("validate", str(card))
    assert out.returncode == 1 and "missing required field" in out.stderr


def test_demo(tmp_path):
    out = run("demo", "--hub", str(tmp_path / "hub"))
    assert out.returncode == 0, out.stderr
    assert "loaded BertForSequenceClassification by name" in out.stdout
    assert out.stdout.count("missing 0, unexpected 0") == 2
    cold = next(line for line in out.stdout.splitlines() if line.startswith("cold"))
    warm = next(line for line in out.stdout.splitlines() if line.startswith("warm"))
    # both loads come from the managed cache, not from the hub folder in place
    assert "/cache/models/" in cold and "/cache/models/" in warm
    assert (tmp_path / "hub" / "demo-bert-tiny" / "model.safetensors").is_file()
