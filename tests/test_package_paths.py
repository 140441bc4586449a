"""Every package form — a relative folder, ``./folder``, ``~/folder``, a symlink, a ``.zip`` —
through every entry point that takes a package, in a fresh process whose working directory
holds the package (the import machinery keeps whatever root it first saw, so only a fresh
process shows a relative root breaking)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hubloader import ModelNotFoundError
from hubloader.packages.packaging import local_package, pack
from publish_helpers import write_entry_package, write_hubconf_package

REPO = Path(__file__).resolve().parents[1]

# One fresh interpreter per form; it loads both packages through each entry point and prints
# what each model computes on ones(1, 4) / ones(1, 3).
_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    import model_downstream_interface
    from hubloader import AutoLoader, BaseModel
    from hubloader.packages.validation import validate

    hub, entry = sys.argv[1], sys.argv[2]
    x4, x3 = torch.ones(1, 4), torch.ones(1, 3)
    out = {
        "load_model": model_downstream_interface.load_model(hub)(x4).tolist(),
        "hub_from_pretrain": BaseModel.from_pretrain(hub, trust_remote_code=True)(x4).tolist(),
        "entry_from_pretrain": BaseModel.from_pretrain(entry, trust_remote_code=True)(x3).tolist(),
        "entry_autoloader": AutoLoader("base", model_name=entry,
                                       trust_remote_code=True).get_model()(x3).tolist(),
        "hub_validate": "\\n".join(validate(hub, trust_remote_code=True).lines()),
        "entry_validate": "\\n".join(validate(entry, trust_remote_code=True).lines()),
    }
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """A hubconf.py package and an AlphaMed entry_file package, folders and zips, under
    ``<work>/``; a symlink to each under ``<work>/links/``."""
    work = tmp_path_factory.mktemp("work")
    marker = work / "marker.txt"
    write_hubconf_package(work / "hubpkg", folder="paths_hub_pkg", marker=marker, scale=2.0)
    write_entry_package(work / "entrypkg", marker=marker)
    pack(work / "hubpkg", work / "hubpkg.zip")
    pack(work / "entrypkg", work / "entrypkg.zip")
    (work / "links").mkdir()
    (work / "links" / "hub").symlink_to(work / "hubpkg", target_is_directory=True)
    (work / "links" / "entry").symlink_to(work / "entrypkg", target_is_directory=True)
    return work


FORMS = {
    "bare relative": ("hubpkg", "entrypkg"),
    "dot relative": ("./hubpkg", "./entrypkg"),
    "home": ("~/hubpkg", "~/entrypkg"),
    "symlink": ("links/hub", "links/entry"),
    "zip": ("hubpkg.zip", "entrypkg.zip"),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_entry_point_takes_every_form(packages, form, tmp_path):
    hub, entry = FORMS[form]
    env = {**os.environ, "HOME": str(packages), "HUBLOADER_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, hub, entry], cwd=packages, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["load_model"] == [[2.0] * 4]           # eye(4) * scale 2
    assert out["hub_from_pretrain"] == [[2.0] * 4]
    assert out["entry_from_pretrain"] == [[3.0, 3.0]]  # ones(2, 3) @ ones(3)
    assert out["entry_autoloader"] == [[3.0, 3.0]]
    assert "built by the package's code" in out["hub_validate"], out
    assert "built by the package's code" in out["entry_validate"], out
    if form == "zip":  # extracted once, keyed by the zip's sha256
        extracted = sorted((tmp_path / "home" / "packages").iterdir())
        assert len(extracted) == 2 and all(len(p.name) == 64 for p in extracted)


def test_load_model_from_the_parent_directory(packages, tmp_path):
    """The downstream platform's usage: ``load_model("pkg")`` next to the package."""
    env = {**os.environ, "HUBLOADER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    code = ("import model_downstream_interface, torch; "
            "m = model_downstream_interface.load_model('hubpkg'); print(m(torch.ones(1, 4)).sum().item())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=packages, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.split()[-1]) == 8.0


def test_local_package_resolves_and_reuses_the_extraction(packages, monkeypatch):
    monkeypatch.chdir(packages)
    assert local_package("links/hub") == (packages / "hubpkg").resolve()
    first = local_package("hubpkg.zip")
    assert first.is_absolute() and (first / "hubconf.py").is_file()
    mtime = first.stat().st_mtime_ns
    assert local_package("./hubpkg.zip") == first and first.stat().st_mtime_ns == mtime
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        local_package("nope")
    with pytest.raises(ModelNotFoundError, match="neither a directory nor a .zip"):
        local_package("marker.txt" if (packages / "marker.txt").exists() else "hubpkg/hubconf.py")


def test_a_bad_zip_leaves_no_extraction(tmp_path, monkeypatch):
    import zipfile

    from hubloader import PackageError

    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.py", "x = 1\n")
    with pytest.raises(PackageError, match="zip-slip"):
        local_package(bad)
    home = Path(os.environ["HUBLOADER_HOME"])
    assert not any((home / "packages").iterdir())
    assert not (tmp_path / "escape.py").exists()
