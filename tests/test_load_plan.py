"""One load plan: a ``from_pretrain`` or an ``AutoLoader`` call parses the model's name once
and resolves the task once, on a local folder and on a card served by a folder hub."""

from __future__ import annotations

import sys
from collections import Counter

import pytest

import hubloader
import hubloader.load.registry as registry
import hubloader.names as names
from hubloader import AutoLoader
from hubloader.load.plan import model_spec, plan_load
from hubloader.models import BertModel, BertForSequenceClassification

from hub_helpers import make_tiny_bert, write_card


def _count(monkeypatch, func):
    """Wrap ``func`` wherever a hubloader module holds it; return the argument counter."""
    calls: Counter = Counter()

    def counting(*args, **kwargs):
        calls[str(args[0]) if args else None] += 1
        return func(*args, **kwargs)

    for mod in list(sys.modules.values()):
        if (getattr(mod, "__name__", "") or "").startswith("hubloader") \
                and getattr(mod, func.__name__, None) is func:
            monkeypatch.setattr(mod, func.__name__, counting)
    return calls


@pytest.fixture
def counters(monkeypatch):
    import hubloader.auto, hubloader.hub, hubloader.hub.locate, hubloader.load.modeling  # noqa: F401
    return (_count(monkeypatch, names.parse_model_name),
            _count(monkeypatch, registry.resolve_task))


@pytest.fixture
def card_hub(hub_env, monkeypatch):
    """A folder hub serving the card ``tiny-plan-bert`` (architecture ``bert``)."""
    make_tiny_bert(hub_env / "hub" / "tiny-plan-bert")
    write_card(hub_env / "cards", "tiny-plan-bert")
    monkeypatch.setenv("HUBLOADER_ENDPOINT", (hub_env / "hub").as_uri())
    return "tiny-plan-bert"


def test_from_pretrain_local_folder_parses_once(tmp_path, counters):
    parsed, tasks = counters
    folder = str(make_tiny_bert(tmp_path / "tiny"))
    model = BertModel.from_pretrain(folder)
    assert model.model_dir is not None and model.model_dir.name == "tiny"
    assert parsed[folder] == 1 and sum(parsed.values()) == 1
    assert sum(tasks.values()) == 0  # no task asked: the class's own, resolved when registered


def test_from_pretrain_card_through_folder_hub_parses_once(card_hub, counters):
    parsed, tasks = counters
    model = BertModel.from_pretrain(card_hub)
    assert model.card_name == card_hub and model.load_report is not None
    assert parsed[card_hub] == 1, parsed
    assert sum(tasks.values()) == 0


def test_autoloader_card_parses_once_and_resolves_task_once(card_hub, counters):
    parsed, tasks = counters
    loader = AutoLoader("classification", model_name=card_hub, num_labels=3)
    assert isinstance(loader.get_model(), BertForSequenceClassification)
    assert loader.task == "text-classification" and loader.model_type == "bert"
    assert parsed[card_hub] == 1, parsed
    assert sum(tasks.values()) == 1, tasks


def test_autoloader_local_folder_parses_once_and_resolves_task_once(tmp_path, counters):
    parsed, tasks = counters
    folder = str(make_tiny_bert(tmp_path / "tiny"))
    loader = AutoLoader("embedding", model_name=folder)
    assert loader.task == "feature-extraction"
    assert parsed[folder] == 1 and sum(parsed.values()) == 1
    assert sum(tasks.values()) == 1, tasks


def test_plan_decides_dir_class_config_task(tmp_path):
    folder = make_tiny_bert(tmp_path / "tiny")
    plan = plan_load(model_spec(str(folder)), "cls", requested=hubloader.BaseModel,
                     overrides={"num_labels": 4})
    assert plan.model_dir == folder and plan.task == "text-classification"
    assert plan.model_class is BertForSequenceClassification
    assert plan.config is not None and plan.config.num_labels == 4
    # init_from_json plans from the file itself: no fetch, the class asked for
    from_file = plan_load(folder / "config.json", requested=BertModel)
    assert from_file.model_class is BertModel and from_file.task is None


def test_flagai_default_folder_is_one_rule(tmp_path, monkeypatch, card_hub):
    # FlagAI's AutoLoader keeps models in ./checkpoints/<name>/; a folder there is used in place
    monkeypatch.chdir(tmp_path)
    make_tiny_bert(tmp_path / "checkpoints" / card_hub)
    spec = model_spec(card_hub, default_folder="./checkpoints/")
    assert spec.download_path == "./checkpoints/" and spec.card is not None
    loader = AutoLoader("embedding", model_name=card_hub)
    assert loader.model_dir.resolve() == (tmp_path / "checkpoints" / card_hub).resolve()
    assert model_spec(card_hub).download_path is None  # from_pretrain has no default folder
