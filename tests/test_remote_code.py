"""Custom model code (hubconf.py; config.json entry_file / entry_module) runs only with
trust_remote_code. Each package's code writes a marker file when imported, so "never ran"
is checked on disk."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from hubloader import (AutoLoader, BaseModel, ConfigError, PackageError, UntrustedCodeError)
from hubloader.commands.models import validate_path
from hubloader.packages.packaging import pack
from hubloader.load.remote_code import code_digest, _code_files
from publish_helpers import run_cli, write_entry_package, write_hubconf_package


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "home"))


def test_hubconf_refused_without_trust(tmp_path):
    marker = tmp_path / "marker.txt"
    pkg = write_hubconf_package(tmp_path / "swin", folder="swin_tiny", marker=marker, scale=2.0)
    with pytest.raises(UntrustedCodeError, match=r"hubconf\.py") as err:
        BaseModel.from_pretrain(str(pkg))
    assert "trust_remote_code=True" in str(err.value)
    with pytest.raises(UntrustedCodeError):
        BaseModel.from_pretrain(str(pkg), trust_remote_code=False)
    assert not marker.exists()
    assert "swin_tiny" not in sys.modules
    assert not (tmp_path / "home" / "code").exists()  # nothing pinned either


def test_hubconf_trusted_loads_and_pins(tmp_path):
    marker = tmp_path / "marker.txt"
    pkg = write_hubconf_package(tmp_path / "swin", folder="swin_tiny", marker=marker, scale=2.0)
    model = BaseModel.from_pretrain(str(pkg), trust_remote_code=True)
    assert marker.read_text() == "imported swin_tiny scale=2.0\n"
    x = torch.randn(3, 4)
    assert torch.allclose(model(x), x * 2.0)  # weights (identity) loaded by the package
    digest = code_digest(_code_files(pkg))
    pinned = tmp_path / "home" / "code" / digest
    manifest = json.loads((pinned / "manifest.json").read_text())
    assert set(manifest["files"]) == {"hubconf.py", "swin_tiny/__init__.py",
                                      "swin_tiny/exported_model.py"}
    assert (pinned / "files" / "hubconf.py").read_bytes() == (pkg / "hubconf.py").read_bytes()
    assert "swin_tiny" not in sys.modules  # only under the digest's unique name
    assert f"hubloader_remote_{digest[:16]}.swin_tiny.exported_model" in sys.modules


def test_same_folder_name_does_not_collide(tmp_path):
    marker = tmp_path / "marker.txt"
    a = write_hubconf_package(tmp_path / "a", folder="swin_tiny", marker=marker, scale=2.0)
    b = write_hubconf_package(tmp_path / "b", folder="swin_tiny", marker=marker, scale=5.0)
    ma = BaseModel.from_pretrain(str(a), trust_remote_code=True)
    mb = BaseModel.from_pretrain(str(b), trust_remote_code=True)
    x = torch.ones(1, 4)
    assert torch.allclose(ma(x), x * 2.0) and torch.allclose(mb(x), x * 5.0)
    assert type(ma) is not type(mb)
    assert marker.read_text().splitlines() == ["imported swin_tiny scale=2.0",
                                               "imported swin_tiny scale=5.0"]


def test_pin_by_sha256(tmp_path):
    marker = tmp_path / "marker.txt"
    pkg = write_hubconf_package(tmp_path / "p", folder="pinned_pkg", marker=marker, scale=3.0)
    digest = code_digest(_code_files(pkg))
    with pytest.raises(UntrustedCodeError, match="not the pinned"):
        BaseModel.from_pretrain(str(pkg), trust_remote_code="0" * 64)
    assert not marker.exists()
    model = BaseModel.from_pretrain(str(pkg), trust_remote_code=digest)
    assert torch.allclose(model(torch.ones(1, 4)), torch.full((1, 4), 3.0))
    # the code changes: the old pin no longer lets it run
    (pkg / "pinned_pkg" / "exported_model.py").write_text(
        (pkg / "pinned_pkg" / "exported_model.py").read_text() + "\nraise SystemExit('tampered')\n")
    marker.unlink()
    with pytest.raises(UntrustedCodeError, match=digest):
        BaseModel.from_pretrain(str(pkg), trust_remote_code=digest)
    assert not marker.exists()


def test_missing_dependency_checked_before_import(tmp_path):
    marker = tmp_path / "marker.txt"
    pkg = write_hubconf_package(tmp_path / "d", folder="dep_pkg", marker=marker, scale=1.0,
                                deps=("torch", "surely_not_installed_pkg_xyz"))
    with pytest.raises(PackageError, match="surely_not_installed_pkg_xyz"):
        BaseModel.from_pretrain(str(pkg), trust_remote_code=True)
    assert not marker.exists()
    with pytest.raises(PackageError, match="surely_not_installed_pkg_xyz"):
        validate_path(pkg)  # validate checks it too, without running anything
    assert not marker.exists()


@pytest.mark.parametrize("mode, runs", [("entry_file", "my_model.py"),
                                        ("entry_module", "my/model.py")])
def test_entry_packages(tmp_path, mode, runs):
    marker = tmp_path / "marker.txt"
    pkg = write_entry_package(tmp_path / f"pkg_{mode}", marker=marker, mode=mode)
    with pytest.raises(UntrustedCodeError, match=runs.replace(".", r"\.")):
        BaseModel.from_pretrain(str(pkg))
    assert not marker.exists()
    model = BaseModel.from_pretrain(str(pkg), trust_remote_code=True)
    assert marker.read_text() == "imported entry\n"
    out = model(torch.ones(1, 3))
    assert torch.equal(out, torch.full((1, 2), 3.0))  # proj.weight = ones, bias = zeros


def test_entry_config_errors(tmp_path):
    marker = tmp_path / "marker.txt"
    pkg = write_entry_package(tmp_path / "both", marker=marker)
    cfg = json.loads((pkg / "config.json").read_text())
    cfg["entry_module"] = "my_model"
    (pkg / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="exactly one of 'entry_file' and 'entry_module'"):
        BaseModel.from_pretrain(str(pkg), trust_remote_code=True)
    del cfg["entry_module"], cfg["param_file"]
    (pkg / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="'param_file' is required"):
        BaseModel.from_pretrain(str(pkg), trust_remote_code=True)
    assert not marker.exists()


def test_validate_code_package_and_zip(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker.txt"
    pkg = write_hubconf_package(tmp_path / "v", folder="val_pkg", marker=marker, scale=1.0)
    lines = validate_path(pkg)
    assert any("dependencies ok: torch" in line for line in lines)
    assert any("was not run" in line for line in lines)
    assert not marker.exists()
    z = pack(pkg, tmp_path / "v.zip")
    rc, out, err = run_cli(["validate", z], monkeypatch, capsys)
    assert rc == 0, err
    assert not marker.exists()
    rc, out, err = run_cli(["validate", z, "--trust-remote-code"], monkeypatch, capsys)
    assert rc == 0, err
    assert "weights ok: TinyNet built by the package's code, 16 parameters" in out
    assert marker.exists()


def test_autoloader_passes_trust(tmp_path):
    marker = tmp_path / "marker.txt"
    pkg = write_entry_package(tmp_path / "auto_pkg", marker=marker)
    with pytest.raises(UntrustedCodeError):
        AutoLoader("base", model_name=str(pkg))
    assert not marker.exists()
    model = AutoLoader("base", model_name=str(pkg), trust_remote_code=True).get_model()
    assert type(model).__name__ == "MyAutoNet"
