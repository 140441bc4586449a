"""Publisher and loader together: ``hubloader.push`` a saved model to a real SeaweedFS, then load
it by name through ``HUBLOADER_ENDPOINT`` with the pushed card, with equal tensors; the second
load is served by the verified cache without a single request (counted at a TCP proxy)."""

from __future__ import annotations

import pytest
import torch

import hubloader
from hub_helpers import make_tiny_bert

NAME = "rt-bert"


@pytest.fixture
def pushed(weed, hub_env, tmp_path):
    folder = make_tiny_bert(tmp_path / "out" / NAME)
    s3 = weed.client()
    try:
        s3.create_bucket(Bucket="roundtrip")
    except Exception as err:  # already there from another test
        if "BucketAlready" not in str(err):
            raise
    result = hubloader.push(folder, f"s3://roundtrip/models/{NAME}/", progress=False,
                            endpoint_url=weed.endpoint)
    assert result.uploaded[-1] == "README.md" and result.bytes_uploaded > 0
    return folder


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_push_then_load_by_name_with_the_pushed_card(pushed, proxy, weed, hub_env, monkeypatch):
    from hubloader.models import BertModel

    # the card is the README.md that push() put in the bucket, as a user would fetch it
    card = weed.client().get_object(Bucket="roundtrip", Key=f"models/{NAME}/README.md")
    (hub_env / "cards" / f"{NAME}.md").write_bytes(card["Body"].read())
    monkeypatch.setenv("HUBLOADER_ENDPOINT", "s3://roundtrip/models")
    proxy.reset()
    model = BertModel.from_pretrain(NAME)
    assert len(proxy.get_lines()) == 3, proxy.get_lines()  # one listing, config, weights
    reference = BertModel.from_pretrain(pushed)
    _same_weights(model, reference)
    ids = torch.tensor([[1, 5, 7, 2]])
    model.eval(), reference.eval()
    assert torch.equal(model(ids)["hidden_states"], reference(ids)["hidden_states"])

    proxy.reset()
    again = BertModel.from_pretrain(NAME)
    assert proxy.requests == [] and proxy.connections == 0, proxy.requests
    _same_weights(again, reference)


def test_push_then_load_by_endpoint_without_a_local_card(pushed, proxy, hub_env, monkeypatch):
    from hubloader.models import BertModel

    monkeypatch.setenv("HUBLOADER_ENDPOINT", "s3://roundtrip/models")
    model = BertModel.from_pretrain(NAME)
    _same_weights(model, BertModel.from_pretrain(pushed))
    proxy.reset()
    BertModel.from_pretrain(NAME)
    # no card digests: the moving label is re-checked with one listing, no file is fetched
    assert len(proxy.requests) == 1 and "list-type=2" in proxy.get_lines()[0], proxy.requests
