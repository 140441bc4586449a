"""One way from ``config.json`` to (class, config): ``load.plan.resolve_config``, shared by
``from_pretrain``, ``init_from_json``, ``AutoLoader``, ``validate`` and ``convert``; a
code-carrying package refuses what its own code cannot be given."""

from __future__ import annotations

import pytest
import torch

from hubloader import AutoLoader, BaseModel, ConfigError, ModelNotFoundError, UnknownTaskError
from hubloader.models import (BertConfig, BertForSequenceClassification, BertModel, GPT2Model,
                              RobertaConfig, RobertaModel)
from hubloader.load.plan import resolve_config
from publish_helpers import write_entry_package

_BERT = {"model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
         "num_attention_heads": 2, "intermediate_size": 32}


def test_base_model_lets_the_config_choose():
    cls, config = resolve_config(dict(_BERT), BaseModel, "config.json")
    assert cls is BertModel and type(config) is BertConfig and config.hidden_size == 16
    data = {**_BERT, "architectures": ["BertForSequenceClassification"]}
    cls, config = resolve_config(data, BaseModel, "config.json", num_labels=3)
    assert cls is BertForSequenceClassification and config.num_labels == 3


def test_family_class_is_swapped_for_the_checkpoints_family():
    cls, config = resolve_config({**_BERT, "model_type": "roberta"}, BertModel, "c.json")
    assert cls is RobertaModel and type(config) is RobertaConfig


def test_task_picks_the_class_serving_it():
    cls, _ = resolve_config(dict(_BERT), BaseModel, "c.json", task="classification")
    assert cls is BertForSequenceClassification
    with pytest.raises(UnknownTaskError, match="cannot serve"):
        resolve_config(dict(_BERT), BaseModel, "c.json", task="text-generation")


@pytest.mark.parametrize("data, error, match", [
    ({"hidden_size": 16}, ConfigError, "no 'model_type'"),
    ({**_BERT, "model_type": 3}, ConfigError, "'model_type' must be a string"),
    ({**_BERT, "architectures": "BertModel"}, ConfigError, "'architectures' must be a list"),
    ({**_BERT, "model_type": "bret"}, ModelNotFoundError, "Did you mean: bert"),
])
def test_bad_configs_name_the_file(data, error, match):
    with pytest.raises(error, match=match) as err:
        resolve_config(data, BaseModel, "/x/config.json")
    assert "/x/config.json" in str(err.value) or error is ModelNotFoundError


def test_other_family_and_unknown_override_are_refused():
    with pytest.raises(ConfigError, match="load it with BertModel"):
        resolve_config(dict(_BERT), GPT2Model, "c.json")
    with pytest.raises(ConfigError, match="unknown config override.*num_layerz"):
        resolve_config(dict(_BERT), BaseModel, "c.json", num_layerz=2)


def test_autoloader_and_from_pretrain_build_the_same_model(tmp_path):
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2)
    path = BertForSequenceClassification.from_config(cfg).save_pretrained(tmp_path / "m")
    loader = AutoLoader("classification", model_name=str(path), num_labels=2,
                        torch_dtype="float16")
    direct = BaseModel.from_pretrain(str(path), num_labels=2, torch_dtype="float16")
    assert loader.model_class is type(direct) is BertForSequenceClassification
    assert loader.task == "text-classification"
    got = loader.get_model()
    assert got.dtype == direct.dtype == torch.float16
    for (k, a), (_, b) in zip(got.state_dict().items(), direct.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("kwargs, named", [({"num_labels": 3}, "num_labels"),
                                           ({"torch_dtype": "float16"}, "torch_dtype")])
def test_code_package_refuses_what_its_code_cannot_take(tmp_path, kwargs, named):
    marker = tmp_path / "marker.txt"
    pkg = write_entry_package(tmp_path / "pkg", marker=marker)
    with pytest.raises(ConfigError, match=f"cannot pass {named}"):
        BaseModel.from_pretrain(str(pkg), trust_remote_code=True, **kwargs)
    with pytest.raises(ConfigError, match=f"cannot pass {named}"):
        AutoLoader("base", model_name=str(pkg), trust_remote_code=True, **kwargs)
    assert not marker.exists()  # refused before the package's code ran


def test_each_class_task_is_the_one_it_is_registered_for():
    from hubloader.load.registry import get_model_class, model_types, served_tasks

    seen: dict[type, list[str]] = {}
    for model_type in model_types():
        for task in served_tasks(model_type):
            seen.setdefault(get_model_class(model_type, task), []).append(task)
    for cls, tasks in seen.items():
        assert cls.task in tasks, (cls.__name__, cls.task, tasks)
        assert "task" in vars(cls)  # set by register_model, not inherited from a parent
    assert BertForSequenceClassification.task == "text-classification"
    assert RobertaModel.task == "base" and GPT2Model.task == "base"
