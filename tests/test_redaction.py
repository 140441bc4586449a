"""Presigned URLs never leak: a hub that redirects a download to a presigned-looking URL
answering 503 yields a NetworkError, retry warnings and a CLI error line that name the file
and the status but carry no ``X-Amz-Signature`` or ``X-Amz-Credential`` value."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import hubloader
from hubloader.errors import NetworkError
from hubloader.redaction import redact
from hub_helpers import WORKTREE
import servers

SECRETS = servers.HubServer.PRESIGNED_SECRETS


@pytest.fixture
def presigned_hub(hub_env, hub, monkeypatch):
    hub.add_commit("org/presigned", {"config.json": b'{"model_type": "bert"}',
                                     "model.safetensors": b"\0" * 4096})
    monkeypatch.setenv("HUBLOADER_HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HUBLOADER_MAX_RETRIES", "2")
    monkeypatch.setenv("HUBLOADER_RETRY_BACKOFF", "0.01")
    hub.presigned_5xx = True
    yield hub
    hub.presigned_5xx = False


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    for key in ("X-Amz-Signature=", "X-Amz-Credential="):
        assert text.count(key) == text.count(key + "<redacted>")


def test_network_error_and_retry_warning_are_redacted(presigned_hub, caplog):
    hits = len(presigned_hub.hits)
    with caplog.at_level(logging.WARNING, logger="hubloader"):
        with pytest.raises(NetworkError) as info:
            hubloader.download("hf://org/presigned")
    assert any("/presigned/" in h and SECRETS[1] in h for h in presigned_hub.hits[hits:]), \
        "the client must really have followed the presigned redirect"
    message = str(info.value)
    assert "503" in message and "presigned" in message and "<redacted>" in message
    _assert_clean(message)
    _assert_clean(repr(info.value.args))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("retrying" in w for w in warnings)
    for line in warnings:
        _assert_clean(line)


def test_cli_error_line_is_redacted(presigned_hub, hub_env):
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    proc = subprocess.run([sys.executable, "-m", "hubloader.cli", "-vv", "download",
                           "hf://org/presigned", "-q"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "503" in errors[0] and "Traceback" not in proc.stderr
    assert "retrying" in proc.stderr  # the retry warning was printed, redacted
    _assert_clean(proc.stderr + proc.stdout)


@pytest.mark.parametrize("text,kept", [
    ("GET https://b.s3.amazonaws.com/k.bin?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2Fx failed",
     "https://b.s3.amazonaws.com/k.bin?<redacted> failed"),
    ("proxy http://user:hunter2@proxy:3128/ refused", "http://<redacted>@proxy:3128/"),
    ("headers: Authorization: Bearer hf_abcdefghijklmnopqrstuvwx", "Authorization: <redacted>"),
    ("token Bearer hf_abcdefghijklmnopqrstuvwx sent", "Bearer <redacted>"),
    ("{'X-Amz-Security-Token': b'FQoGZXIvYXdzE', 'Authorization': 'AWS4 Signature=deadbeef'}",
     "'X-Amz-Security-Token': '<redacted>'"),
    ("x-amz-security-token:FQoGZXIvYXdzE\nSignature:\ndeadbeefdeadbeefdeadbeef", "Signature:\n<redacted>"),
    ("echoed X-Amz-Security-Token=FQoGZXIvYXdzE and sig=deadbeef", "X-Amz-Security-Token=<redacted>"),
])
def test_redact_patterns(text, kept):
    out = redact(text)
    assert kept in out
    assert not any(s in out for s in ("abc&", "hunter2", "hf_abcdef", "FQoGZXIvYXdzE", "deadbeef"))


def test_plain_messages_are_untouched():
    for text in ("pad_token=[PAD] is not in the vocabulary", "s3://bucket/prefix/model.safetensors",
                 "token embeddings of 30522 rows", "hf://org/repo@v1: no such revision"):
        assert redact(text) == text
