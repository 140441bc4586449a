"""A malformed card in ``HUBLOADER_CARDS_PATH`` is skipped with a warning naming its file:
the built-in cards, the good extra cards and ``hubloader ls`` keep working, and
``hubloader validate CARD`` still reports the broken one."""

from __future__ import annotations

import logging

import pytest

from hubloader import cli, list_models, model_info
from hubloader.catalogue.cards import find_card
from hub_helpers import write_card

BROKEN = {
    "yaml.md": "---\nname: [unclosed\ntasks: x\n---\nbody\n",
    "fields.md": "---\nname: half\n---\n",
    "task.md": "---\nname: t\ntasks: [dance]\nlicense: MIT\nauthor: me\narchitecture: bert\n---\n",
    "bytes.md": b"---\nname: \xff\xfe\n---\n",
    "front.md": "no front matter at all\n",
}


@pytest.fixture
def cards_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cards"
    folder.mkdir()
    for name, text in BROKEN.items():
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    (folder / "dir.md").mkdir()  # a folder named like a card, holding no README.md
    write_card(folder, "extra-good")
    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(folder))
    return folder


def test_broken_cards_are_skipped_with_a_warning_naming_each(cards_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="hubloader.catalogue.cards"):
        names = list_models()
    assert "extra-good" in names and "BERT-base-en" in names
    assert model_info("bert-base-en").architecture == "bert"
    assert find_card("extra-good") is not None
    warned = [r.getMessage() for r in caplog.records if r.name == "hubloader.catalogue.cards"]
    for name in [*BROKEN, "dir.md"]:
        assert any(str(cards_dir / name) in m for m in warned), name


def test_cli_ls_works_and_validate_reports_the_broken_card(cards_dir, capsys):
    assert cli.main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "extra-good" in out and "BERT-base-en" in out
    assert cli.main(["validate", str(cards_dir / "yaml.md")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not valid YAML" in err and "Traceback" not in err
