"""Code packages against hostile contents: a module shipped as bytecode cannot slip past the
``trust_remote_code=<sha256>`` pin, a hostile dependency name is quoted in the suggested
command, and a zip member whose name no filesystem takes is refused with a typed error."""

from __future__ import annotations

import py_compile
import shlex
import sys
import zipfile

import pytest

from hubloader.errors import PackageError, UntrustedCodeError
from hubloader.packages.packaging import extract_zip
from hubloader.load.remote_code import (check_dependencies, code_digest, find_code_entry,
                                   import_entry)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "home"))


def _package(root, marker, *, helper_as: str):
    """hubconf.py importing ``helpers.tool``, which exists only as ``helper_as``."""
    (root / "helpers").mkdir(parents=True)
    (root / "hubconf.py").write_text("dependencies = []\nfrom helpers import tool\n")
    (root / "helpers" / "__init__.py").write_text("")
    source = root.parent / "tool_src.py"
    source.write_text(f"open({str(marker)!r}, 'a').write('bytecode ran\\n')\n")
    if helper_as == "pyc":
        py_compile.compile(str(source), cfile=str(root / "helpers" / "tool.pyc"), doraise=True)
    else:  # an extension module's name: what it holds does not matter, it must not be loaded
        (root / "helpers" / f"tool{helper_as}").write_bytes(b"\x7fELF not really")
    return root


@pytest.mark.parametrize("helper_as", ["pyc", ".abi3.so"])
def test_compiled_module_outside_the_pin_is_refused(tmp_path, helper_as):
    marker = tmp_path / "marker.txt"
    pkg = _package(tmp_path / "pkg", marker, helper_as=helper_as)
    entry = find_code_entry(pkg)
    assert entry is not None
    sources = {"hubconf.py": (pkg / "hubconf.py").read_bytes(), "helpers/__init__.py": b""}
    for trust in (True, code_digest(sources)):
        with pytest.raises(PackageError, match="compiled code") as info:
            import_entry(entry, trust_remote_code=trust)
        assert isinstance(info.value, ValueError)
    assert not marker.exists()
    assert not any(name.startswith("helpers") for name in sys.modules)


def test_module_missing_from_the_source_is_never_looked_up_on_disk(tmp_path):
    """A package whose code asks for a module of its own that it does not ship gets an
    ImportError: no other finder looks in its folders."""
    pkg = tmp_path / "pkg"
    (pkg / "helpers").mkdir(parents=True)
    (pkg / "hubconf.py").write_text("dependencies = []\nimport helpers.absent\n")
    (pkg / "helpers" / "__init__.py").write_text("")
    with pytest.raises(PackageError, match="not a module of the package's pinned code"):
        import_entry(find_code_entry(pkg), trust_remote_code=True)


def test_hostile_dependency_names_are_quoted_in_the_fix(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    hostile = "os; rm -rf ~"
    (pkg / "hubconf.py").write_text(f"dependencies = [{hostile!r}, 'no_such_pkg_$(id)']\n")
    with pytest.raises(PackageError) as info:
        check_dependencies(find_code_entry(pkg))
    message = str(info.value)
    command = message[message.index("(pip install ") + 1: message.rindex(")")]
    assert shlex.split(command) == ["pip", "install", hostile, "no_such_pkg_$(id)"]
    with pytest.raises(UntrustedCodeError):  # and it still never runs untrusted
        import_entry(find_code_entry(pkg))


def test_member_name_longer_than_the_filesystem_takes_is_typed(tmp_path):
    archive = tmp_path / "long.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("a" * 300 + ".py", "x = 1\n")
    dest = tmp_path / "out"
    with pytest.raises(PackageError, match="longer than") as info:
        extract_zip(archive, dest)
    assert isinstance(info.value, ValueError)
    assert not dest.exists() or list(dest.rglob("*")) == []
