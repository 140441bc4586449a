"""mmpretrain-style configs: the merged dict equals mmengine's, hostile files run nothing,
and the reader only ever raises ConfigError (fuzzed with hypothesis)."""

from __future__ import annotations

import contextlib
import io
import json
import keyword
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _mm_oracle
from hubloader.errors import ConfigError, HubLoaderError
from hubloader.mm.config import Config


@pytest.fixture(scope="module")
def mmengine_config():
    return _mm_oracle.load()[1]


def _mm(mmengine_config, path: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mmengine_config.fromfile(str(path)).to_dict()


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


TREE = {
    "_base_/models/resnet18.py": """
        model = dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(3, ),
                          style='pytorch'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=512,
                      loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5)))
        """,
    "_base_/datasets/imagenet.py": """
        data_preprocessor = dict(num_classes=1000, mean=[123.675, 116.28, 103.53],
                                 std=[58.395, 57.12, 57.375], to_rgb=True)
        bgr_mean = data_preprocessor['mean'][::-1]
        test_pipeline = [dict(type='LoadImageFromFile'),
                         dict(type='ResizeEdge', scale=256, edge='short'),
                         dict(type='CenterCrop', crop_size=224), dict(type='PackInputs')]
        test_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
        """,
    "_base_/schedule.py": """
        base_lr = 0.1
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=base_lr * 256 / 512, momentum=0.9,
                                            weight_decay=1e-4))
        param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[30, 60, 90])
        """,
    "resnet/resnet18.py": """
        _base_ = ['../_base_/models/resnet18.py', '../_base_/datasets/imagenet.py',
                  '../_base_/schedule.py']
        """,
    # a chain: resnet50 -> resnet18 -> three bases
    "resnet/resnet50.py": """
        _base_ = './resnet18.py'
        model = dict(
            backbone=dict(depth=50),
            head=dict(in_channels=2048, num_classes=10,
                      loss=dict(_delete_=True, type='LabelSmoothLoss', label_smooth_val=0.1)))
        data_preprocessor = dict(num_classes={{_base_.model.head.num_classes}})
        pipeline_copy = {{_base_.test_pipeline}}
        test_pipeline = [dict(type='PackInputs')]
        param_scheduler = dict(_delete_=True, type='CosineAnnealingLR', T_max=100)
        pad = [round(x) for x in [103.53, 116.28, 123.675]]
        widths = [64 * 2 ** i for i in range(4)]
        name = f"resnet{model['backbone']['depth']}-{len(widths):>3}"
        half = 224 // 2 if True else 0
        """,
    # mmengine substitutes {{_base_.x}} in the text, unquoted
    "resnet/resnet50.json": json.dumps({
        "_base_": "./resnet18.py",
        "model": {"backbone": {"depth": 50, "frozen_stages": 1}},
        "copied": "REF",
    }).replace('"REF"', "{{_base_.model.neck}}"),
    "resnet/resnet50.yaml": """
        _base_: [./resnet18.py]
        model:
          head:
            num_classes: 3
            loss: {_delete_: true, type: CrossEntropyLoss, use_soft: true}
        """,
}


@pytest.mark.parametrize("name", ["resnet/resnet18.py", "resnet/resnet50.py",
                                  "resnet/resnet50.json", "resnet/resnet50.yaml"])
def test_merged_dict_equals_mmengine(tmp_path, mmengine_config, name):
    _write(tmp_path, TREE)
    ours = Config.fromfile(tmp_path / name)
    assert ours.to_dict() == _mm(mmengine_config, tmp_path / name)
    # attribute access, as mmengine's ConfigDict
    assert ours.model.backbone.type == "ResNet"


def test_merge_semantics_are_the_documented_ones(tmp_path):
    _write(tmp_path, TREE)
    cfg = Config.fromfile(tmp_path / "resnet/resnet50.py")
    assert cfg.model.backbone.depth == 50 and cfg.model.backbone.num_stages == 4  # dicts merge
    assert cfg.model.head.loss == {"type": "LabelSmoothLoss", "label_smooth_val": 0.1}  # _delete_
    assert cfg.test_pipeline == [{"type": "PackInputs"}]  # lists replace
    assert cfg.data_preprocessor.num_classes == 1000  # {{_base_.x}} reads the base
    assert len(cfg.pipeline_copy) == 4
    assert cfg.pad == [104, 116, 124] and cfg.widths == [64, 128, 256, 512]
    assert cfg.name == "resnet50-  4" and cfg.half == 112
    assert cfg.optim_wrapper.optimizer.lr == 0.05


def test_mmpretrain_own_configs_read_the_same(mmengine_config):
    """mmpretrain's configs for the families hubloader builds, read from its own wheel."""
    root = _mm_oracle.configs_dir()
    files = sorted(p for fam in ("resnet", "vision_transformer", "swin_transformer")
                   for p in (root / fam).glob("*.py"))
    files = [f for f in files if "ipu" not in f.name]  # calls str.format: refused, see below
    assert len(files) > 40
    for f in files:
        assert Config.fromfile(f, root=root).to_dict() == _mm(mmengine_config, f), f


def _hostile(tmp_path: Path, body: str) -> Path:
    marker = tmp_path / "ran"
    p = tmp_path / "cfg" / "evil.py"
    p.parent.mkdir(exist_ok=True)
    p.write_text(textwrap.dedent(body).replace("MARKER", str(marker)))
    return p


@pytest.mark.parametrize("body, line", [
    ("import os\nos.system('touch MARKER')\nmodel = dict()\n", 1),
    ("model = dict()\nx = open('MARKER', 'w')\n", 2),
    ("model = dict(a=__import__('os').system('touch MARKER'))\n", 1),
    ("from pathlib import Path\nPath('MARKER').touch()\n", 1),
    ("model = dict()\nmodel = (lambda: open('MARKER', 'w'))()\n", 2),
    ("x = [1]\ny = x.append(open('MARKER', 'w'))\n", 2),
    ("def f():\n    open('MARKER', 'w')\nmodel = dict(a=f())\n", 1),
    ("x = ().__class__.__base__.__subclasses__()\n", 1),
    ("x = '{0.__class__}'.format(1)\n", 1),
    ("x = [open('MARKER', 'w') for _ in [1]]\n", 1),
])
def test_hostile_config_runs_nothing(tmp_path, body, line):
    path = _hostile(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    assert f"{path}:{line}:" in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_base_cycle_outside_tree_and_missing(tmp_path):
    _write(tmp_path, {"c/a.py": "_base_ = './b.py'\nx = 1\n", "c/b.py": "_base_ = './a.py'\n"})
    with pytest.raises(ConfigError, match="cycle"):
        Config.fromfile(tmp_path / "c/a.py")
    (tmp_path / "secret.py").write_text("token = 'x'\n")
    _write(tmp_path, {"t/configs/m.py": "_base_ = '../../secret.py'\n"})
    with pytest.raises(ConfigError, match="outside the config tree") as info:
        Config.fromfile(tmp_path / "t/configs/m.py")
    assert "m.py:1" in str(info.value)
    _write(tmp_path, {"c/m.py": "_base_ = ['./nope.py']\n"})
    with pytest.raises(ConfigError, match="does not exist"):
        Config.fromfile(tmp_path / "c/m.py")
    _write(tmp_path, {"c/d1.py": "x = 1\n", "c/d2.py": "x = 2\n",
                      "c/d.py": "_base_ = ['./d1.py', './d2.py']\n"})
    with pytest.raises(ConfigError, match="more than once"):
        Config.fromfile(tmp_path / "c/d.py")
    _write(tmp_path, {"c/e.py": "_base_ = './d1.py'\nx = dict(a=1)\n"})
    with pytest.raises(ConfigError, match="_delete_"):
        Config.fromfile(tmp_path / "c/e.py")
    for text in ("x = {{_base_.missing}}\n", "x = undefined_name\n", "x = 1 +\n"):
        _write(tmp_path, {"c/f.py": "_base_ = './d1.py'\n" + text})
        with pytest.raises(ConfigError, match=r"f\.py:\d"):
            Config.fromfile(tmp_path / "c/f.py")


def test_bad_files_are_typed(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.yaml").write_text("a: [1,\n")
    (tmp_path / "c.toml").write_text("a = 1\n")
    (tmp_path / "d.json").write_text("[1, 2]")
    for name in ("a.json", "b.yaml", "c.toml", "d.json", "missing.py"):
        with pytest.raises(ConfigError):
            Config.fromfile(tmp_path / name)


def test_bombs_are_refused(tmp_path):
    for text in ("x = 10 ** 10 ** 10\n", "x = [0] * 10 ** 9\n", "x = 'a' * 10 ** 8\n",
                 "x = list(range(10 ** 9))\n", "x = f'{1:>999999999}'\n"):
        (tmp_path / "b.py").write_text(text)
        with pytest.raises(ConfigError):
            Config.fromfile(tmp_path / "b.py")


# -- fuzzing ---------------------------------------------------------------------------------
_CHARS = st.characters(blacklist_categories=("Cs",))
_literals = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 6, 10 ** 6)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(_CHARS, max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), children,
                      max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True).filter(
    lambda k: not keyword.iskeyword(k)), _literals, max_size=5))
def test_fuzz_literal_configs_round_trip(tmp_path, data):
    """Any literal data written as Python reads back equal (dict(...) spelling too)."""
    p = tmp_path / "fuzz.py"
    p.write_text("\n".join(f"{k} = {v!r}" for k, v in data.items()) + "\n")
    assert Config.fromfile(p).to_dict() == data


_fragments = st.sampled_from([
    "x", "1", "'a'", "[", "]", "(", ")", "{", "}", "{{", "}}", "_base_", ".", ",", "=", "+",
    "*", "**", "-", "/", "//", "%", " if ", " else ", " for ", " in ", " and ", " not ",
    "dict(", "list(", "tuple(", "round(", "range(", "open(", "__import__", "lambda", ":",
    "import ", "os", "\n", "f'{", "}'", "[::-1]", "True", "None", "1e308", "9" * 30,
])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(_fragments, max_size=30).map("".join) | st.text(_CHARS, max_size=80))
def test_fuzz_reader_raises_only_config_error(tmp_path, text):
    p = tmp_path / "cfg" / "fuzz.py"
    p.parent.mkdir(exist_ok=True)
    (tmp_path / "cfg" / "base.py").write_text("x = dict(a=[1, 2])\n")
    p.write_text("_base_ = './base.py'\n" + text, encoding="utf-8")
    try:
        cfg = Config.fromfile(p)
    except ConfigError:
        return
    assert isinstance(cfg, dict)
    assert not isinstance(cfg, HubLoaderError)
