"""AlphaMed's model cards validate as AlphaMed writes them: no architecture (config.json's
model_type names the family), is-federated kept, Chinese display names."""

from __future__ import annotations

import json

import pytest

from hubloader import CardError, ConfigError
from hubloader.catalogue.cards import parse_card
from hubloader.packages.validation import validate
from publish_helpers import tiny_bert

# AlphaMed's example card, as its developer manual prints it
EXAMPLE = """---
name: skin_lesion_diagnosis_avg_fed
display-name: Skin Lesion Diagnosis - FedAvg
tasks:
- image-classification
license: Apache License 2.0
framework: PyTorch
tags:
- vision
- medical
- image-classification
author: Alphamed
is-federated: true
datasets:
- Skin cancer HAM10000
---

# Skin lesion diagnosis
"""

# every field AlphaMed lists, with its comments
ALL_FIELDS = """---
# 模型名称，模型名称和版本共同组成了模型的唯一标识符，必须填写
name: MODEL-NAME

# 便于对外展示的模型名称，用于概要信息、列表选择等场景，可选，默认与 name 值相同
display-name: 根据胸部 CT 成像诊断新冠病毒感染 - 同构数据联邦学习模型

tasks:
- image-classification  # 图片分类

license: Apache License 2.0
framework: PyTorch
tags:
- vision
- image-classification
author: AlphaMed Team
is-federated: true
---
"""


def test_alphamed_example_cards_parse():
    card = parse_card(EXAMPLE)
    assert (card.name, card.display_name, card.tasks) == (
        "skin_lesion_diagnosis_avg_fed", "Skin Lesion Diagnosis - FedAvg",
        ("image-classification",))
    assert card.is_federated is True and card.architecture == ""
    assert card.datasets == ("Skin cancer HAM10000",) and card.license == "Apache License 2.0"
    full = parse_card(ALL_FIELDS)
    assert full.display_name.startswith("根据胸部") and full.is_federated is True
    assert parse_card(EXAMPLE.replace("is-federated: true\n", "")).is_federated is False
    with pytest.raises(CardError, match="is-federated"):
        parse_card(EXAMPLE.replace("is-federated: true", "is-federated: maybe"))
    with pytest.raises(CardError, match="author"):
        parse_card(EXAMPLE.replace("author: Alphamed\n", ""))


def test_card_without_architecture_validates_by_model_type(tmp_path):
    d = tiny_bert().save_pretrained(tmp_path / "m")
    (d / "README.md").write_text(EXAMPLE.replace("image-classification", "feature-extraction"))
    report = validate(d)
    assert any("architecture from the config" in line for line in report.lines())
    assert any(line.startswith("weights ok") for line in report.lines())
    cfg = json.loads((d / "config.json").read_text())
    del cfg["model_type"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="model_type"):
        validate(d)


@pytest.mark.parametrize("framework", ["TensorFlow", "paddle", 3])
def test_a_framework_other_than_pytorch_is_refused(framework):
    with pytest.raises(CardError, match="only PyTorch models load"):
        parse_card(EXAMPLE.replace("framework: PyTorch", f"framework: {framework}"))
    assert parse_card(EXAMPLE.replace("PyTorch", "pytorch")).framework == "PyTorch"


def test_a_config_without_entry_names_the_keys_it_needs(tmp_path):
    from hubloader import BaseModel

    (tmp_path / "config.json").write_text(json.dumps(
        {"entry_class": "MyAutoNet", "param_file": "my_model.pt"}))
    with pytest.raises(ConfigError, match="neither 'entry_file' nor 'entry_module'.*entry_class"):
        BaseModel.from_pretrain(str(tmp_path), trust_remote_code=True)


def test_get_processor_applies_a_packages_preprocessor_config(tmp_path):
    from PIL import Image

    from hubloader import AutoLoader
    from publish_helpers import write_entry_package

    pkg = write_entry_package(tmp_path / "pkg", marker=tmp_path / "marker.txt")
    (pkg / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 8, "width": 8}, "image_mean": [0.0] * 3, "image_std": [1.0] * 3}))
    Image.new("RGB", (20, 12), (255, 0, 51)).save(tmp_path / "x.png")
    proc = AutoLoader("base", model_name=str(pkg), trust_remote_code=True).get_processor()
    pixels = proc(str(tmp_path / "x.png"))["pixel_values"]
    assert pixels.shape == (1, 3, 8, 8)
    assert pixels[0, :, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])
