"""hubloader.files: the one sha256_file, temp name and atomic text/JSON write."""

from __future__ import annotations

import hashlib
import json
import os
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubloader.files import atomic_write_json, atomic_write_text, sha256_file, temp_name
from hubloader.models import BertConfig


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=3 << 20 | 17))
def test_sha256_file_matches_hashlib(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("h") / "f.bin"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_temp_names_are_hidden_siblings_and_distinct_across_threads(tmp_path):
    final = tmp_path / "config.json"
    names: list = []
    threads = [threading.Thread(target=lambda: names.append(temp_name(final))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8
    for n in names:
        assert n.parent == tmp_path and n.name.startswith(".config.json.") and n.suffix == ".tmp"
        assert str(os.getpid()) in n.name


@settings(max_examples=25, deadline=None)
@given(text=st.text())
def test_atomic_write_text_round_trips(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("t") / "a.txt"
    p.write_text("old", encoding="utf-8")
    atomic_write_text(p, text)
    assert p.read_bytes() == text.encode("utf-8")
    assert os.listdir(p.parent) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "m.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"a": object()})
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(p, "\ud800")  # a lone surrogate cannot be written as UTF-8
    assert json.loads(p.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_atomic_write_json_creates_the_directory(tmp_path):
    p = tmp_path / "deep" / "er" / "x.json"
    atomic_write_json(p, {"b": [1, 2], "a": None})
    assert p.read_text().endswith("\n") and json.loads(p.read_text()) == {"a": None, "b": [1, 2]}


def test_config_to_json_file_is_atomic_and_reads_back(tmp_path):
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32)
    path = tmp_path / "config.json"
    path.write_text("{}")
    cfg.to_json_file(path)
    assert BertConfig.from_json_file(path) == cfg
    assert os.listdir(tmp_path) == ["config.json"]
