"""``hubloader cache rm`` and ``prune`` stay inside one repository's folder: an empty, blank,
``.``, ``..`` or wildcard name is refused with a typed error (a script running
``hubloader cache rm "$MODEL"`` with the variable unset must not wipe the cache), and a
symlink planted in the cache is never followed out of it."""

from __future__ import annotations

import os
import shutil

import pytest

from hubloader import cli
from hubloader.errors import InvalidModelNameError
from hubloader.hub import cache_admin
from hub_helpers import make_tiny_bert, write_card


def _files(root) -> list:
    """Everything under the models root and the blobs beside it (pending flush marks come
    and go on their own)."""
    return sorted(p for top in (root, root.parent / "blobs") for p in top.rglob("*"))


@pytest.fixture
def cached(hub_env, capsys):
    """tiny-bert downloaded once through its card: (snapshot path, models root)."""
    hub = hub_env / "hub"
    make_tiny_bert(hub / "tiny-bert")
    write_card(hub_env / "cards", "tiny-bert", source=(hub / "tiny-bert").as_uri())
    assert cli.main(["download", "tiny-bert", "-q"]) == 0
    snapshot = cache_admin.Path(capsys.readouterr().out.strip())
    return snapshot, hub_env / "home" / "models"


@pytest.mark.parametrize("name", ["", " ", "\t", ".", "..", "*", "tiny-*", "tiny-bert?", "[t]iny"])
def test_rm_refuses_names_that_are_not_one_repository(cached, capsys, name):
    snapshot, root = cached
    before = _files(root)
    assert cli.main(["cache", "rm", name]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not name one cached model" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert _files(root) == before
    assert (snapshot / "model.safetensors").is_file()
    with pytest.raises(InvalidModelNameError) as info:
        cache_admin.remove_from_cache(name)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidModelNameError):
        cache_admin.verify_cache(name=name)


def test_rm_and_prune_do_not_follow_links_out_of_the_cache(cached, hub_env, capsys):
    snapshot, root = cached
    outside = hub_env / "precious"
    (outside / "snapshots" / "old").mkdir(parents=True)
    (outside / "partial").mkdir()
    (outside / "partial" / "x.incomplete").write_bytes(b"keep me")
    (outside / "snapshots" / "old" / "f").write_bytes(b"keep me too")
    os.symlink(outside, root / "s3--evil--link")
    shutil.rmtree(snapshot.parents[1] / "partial", ignore_errors=True)
    os.symlink(outside / "snapshots", snapshot.parents[1] / "partial")
    assert cli.main(["cache", "rm", "s3--evil--link"]) == 1
    assert "nothing cached" in capsys.readouterr().err
    # a manifests folder that is a link: a stale snapshot's manifest there is not deleted
    repo = snapshot.parents[1]
    shutil.copytree(repo / "manifests", outside / "manifests")
    (outside / "manifests" / "old.json").write_text('{"files": {}}')
    shutil.rmtree(repo / "manifests")
    os.symlink(outside / "manifests", repo / "manifests")
    (repo / "snapshots" / "old").mkdir()
    report = cache_admin.prune_cache(min_age=0)
    assert repo / "snapshots" / "old" in report.removed and not (repo / "snapshots" / "old").exists()
    assert all(outside not in p.parents for p in report.removed)
    assert (outside / "manifests" / "old.json").is_file()
    assert (outside / "partial" / "x.incomplete").read_bytes() == b"keep me"
    assert (outside / "snapshots" / "old" / "f").read_bytes() == b"keep me too"
    # the real repository is still removed by its name, and only it
    assert cli.main(["cache", "rm", "tiny-bert"]) == 0
    assert not snapshot.exists() and outside.is_dir() and (root / "s3--evil--link").is_symlink()
