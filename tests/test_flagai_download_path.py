"""FlagAI's ``download_path`` layout has one rule, and ``from_pretrain(download_path=...)``
and ``download(download_path=...)`` follow it alike: a folder put there by hand is used in
place; a folder hubloader fetched (it keeps ``.hubloader/<name>/`` for it) is checked at its
source like any cached snapshot."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import hubloader
from hubloader.models import BertModel
from hub_helpers import files_in, make_tiny_bert, write_card


@pytest.fixture
def moving_hub(hub_env):
    """A folder hub whose card lists files without sha256, so each load asks the source."""
    src = hub_env / "hub" / "tiny-bert"
    make_tiny_bert(src)
    write_card(hub_env / "cards", "tiny-bert", source=src.as_uri(),
               files=[{"path": "config.json"}, {"path": "model.safetensors"}])
    return src


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _same(model, state) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items() if k in own)


def test_a_fetched_folder_is_checked_at_its_source_by_both(moving_hub, hub_env):
    target = hub_env / "checkpoints"
    first = hubloader.download("tiny-bert", download_path=target)
    assert first == target / "tiny-bert" and (target / ".hubloader" / "tiny-bert").is_dir()

    torch.manual_seed(1)
    make_tiny_bert(moving_hub)  # the source moves on: new weights
    model = BertModel.from_pretrain("tiny-bert", download_path=target)
    assert model.model_dir == first
    assert _same(model, _weights(moving_hub)), "from_pretrain kept the stale copy"

    torch.manual_seed(2)
    make_tiny_bert(moving_hub)
    assert hubloader.download("tiny-bert", download_path=target) == first
    assert files_in(first) == {k: v for k, v in files_in(moving_hub).items() if k in files_in(first)}


@pytest.mark.parametrize("folder", ["tiny-bert", "TINY-bert"])
def test_a_folder_put_there_by_hand_is_used_in_place_by_both(moving_hub, hub_env, folder):
    by_hand = hub_env / "by-hand"
    torch.manual_seed(3)
    make_tiny_bert(by_hand / folder)
    own = _weights(by_hand / folder)
    assert not _same(BertModel.from_pretrain(str(moving_hub)), own)

    model = BertModel.from_pretrain(folder, download_path=by_hand)
    assert model.model_dir == by_hand / folder and _same(model, own)
    assert hubloader.download(folder, download_path=by_hand) == by_hand / folder
    assert not (by_hand / ".hubloader").exists()  # nothing was fetched
    moving_hub.joinpath("model.safetensors").unlink()  # no source needed either
    assert BertModel.from_pretrain(folder, download_path=by_hand).model_dir == by_hand / folder
    assert hubloader.download(folder, download_path=by_hand) == by_hand / folder
