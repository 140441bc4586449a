"""Packages checked at the door: pack, validate a good zip, and refuse zip-slip, absolute
paths, symlinks, zip bombs (ratio and total size), duplicate names; nothing lands outside."""

from __future__ import annotations

import os
import stat
import warnings
import zipfile

import pytest

from hubloader import PackageError
from hubloader.commands.models import validate_path
from hubloader.packages.packaging import extract_zip, pack
from publish_helpers import run_cli, tiny_bert


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_bert().save_pretrained(tmp_path_factory.mktemp("pkg") / "tiny-bert",
                                       max_shard_size="40KB")


def test_pack_and_validate_zip(model_dir, tmp_path, monkeypatch, capsys):
    rc, out, err = run_cli(["pack", model_dir, "-o", tmp_path / "m.zip"], monkeypatch, capsys)
    assert rc == 0, err
    names = sorted(zipfile.ZipFile(tmp_path / "m.zip").namelist())
    assert names == sorted(p.name for p in model_dir.iterdir())
    lines = validate_path(tmp_path / "m.zip")
    assert lines[0].startswith(f"zip ok: {len(names)} files")
    assert any(line.startswith("weights ok") and "(strict)" in line for line in lines)
    rc, out, err = run_cli(["validate", tmp_path / "m.zip"], monkeypatch, capsys)
    assert rc == 0 and out.strip().endswith("valid"), err
    with pytest.raises(PackageError, match="exists"):
        pack(model_dir, tmp_path / "m.zip")


def test_zip_with_one_top_folder(model_dir, tmp_path):
    z = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in model_dir.iterdir():
            zf.write(p, f"tiny-bert/{p.name}")
    assert any(line.startswith("weights ok") for line in validate_path(z))


def _zip(path, members):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data, *mode in members:
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                if mode:
                    info.external_attr = mode[0] << 16
                zf.writestr(info, data)
    return path


@pytest.mark.parametrize("members, message", [
    ([("config.json", b"{}"), ("../evil.txt", b"x")], "zip-slip"),
    ([("config.json", b"{}"), ("a/../../evil.txt", b"x")], "zip-slip"),
    ([("/tmp/evil.txt", b"x")], "absolute path"),
    ([("C:/evil.txt", b"x")], "absolute path"),
    ([("link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "symlink"),
    ([("config.json", b"{}"), ("config.json", b"{\"a\": 1}")], "duplicate"),
    ([("README.md", b"a"), ("readme.MD", b"b")], "duplicate"),
    ([("zeros.bin", bytes(20 * 2**20))], "zip bomb"),
])
def test_refused_zips(tmp_path, members, message):
    z = _zip(tmp_path / "bad.zip", members)
    dest = tmp_path / "out"
    with pytest.raises(PackageError, match=message):
        extract_zip(z, dest)
    assert not dest.exists() or not any(dest.rglob("*"))  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(PackageError, match=message):
        validate_path(z)


def test_total_size_limit(tmp_path, monkeypatch):
    z = _zip(tmp_path / "big.zip", [(f"f{i}.bin", os.urandom(600_000)) for i in range(4)])
    extract_zip(z, tmp_path / "ok")  # within the default limits
    monkeypatch.setenv("HUBLOADER_ZIP_MAX_SIZE_MB", "2")
    with pytest.raises(PackageError, match="more than 2,097,152 bytes"):
        extract_zip(z, tmp_path / "refused")


def test_too_many_members_and_not_a_zip(tmp_path, monkeypatch):
    z = _zip(tmp_path / "many.zip", [(f"f{i}", b"x") for i in range(20)])
    monkeypatch.setenv("HUBLOADER_ZIP_MAX_FILES", "10")
    with pytest.raises(PackageError, match="20 members"):
        extract_zip(z, tmp_path / "o")
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(PackageError, match="not a readable zip"):
        validate_path(tmp_path / "fake.zip")


def test_pack_refuses_symlink(model_dir, tmp_path):
    d = tmp_path / "withlink"
    d.mkdir()
    (d / "config.json").write_text("{}")
    os.symlink("/etc/hostname", d / "leak.txt")
    with pytest.raises(PackageError, match="symlink"):
        pack(d, tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".x.zip*"))


def test_card_required_for_packages_not_plain_dirs(tmp_path, monkeypatch, capsys):
    d = tmp_path / "nocard"
    tiny_bert().save_pretrained(d)
    (d / "README.md").unlink()
    lines = validate_path(d)  # e.g. a Hugging Face download: loadable, with a warning
    assert any(line.startswith("weights ok") for line in lines)
    assert any(line.startswith("warning: no README.md") for line in lines)
    bare = tmp_path / "bare.zip"  # zipped by another tool: no card
    with zipfile.ZipFile(bare, "w") as zf:
        for p in d.iterdir():
            zf.write(p, p.name)
    with pytest.raises(PackageError, match="no README.md"):
        validate_path(bare)
    # pack writes a card into the zip from the model's description and the files
    rc, out, err = run_cli(["pack", d, "-o", tmp_path / "carded.zip"], monkeypatch, capsys)
    assert rc == 0, err
    assert not (d / "README.md").exists()
    from hubloader.catalogue.cards import parse_card

    card = parse_card(zipfile.ZipFile(tmp_path / "carded.zip").read("README.md").decode())
    assert card.architecture == "bert" and card.tasks == ("base",)
    assert "BertModel" in card.description
    assert {f.path for f in card.files} == {p.name for p in d.iterdir()}
    assert any(line.startswith("interface ok: BertModel") for line in
               validate_path(tmp_path / "carded.zip"))
    (d / "config.json").unlink()
    with pytest.raises(PackageError, match="neither config.json nor hubconf.py"):
        validate_path(d)
