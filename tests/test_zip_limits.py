"""The zip-bomb guard bounds the whole zip, not only its big members: total inflated size,
total compression ratio, member count and the destination's free space are checked before
anything is written; a disk that fills up midway is a typed ``DiskFullError``; a member that
is both a file and a folder (``a`` and ``a/b``) is a ``PackageError``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hubloader import cli
from hubloader.errors import DiskFullError, HubLoaderError, PackageError
from hubloader.packages.packaging import extract_zip

WORKTREE = Path(__file__).resolve().parents[1]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_many_small_members_of_zeros_are_a_bomb(tmp_path, capsys):
    """Each member is just under the per-member ratio floor; together they inflate ~1000x."""
    members = {f"shard-{i:03d}.bin": bytes((1 << 20) - 1) for i in range(40)}
    bomb = _zip(tmp_path / "bomb.zip", members)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(PackageError, match="in total.*zip bomb"):
        extract_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert cli.main(["validate", str(bomb)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "zip bomb" in err and "valid\n" not in err


def test_small_zips_are_not_judged_by_ratio(tmp_path):
    ok = _zip(tmp_path / "ok.zip", {"config.json": b"{}" + b" " * 50_000, "a/b.txt": b"x"})
    summary = extract_zip(ok, tmp_path / "out")
    assert summary.members == 2 and (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"x"


@pytest.mark.parametrize("members", [
    ["a", "a/b"], ["a/b", "a"], ["A", "a/b"], ["a/", "x", "a"], ["a/b/c", "a/b"],
])
def test_a_file_that_is_also_a_folder_is_refused(tmp_path, members):
    path = _zip(tmp_path / "clash.zip", {m: b"" if m.endswith("/") else b"data" for m in members})
    with pytest.raises(PackageError, match="file and also a folder"):
        extract_zip(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_member_count_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBLOADER_ZIP_MAX_FILES", "5")
    path = _zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(6)})
    with pytest.raises(PackageError, match="HUBLOADER_ZIP_MAX_FILES"):
        extract_zip(path, tmp_path / "out")


_IN_SMALL_FS = r"""
import os, sys, zipfile
from hubloader.packages.packaging import extract_zip
from hubloader.errors import DiskFullError
dest = sys.argv[1] + "/out"
for name in sys.argv[2:]:
    try:
        extract_zip(name, dest)
    except DiskFullError as err:
        print("DiskFullError", isinstance(err, OSError), err)
    else:
        print("extracted")
    left = [os.path.join(r, f) for r, _, fs in os.walk(sys.argv[1]) for f in fs]
    print("files left", len(left))
"""


def test_free_space_and_a_full_disk(tmp_path):
    """On a real 4 MiB tmpfs with 8 inodes (a private mount namespace): a zip declaring more
    than the free space is refused before writing; a zip of many empty files runs out of inodes
    midway (ENOSPC) and leaves no file behind."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small tmpfs")
    too_big = tmp_path / "big.zip"
    with zipfile.ZipFile(too_big, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("weights.bin", os.urandom(6 << 20))
    inodes = _zip(tmp_path / "inodes.zip", {f"f{i:02d}": b"" for i in range(20)})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o size=4m,nr_inodes=8 tmpfs {mnt} || exit 77; "
              f"exec {sys.executable} -c '{_IN_SMALL_FS}' {mnt} {too_big} {inodes}")
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120, env=env)
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("DiskFullError True") and "bytes free" in lines[0], lines
    assert lines[1] == "files left 0"
    assert lines[2].startswith("DiskFullError True") and "filled up" in lines[2], lines
    assert lines[3] == "files left 0"
    assert "Traceback" not in proc.stderr
