"""AlphaMed's AutoModel interfaces: fedavg against an independent weighted mean, the
built-in image classifier fine-tuned on an image folder and reloaded, and an AlphaMed-style
package (its own AutoModel behind entry_file) through the same entry points."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from automl_helpers import LABELS, image_dataset, tiny_resnet_dir
from hubloader import DatasetError, InputError, UntrustedCodeError
from hubloader.automl import AutoImageClassifier, AutoModel, DatasetMode, fedavg

REPO = Path(__file__).resolve().parents[1]


def test_import_does_not_pull_torch():
    code = ("import sys, hubloader.automl as a; a.DatasetMode; a.AutoModel; a.fedavg; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO)}, check=True).stdout
    assert out.strip() == "False"
    assert [m.name for m in DatasetMode] == ["TRAINING", "VALIDATION", "TESTING", "PREDICTING"]


def _bn_net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.Linear(2, 3).to(torch.float16))


def test_fedavg_matches_an_independent_weighted_mean_and_keeps_dtypes():
    nets = []
    for seed, batches in ((0, 3), (1, 5), (2, 8)):
        torch.manual_seed(seed)
        net = _bn_net()
        net[1].train()
        for _ in range(batches):  # moves running stats and counts num_batches_tracked
            net[1](torch.randn(2, 4, 5, 5))
        nets.append(net)
    states = [n.state_dict() for n in nets]
    weights = [10, 30, 60]
    avg = fedavg(states, weights)
    for key, value in avg.items():
        assert value.dtype == states[0][key].dtype, key
        ref = sum(w * s[key].double() for w, s in zip(weights, states)) / sum(weights)
        if value.is_floating_point():
            tol = 1e-6 if value.dtype == torch.float32 else 1e-3
            assert torch.allclose(value.double(), ref, atol=tol, rtol=0), key
    counter = avg["1.num_batches_tracked"]
    assert counter.dtype == torch.int64 and counter.item() == round(0.1 * 3 + 0.3 * 5 + 0.6 * 8)
    fresh = _bn_net()
    fresh.load_state_dict(avg)  # integer buffers survive as integers
    assert fresh[1].num_batches_tracked.item() == 7  # round(6.6)
    assert fresh[2].weight.dtype == torch.float16


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
       st.integers(0, 2**16))
def test_fedavg_property(weights, seed):
    g = torch.Generator().manual_seed(seed)
    states = [{"w": torch.randn(3, 2, generator=g), "n": torch.randint(0, 100, (2,), generator=g)}
              for _ in weights]
    avg = fedavg(states, weights)
    ref = sum(w * s["w"].double() for w, s in zip(weights, states)) / sum(weights)
    assert torch.allclose(avg["w"].double(), ref, atol=1e-6)
    lo = torch.stack([s["n"] for s in states]).min(0).values
    hi = torch.stack([s["n"] for s in states]).max(0).values
    assert avg["n"].dtype == torch.int64 and bool(((avg["n"] >= lo) & (avg["n"] <= hi)).all())


@pytest.mark.parametrize("states, weights, match", [
    ([], [], "at least one"),
    ([{"a": torch.ones(1)}], [1, 2], "one weight"),
    ([{"a": torch.ones(1)}, {"a": torch.ones(1)}], [0, 0], "not all zero"),
    ([{"a": torch.ones(1)}, {"a": torch.ones(1)}], [1, -1], "non-negative"),
    ([{"a": torch.ones(1)}, {"b": torch.ones(1)}], [1, 1], "different keys"),
    ([{"a": torch.ones(1)}, {"a": torch.ones(2)}], [1, 1], "state 1 has"),
    ([{"a": torch.ones(1)}, {"a": torch.ones(1, dtype=torch.float16)}], [1, 1], "state 1 has"),
])
def test_fedavg_refuses_bad_input(states, weights, match):
    with pytest.raises(InputError, match=match):
        fedavg(states, weights)


def test_resnet_fine_tunes_saves_and_reloads(tmp_path):
    base = tiny_resnet_dir(tmp_path / "resnet")
    data = image_dataset(tmp_path / "data", train={c: 24 for c in LABELS},
                         val={c: 6 for c in LABELS}, test={c: 10 for c in LABELS})
    logs: list[str] = []
    model = AutoModel.from_pretrain(base, lr=3e-2, log_callback=logs.append)
    assert isinstance(model, AutoImageClassifier) and model.labels == ["cat", "dog"]
    out = model.fine_tune(id="node-1", task_id="task-1", dataset_dir=data, epochs=6,
                          result_dir=tmp_path / "tuned")
    assert model.labels == sorted(LABELS)  # the head was replaced for the new label set
    meta = json.loads((out / "fine_tuned.meta").read_text())
    assert meta["labels"] == sorted(LABELS) and meta["test"]["accuracy"] >= 0.9, meta
    assert any("test:" in line for line in logs) and any("head replaced" in line for line in logs)
    assert json.loads((out / "config.json").read_text())["id2label"] == {
        str(i): n for i, n in enumerate(sorted(LABELS))}
    assert (out / "preprocessor_config.json").is_file() and (out / "model.safetensors").is_file()

    images = sorted((data / "test").rglob("*.png"))
    before = [model.forward(str(p)) for p in images]
    assert sum(b == p.parent.name for b, p in zip(before, images)) / len(images) >= 0.9
    reloaded = AutoModel.from_pretrain(out)
    assert [reloaded.forward(str(p)) for p in images] == before
    assert reloaded.forward(reloaded.processor.preprocess_one(images[0])) == before[0]


def test_fine_tune_bad_dataset_is_typed(tmp_path):
    model = AutoModel.from_pretrain(tiny_resnet_dir(tmp_path / "resnet"))
    with pytest.raises(DatasetError, match="no train/ folder"):
        model.fine_tune(id="n", task_id="t", dataset_dir=tmp_path / "nothing")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no images"):
        model.fine_tune(id="n", task_id="t", dataset_dir=tmp_path / "empty")
    with pytest.raises(InputError, match="image path"):
        model.forward(42)


ALPHAMED_PACKAGE = '''
import json, os
import torch
from hubloader.automl import AutoModel

class MyAutoNet(AutoModel):
    """Written to AlphaMed's manual: wraps its network, reads its own param_file."""

    def __init__(self, resource_dir, **kwargs):
        super().__init__(resource_dir, **kwargs)
        cfg = self.read_config()
        self.net = torch.nn.Linear(cfg["width"], len(cfg["id2label"]))
        self.net.load_state_dict(torch.load(os.path.join(resource_dir, cfg["param_file"]),
                                            weights_only=True))
        self.labels = [cfg["id2label"][str(i)] for i in range(len(cfg["id2label"]))]

    def train(self):
        self.net.train()

    def eval(self):
        self.net.eval()

    def forward(self, input):
        return self.labels[int(self.net(input).argmax(-1)[0])]

    def init_dataset(self, dataset_dir):
        return os.path.isdir(dataset_dir), "ok"

    def fine_tune(self, id, task_id, dataset_dir, is_initiator=False, recover=False, **kw):
        self.push_log(f"fine-tuning {task_id} on {dataset_dir}")
        return self.init_dataset(dataset_dir)
'''


def test_an_alphamed_package_runs_once_trusted(tmp_path, monkeypatch):
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "auto.py").write_text(textwrap.dedent(ALPHAMED_PACKAGE))
    (pkg / "config.json").write_text(json.dumps({
        "entry_file": "auto.py", "entry_class": "MyAutoNet", "param_file": "my_model.pt",
        "width": 2, "id2label": {"0": "benign", "1": "malignant"}}))
    torch.save({"weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "bias": torch.zeros(2)},
               pkg / "my_model.pt")
    from hubloader.packages.packaging import pack

    (pkg / "README.md").write_text("---\nname: my-pkg\ntasks: [image-classification]\n"
                                   "license: mit\nauthor: t\nframework: PyTorch\n---\n")
    pack(pkg, tmp_path / "my_pkg.zip")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UntrustedCodeError):
        AutoModel.from_pretrain("my_pkg")
    logs: list[str] = []
    for form in ("my_pkg", "./my_pkg", "my_pkg.zip"):
        model = AutoModel.from_pretrain(form, trust_remote_code=True, log_callback=logs.append)
        assert type(model).__name__ == "MyAutoNet"
        assert model.forward(torch.tensor([[0.2, 0.9]])) == "malignant"
    assert model.fine_tune(id="n", task_id="t7", dataset_dir=str(tmp_path)) == (True, "ok")
    assert logs == [f"fine-tuning t7 on {tmp_path}"]
    from hubloader.packages.validation import validate

    lines = validate("my_pkg.zip", trust_remote_code=True).lines()
    assert "AutoModel ok: MyAutoNet built by the package's code from my_model.pt" in lines
    from hubloader import AutoLoader, BaseModel

    x = torch.tensor([[0.9, 0.1]])
    assert BaseModel.from_pretrain("my_pkg.zip", trust_remote_code=True).forward(x) == "benign"
    loader = AutoLoader("image-classification", model_name="./my_pkg", trust_remote_code=True)
    assert loader.get_model().forward(x) == "benign"


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_vit_and_swin_get_the_built_in_auto_model(tmp_path, family):
    from automl_helpers import tiny_vision_dir

    base = tiny_vision_dir(tmp_path / family, family)
    data = image_dataset(tmp_path / "data", train={c: 4 for c in LABELS},
                         test={c: 2 for c in LABELS})
    model = AutoModel.from_pretrain(base)
    assert isinstance(model, AutoImageClassifier) and model.labels == ["cat", "dog"]
    out = model.fine_tune(id="n", task_id="t", dataset_dir=data, epochs=1,
                          result_dir=tmp_path / "tuned")
    images = sorted((data / "test").rglob("*.png"))
    reloaded = AutoModel.from_pretrain(out)
    assert reloaded.labels == sorted(LABELS)
    assert [reloaded.forward(str(p)) for p in images] == [model.forward(str(p)) for p in images]
    logits = model.logits(torch.stack([model.processor.preprocess_one(p) for p in images]))
    assert torch.allclose(reloaded.logits(torch.stack(
        [reloaded.processor.preprocess_one(p) for p in images])), logits, atol=1e-5)


def test_a_registered_factory_serves_another_family(tmp_path):
    """The hook mmpretrain's ImageClassifier uses: a factory per model_type."""
    from hubloader import ConfigError
    from hubloader.automl import register_auto_model
    from hubloader.automl.loading import _FACTORIES

    class Fake(AutoModel):
        def train(self): ...
        def eval(self): ...
        def forward(self, x): return "fake"
        def init_dataset(self, d): return True, ""
        def fine_tune(self, id, task_id, dataset_dir, is_initiator=False, recover=False, **kw):
            return None

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "fake_mm_classifier"}))
    with pytest.raises(ConfigError, match="no built-in AutoModel for model_type"):
        AutoModel.from_pretrain(tmp_path)
    register_auto_model("fake_mm_classifier", lambda root, **kw: Fake(root, **kw))
    try:
        with pytest.raises(ConfigError, match="registered already"):
            register_auto_model("fake_mm_classifier", lambda root, **kw: Fake(root, **kw))
        model = AutoModel.from_pretrain(tmp_path)
        assert isinstance(model, Fake) and model.forward(None) == "fake"
        assert model.resource_dir == tmp_path.resolve()
    finally:
        _FACTORIES.pop("fake_mm_classifier")
