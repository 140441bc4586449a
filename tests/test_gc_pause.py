"""Loading a model pauses the cyclic garbage collector (hubloader/_gc.py) and restores it."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading

import pytest

from hubloader._gc import gc_paused
from hubloader.models import BertModel
from hub_helpers import make_tiny_bert


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("gc") / "tiny")


BUILDING = {"_load_from_dir", "from_config"}  # hubloader.load.modeling: where the model is built


@pytest.fixture
def collections():
    """The generation of every collection started while a model was being built."""
    seen = []

    def count(phase, info):
        if phase != "start":
            return
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name in BUILDING and frame.f_code.co_filename.endswith("modeling.py"):
                seen.append(info["generation"])
                return
            frame = frame.f_back

    gc.callbacks.append(count)
    yield seen
    gc.callbacks.remove(count)


def test_no_collection_while_a_model_loads_and_the_collector_resumes(tiny, collections):
    gc.collect()
    collections.clear()
    model = BertModel.from_pretrain(str(tiny))
    assert collections == []  # building allocates thousands of objects: gen 0 would run
    assert gc.isenabled()
    assert model.load_report.missing == []
    BertModel.init_from_json(tiny / "config.json")
    assert collections == [] and gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled(tiny):
    gc.disable()
    try:
        BertModel.from_pretrain(str(tiny))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_nested_and_concurrent_pauses_resume_once_all_end():
    assert gc.isenabled()
    inside, leave = threading.Event(), threading.Event()

    def other():
        with gc_paused():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with gc_paused():
        t.start()
        inside.wait(10)
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread is still loading
    leave.set()
    t.join(10)
    assert gc.isenabled()


def test_an_error_during_the_load_still_resumes_the_collector(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 32, '
                                          '"num_attention_heads": 4}')
    with pytest.raises(Exception):
        BertModel.from_pretrain(str(tmp_path))  # no weights file
    assert gc.isenabled()


def test_no_collection_while_the_s3_client_is_built():
    """Building botocore's S3 client loads its service model (tens of thousands of dicts that
    all live on): with the collector running, gen 0 and gen 1 collections walk them."""
    from hubloader.hub.sources.s3 import make_client

    seen = []

    def count(phase, info):  # collections started inside _make_client
        frame = sys._getframe(1)
        while phase == "start" and frame is not None:
            if frame.f_code.co_name == "_make_client":
                seen.append(info["generation"])
                return
            frame = frame.f_back

    gc.collect()
    gc.callbacks.append(count)
    try:
        client = make_client(endpoint_url="http://127.0.0.1:9")
    finally:
        gc.callbacks.remove(count)
    assert seen == [] and gc.isenabled()
    assert client.meta.service_model.service_name == "s3"
    assert client.meta.config.s3 == {"addressing_style": "path"}


_WATCH = """
import gc, json, sys
during = []  # collections started while a module of torch's was being imported

def watch(phase, info):
    frame = sys._getframe()
    while phase == "start" and frame is not None:
        if frame.f_code.co_name == "<module>" and "/torch/" in frame.f_code.co_filename:
            during.append(info["generation"])
            return
        frame = frame.f_back

gc.callbacks.append(watch)
"""
_REPORT = """
print(json.dumps({"during": len(during), "frozen": gc.get_freeze_count(),
                  "enabled": gc.isenabled(), "torch": "torch" in sys.modules}))
"""


def _fresh(code: str) -> dict:
    """What a new interpreter reports after ``code`` (torch not yet imported there)."""
    proc = subprocess.run([sys.executable, "-c", _WATCH + code + _REPORT], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("code", [
    "import hubloader.models",
    "import hubloader\nhubloader.BaseModel",
    "from hubloader import AutoLoader\nAutoLoader('base', model_name={tiny!r}).get_model()",
], ids=["models-package", "lazy-attribute", "autoloader"])
def test_torch_imported_by_hubloader_runs_paused_and_is_frozen(code, tiny):
    """torch's import makes only long-lived objects: run paused, then kept out of later walks."""
    got = _fresh(code.format(tiny=str(tiny)))
    assert got["torch"] and got["enabled"]
    assert got["during"] == 0
    assert got["frozen"] > 10_000  # torch's modules, classes and tables


def test_a_process_that_imported_torch_itself_keeps_its_collector():
    """The control: the same watch sees collections in torch's own import, and hubloader
    freezes nothing when torch was there before it."""
    got = _fresh("import torch\nimport hubloader.models")
    assert got["during"] > 0
    assert got["frozen"] == 0 and got["enabled"]
