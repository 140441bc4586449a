"""The fetch overlaps torch's import: ``hubloader.prefetch`` and ``AutoLoader`` start it in a
child process, ``from_pretrain``/``download`` join it (one transfer in all), its errors
surface typed at the join, Ctrl-C during the overlapped import stops it and keeps the bytes for a
resume, and offline mode still opens no socket. Each case runs in a fresh interpreter against
SeaweedFS behind a counting proxy.

Whether the transfer really runs while torch imports is checked without timing: the child's
import of ``torch`` is held by a wrapper of ``__import__`` until the cache holds bytes of the weights, so a
fetch that waited for the import would never start and the hook reports a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import hubloader
from hub_helpers import WORKTREE, files_in, make_tiny_bert, run_py, upload_random_model

URI = "s3://prefetch/tiny-bert"

# Holds `import torch` until bytes of a download are on disk (or 60 s pass), and records
# whether they came first. Prepended to each child's code.
HOLD_TORCH = r'''
import os, sys, time, glob
HOME = os.environ["HUBLOADER_HOME"]
SEEN = {}

def bytes_on_disk():
    for p in glob.glob(os.path.join(HOME, "models", "*", "partial", "*")) + \
             glob.glob(os.path.join(HOME, "blobs", "*")):
        try:
            if os.path.getsize(p) > 0:
                return True
        except OSError:
            pass
    return False

import builtins
_import = builtins.__import__

def hold_torch(name, *args, **kwargs):
    # a wrapper of __import__, not a meta-path finder: finders run under the global import
    # lock, which would stop every other thread's imports too
    if name == "torch" and "torch" not in SEEN:
        SEEN["torch"] = "waiting"
        print("importing torch", flush=True)
        deadline = time.monotonic() + float(os.environ.get("HOLD_S", "60"))
        while not bytes_on_disk() and time.monotonic() < deadline:
            time.sleep(0.02)
        SEEN["torch"] = "after bytes" if bytes_on_disk() else "timed out"
    return _import(name, *args, **kwargs)

builtins.__import__ = hold_torch
'''


@pytest.fixture(scope="module")
def s3_tiny(weed, tmp_path_factory):
    folder = make_tiny_bert(tmp_path_factory.mktemp("prefetch") / "tiny")
    weed.upload_dir("prefetch", "tiny-bert", folder)
    return folder


def _child(code: str, **env) -> dict:
    done = run_py(HOLD_TORCH + code, env={k: str(v) for k, v in env.items()}, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _weight_gets(proxy) -> list[str]:
    return [line for line in proxy.get_lines() if "model.safetensors" in line]


def test_prefetch_overlaps_the_import_and_from_pretrain_joins_it(proxy, s3_tiny):
    proxy.throttle_bps = 40 << 10  # the weights take seconds: the join must wait for them
    out = _child(f'''
import json, hubloader
handle = hubloader.prefetch({URI!r})
assert "torch" not in sys.modules
from hubloader.models import BertModel
model = BertModel.from_pretrain({URI!r})
print(json.dumps({{"torch": SEEN["torch"], "path": str(handle.result()),
                   "n": model.num_parameters()}}))
''')
    assert out["torch"] == "after bytes", "the transfer did not run while torch imported"
    assert len(_weight_gets(proxy)) == 1, proxy.get_lines()
    assert files_in(hubloader.download(URI, offline=True)) == files_in(s3_tiny)
    assert out["n"] > 0


def test_autoloader_fetches_while_torch_imports(proxy, s3_tiny):
    proxy.throttle_bps = 40 << 10
    out = _child(f'''
import json
import os
from hubloader import AutoLoader
assert "torch" not in sys.modules, "importing AutoLoader imported torch"
loader = AutoLoader("base", {URI!r})
print(json.dumps({{"torch": SEEN["torch"], "dir": str(loader.model_dir)}}))
''')
    assert out["torch"] == "after bytes", "AutoLoader imported torch before fetching"
    assert len(_weight_gets(proxy)) == 1, proxy.get_lines()


def test_a_failed_prefetch_raises_typed_at_the_join(proxy, s3_tiny):
    out = _child('''
import json, hubloader
handle = hubloader.prefetch("s3://prefetch/no-such-model")
from hubloader.models import BertModel
caught = {}
for how, call in (("from_pretrain", lambda: BertModel.from_pretrain("s3://prefetch/no-such-model")),
                  ("result", handle.result)):
    try:
        call()
    except hubloader.HubLoaderError as err:
        caught[how] = type(err).__name__
print(json.dumps(caught))
''', HOLD_S=0)
    assert set(out) == {"from_pretrain", "result"}
    assert out["from_pretrain"] == out["result"]
    assert out["result"] in ("RemoteNotFoundError", "ModelNotFoundError")


@pytest.fixture(scope="module")
def s3_big(weed, tmp_path_factory):
    return upload_random_model(weed, "prefetch", "big", tmp_path_factory.mktemp("big"),
                               size=3 << 20, seed=7)


def test_ctrl_c_during_the_overlapped_import_stops_the_fetch_and_it_resumes(proxy, s3_big):
    proxy.throttle_bps = 256 << 10  # the weights would take 12 s
    code = HOLD_TORCH + '''
import hubloader
hubloader.prefetch("s3://prefetch/big")
from hubloader.models import BertModel
time.sleep(600)
'''
    child = subprocess.Popen([sys.executable, "-c", code],
                             env={**os.environ, "PYTHONPATH": str(WORKTREE), "HOLD_S": "600"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "importing torch", child.stderr.read()
        deadline = time.monotonic() + 60
        while _partial_bytes() < (1 << 20):  # the transfer runs while the import waits
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "no bytes arrived"
            time.sleep(0.05)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode in (130, -signal.SIGINT), child.stderr.read()
    assert time.monotonic() - sent < 10
    kept = _partial_bytes()
    assert kept > 0, "the bytes fetched so far were thrown away"
    proxy.reset()
    proxy.throttle_bps = None
    path = hubloader.download("s3://prefetch/big")
    assert files_in(path) == files_in(s3_big)
    assert proxy.range_headers(), "the resume started over"
    assert proxy.down_bytes < (3 << 20)


def _partial_bytes() -> int:
    import glob

    home = os.environ["HUBLOADER_HOME"]
    total = 0
    for p in glob.glob(os.path.join(home, "models", "*", "partial", "*")):
        try:
            if p.endswith(".ranges"):
                total += sum(json.loads(open(p).read())["done"])
            elif not p.endswith(".lock"):
                total += os.path.getsize(p)
        except (OSError, ValueError):  # caught mid-replace
            pass
    return total


def test_offline_prefetch_opens_no_socket(proxy, s3_tiny, tmp_path):
    hubloader.download(URI)
    # the refusal sits in a sitecustomize, so the fetch's own process has it too
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text('''
import socket
class NoSocket(socket.socket):  # a class, so modules that subclass socket still import
    def __init__(self, *a, **k):
        raise OSError("network disabled by the test")
def refuse(*a, **k):
    raise OSError("network disabled by the test")
socket.socket = NoSocket
socket.create_connection = refuse
''')
    out = _child(f'''
import json, socket
assert socket.socket.__name__ == "NoSocket"
import hubloader
handle = hubloader.prefetch({URI!r})
from hubloader import AutoLoader
from hubloader.models import BertModel
model = BertModel.from_pretrain({URI!r})
loader = AutoLoader("base", {URI!r})
print(json.dumps({{"path": str(handle.result()), "dir": str(loader.model_dir)}}))
''', HUBLOADER_OFFLINE=1, HOLD_S=0,
        PYTHONPATH=os.pathsep.join([str(site), str(WORKTREE), os.environ.get("PYTHONPATH", "")]))
    assert out["path"] == out["dir"]
    online = _child(f'''
import json, hubloader
try:
    hubloader.prefetch("s3://prefetch/not-cached").result()
except hubloader.HubLoaderError as err:
    print(json.dumps(type(err).__name__))
''', HOLD_S=0,
        PYTHONPATH=os.pathsep.join([str(site), str(WORKTREE), os.environ.get("PYTHONPATH", "")]))
    assert online == "NetworkError", "the fetch's process opened a socket"


def test_prefetch_twice_is_one_fetch_and_download_joins_it(proxy, s3_tiny):
    proxy.throttle_bps = 200 << 10
    first = hubloader.prefetch(URI)
    assert hubloader.prefetch(URI) is first
    path = hubloader.download(URI)
    assert first.done() and first.result() == path
    assert len(_weight_gets(proxy)) == 1
    proxy.reset()
    assert hubloader.download(URI) == path  # later calls use the cache as before
    assert _weight_gets(proxy) == []


@pytest.fixture(scope="module")
def s3_sharded(weed, tmp_path_factory):
    """A BERT in at least four safetensors shards, saved from a seeded model."""
    import torch

    from hubloader.models import BertConfig, BertModel

    torch.manual_seed(11)
    cfg = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=128)
    folder = BertModel.from_config(cfg).save_pretrained(
        tmp_path_factory.mktemp("sharded") / "m", max_shard_size="80KB")
    assert len(list(folder.glob("model-*.safetensors"))) >= 4
    weed.upload_dir("prefetch", "sharded", folder)
    return folder


def test_shards_are_read_as_they_land_with_the_weights_of_a_serial_load(proxy, s3_sharded):
    proxy.throttle_bps = 160 << 10  # each shard takes about half a second
    uri = "s3://prefetch/sharded"
    out = _child(f'''
import json, hubloader
handle = hubloader.prefetch({uri!r})
import torch
from hubloader.models import BertModel
import hubloader.load.landing as landing

# each read as the shards land records which shards the snapshot holds at that moment
reads, read = [], landing.read_weight_file
def watched(path, fmt):
    reads.append([path.name, sorted(p.name for p in path.parent.glob("model-*.safetensors"))])
    return read(path, fmt)
landing.read_weight_file = watched

model = BertModel.from_pretrain({uri!r}, torch_dtype=torch.bfloat16)
serial = BertModel.from_pretrain(str(model.model_dir), torch_dtype=torch.bfloat16)
saved = BertModel.from_pretrain({str(s3_sharded)!r})
a, b, c = model.state_dict(), serial.state_dict(), saved.state_dict()
print(json.dumps({{
    "reads": reads, "as_landed": model.load_report.read_as_landed,
    "serial_as_landed": serial.load_report.read_as_landed,
    "files": model.load_report.files,
    "same_keys": a.keys() == b.keys() == c.keys(),
    "same_as_serial": all(torch.equal(a[k], b[k]) for k in a),
    "same_as_saved": all(torch.equal(a[k], c[k].to(torch.bfloat16)) for k in a),
    "dtypes": sorted({{str(t.dtype) for t in a.values() if t.is_floating_point()}}),
}}))
''', HOLD_S=0)
    shards = sorted(p.name for p in s3_sharded.glob("model-*.safetensors"))
    assert sorted(out["as_landed"]) == shards == sorted(out["files"])
    assert out["serial_as_landed"] == []
    assert [name for name, _ in out["reads"]] == shards  # in order, each once
    first, present = out["reads"][0]
    assert shards[-1] not in present, "the first shard was read only after the last had landed"
    assert out["same_keys"] and out["same_as_serial"] and out["same_as_saved"]
    assert out["dtypes"] == ["torch.bfloat16"]
    gets = [line for line in proxy.get_lines() if "safetensors" in line and "index" not in line]
    assert len(gets) == len(shards), gets


def test_what_cannot_be_read_as_it_lands_fails_as_a_serial_load_does(proxy, weed, tmp_path):
    folder = make_tiny_bert(tmp_path / "bad-dtype")
    config = json.loads((folder / "config.json").read_text())
    config["dtype"] = "float8"
    (folder / "config.json").write_text(json.dumps(config))
    weed.upload_dir("prefetch", "bad-dtype", folder)
    uri = "s3://prefetch/bad-dtype"
    hubloader.prefetch(uri)
    from hubloader.models import BertModel

    with pytest.raises(hubloader.ConfigError) as joined:
        BertModel.from_pretrain(uri)
    with pytest.raises(hubloader.ConfigError) as serial:  # from the cache, no prefetch
        BertModel.from_pretrain(uri)
    assert str(joined.value) == str(serial.value) and "float8" in str(serial.value)


def test_the_download_command_never_imports_torch(proxy, s3_tiny):
    out = _child(f'''
import json
from hubloader.cli import main
code = main(["download", {URI!r}, "--quiet"])
print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
''', HOLD_S=0)
    assert out == {"code": 0, "torch": False}
    assert files_in(hubloader.download(URI, offline=True)) == files_in(s3_tiny)
