"""FedAvg on Flower's real processes: ``flower-superlink`` and one ``flower-supernode`` per
data owner on 127.0.0.1, the run submitted with Flower's ``flwr run``. Every test checks that
no Flower process it started is left running."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")  # the federated extra; CI installs it with the test extra

from automl_helpers import LABELS, image_dataset, tiny_resnet_dir  # noqa: E402
from hubloader import FederatedError  # noqa: E402
from hubloader.automl import AutoModel  # noqa: E402
from hubloader.automl.federate import LocalFederation, federate  # noqa: E402
from publish_helpers import run_cli  # noqa: E402

# each owner lacks one colour: alone it can never name it
SKEWS = ({"red": 12, "green": 12}, {"green": 12, "blue": 12}, {"blue": 12, "red": 12})


def _flower_processes(root: Path) -> list[int]:
    """Live processes whose FLWR_HOME lies under ``root`` (Flower's SuperExec runs in its own
    session, so only the environment ties it to the run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and f"FLWR_HOME={root}".encode() in env:
            found.append(int(entry.name))
    return found


def _completed(out: Path) -> list[int]:
    try:
        return [r["round"] for r in json.loads((out / "rounds.json").read_text())["rounds"]]
    except (OSError, ValueError):
        return []


@pytest.fixture
def owners(tmp_path):
    base = tiny_resnet_dir(tmp_path / "resnet")
    union = {c: 8 for c in LABELS}
    dirs = [image_dataset(tmp_path / f"owner{i}", train=skew, test=union, seed=i)
            for i, skew in enumerate(SKEWS)]
    image_dataset(tmp_path / "union", train={c: 1 for c in LABELS},
                  test={c: 15 for c in LABELS}, seed=99)
    return base, dirs, tmp_path / "union"


def test_federate_cli_on_flower(owners, tmp_path, monkeypatch, capsys):
    """The default-run Flower check: two owners, one round, through the CLI."""
    base, dirs, _ = owners
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the federation's FLWR_HOME lands here
    rc, out, err = run_cli(["federate", base, "--data", dirs[0], "--data", dirs[1],
                            "--rounds", "1", "--out", tmp_path / "out", "--lr", "0.03",
                            "--fraction-evaluate", "0", "--json"], monkeypatch, capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert [(r["round"], r["clients"], r["samples"]) for r in summary["rounds"]] == [(1, 2, 48)]
    saved = json.loads((tmp_path / "out" / "rounds.json").read_text())
    assert saved["finished"] and saved["rounds"] == summary["rounds"]
    model = AutoModel.from_pretrain(summary["model"])
    assert model.labels == sorted(LABELS)
    image = next((dirs[0] / "test" / "red").iterdir())
    assert model.forward(str(image)) in LABELS
    assert _flower_processes(tmp_path) == []


def _local_only_accuracy(base: Path, data: Path, union: Path, epochs: int) -> float:
    model = AutoModel.from_pretrain(base, lr=0.03)
    ok, why = model.init_dataset(data, labels=sorted(LABELS))
    assert ok, why
    for _ in range(epochs):
        model.train_an_epoch()
    model.init_dataset(union, labels=sorted(LABELS))
    return model.run_test()[1]


@pytest.mark.slow
def test_three_owners_with_label_skew_beat_their_local_models(owners, tmp_path):
    base, dirs, union = owners
    with LocalFederation(dirs, workdir=tmp_path / "fed") as fed:
        result = federate(base, dirs, rounds=3, out_dir=tmp_path / "out", local_epochs=2,
                          lr=0.03, min_clients=3, federation=fed, round_timeout=120)
    assert _flower_processes(tmp_path) == []
    assert [r["round"] for r in result.rounds] == [1, 2, 3]
    assert all(r["clients"] == 3 and r["samples"] == 72 for r in result.rounds)
    assert all(0 <= r["accuracy"] <= 1 for r in result.rounds)
    fed_model = AutoModel.from_pretrain(result.model_dir)
    fed_model.init_dataset(union, labels=sorted(LABELS))
    federated = fed_model.run_test()[1]
    local = [_local_only_accuracy(base, d, union, epochs=6) for d in dirs]
    assert all(acc <= 2 / 3 + 1e-9 for acc in local), local  # each lacks a colour
    assert federated > max(local), (federated, local)


@pytest.mark.slow
def test_a_data_owner_dying_mid_run(owners, tmp_path):
    base, dirs, _ = owners
    out = tmp_path / "out"
    fed = LocalFederation(dirs, workdir=tmp_path / "fed").start()
    try:
        box: dict = {}

        def run():
            try:
                box["result"] = federate(base, dirs, rounds=3, out_dir=out, min_clients=2,
                                         lr=0.03, fraction_evaluate=0, round_timeout=60,
                                         federation=fed)
            except Exception as err:  # handed to the test thread
                box["error"] = err

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and 1 not in _completed(out) and t.is_alive():
            time.sleep(0.5)
        assert 1 in _completed(out), box
        fed.kill_owner(2)
        t.join(600)
    finally:
        fed.stop()
    assert "error" not in box, box
    rounds = box["result"].rounds
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert rounds[0]["clients"] == 3 and rounds[-1]["clients"] == 2
    assert (box["result"].model_dir / "model.safetensors").is_file()

    # too few owners for min_clients: a typed error, the completed rounds kept
    out2 = tmp_path / "out2"
    with LocalFederation(dirs[:2], workdir=tmp_path / "fed2") as fed2:
        first = federate(base, dirs[:2], rounds=1, out_dir=out2, min_clients=2, lr=0.03,
                         fraction_evaluate=0, round_timeout=120, federation=fed2)
        assert [r["round"] for r in first.rounds] == [1]
        fed2.kill_owner(1)
        with pytest.raises(FederatedError, match="at least 2"):
            federate(base, dirs[:2], rounds=3, out_dir=out2, min_clients=2, lr=0.03,
                     fraction_evaluate=0, round_timeout=30, recover=True, federation=fed2)
    # the owner is back: recover resumes after round 1
    with LocalFederation(dirs[:2], workdir=tmp_path / "fed3") as fed3:
        resumed = federate(base, dirs[:2], rounds=3, out_dir=out2, min_clients=2, lr=0.03,
                           fraction_evaluate=0, round_timeout=120, recover=True, federation=fed3)
    assert [r["round"] for r in resumed.rounds] == [1, 2, 3]
    assert resumed.rounds[0] == first.rounds[0]
    assert _flower_processes(tmp_path) == []
