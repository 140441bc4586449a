"""The feature-extraction interface, for every family: declared shapes equal the shapes
captured in a real forward pass; hooks are replaced on re-registration; bad indexes fail."""

from __future__ import annotations

import pytest
import torch

from hubloader import LayerIndexNotFoundError
from hubloader.errors import ConfigError, FeaturesNotCapturedError, FeatureShapeError, InputError
from model_downstream_interface import BigModel4DownstreamInterface, LayerIndexNotFoundException
from hubloader.models import (LlamaConfig, LlamaForCausalLM, BertConfig, BertForSequenceClassification, BertModel, GPT2Config,
                              GPT2LMHeadModel, ResNetConfig, ResNetForImageClassification,
                              ResNetModel, SwinConfig, SwinForImageClassification,
                              SwinModel, T5Config, T5ForConditionalGeneration, ViTConfig,
                              ViTForImageClassification, ViTModel)


def _cfg(cls, **kw):
    return cls.from_dict(kw)  # validated, with derived fields (num_labels) filled in


def _text(shape):
    return torch.randint(0, 50, shape, generator=torch.Generator().manual_seed(0))


def _image(shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


# (name, builder, input shape, forward(model, input), depth, hierarchical)
FAMILIES = [
    ("bert", lambda: BertModel.from_config(_cfg(BertConfig,
        vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=24)), (2, 7), lambda m, x: m(input_ids=x), 3, False),
    ("bert-head", lambda: BertForSequenceClassification.from_config(_cfg(BertConfig,
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=24)), (3, 5), lambda m, x: m(input_ids=x), 2, False),
    ("gpt2", lambda: GPT2LMHeadModel.from_config(_cfg(GPT2Config,
        vocab_size=50, n_positions=32, n_embd=16, n_layer=3, n_head=2)),
     (2, 9), lambda m, x: m(x), 3, False),
    ("t5", lambda: T5ForConditionalGeneration.from_config(_cfg(T5Config,
        vocab_size=50, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4)),
     (2, 6), lambda m, x: m(input_ids=x, decoder_input_ids=x[:, :3]), 2, False),
    ("vit", lambda: ViTModel.from_config(_cfg(ViTConfig,
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
        image_size=24, patch_size=6)), (2, 3, 24, 24), lambda m, x: m(x), 2, False),
    ("vit-head", lambda: ViTForImageClassification.from_config(_cfg(ViTConfig,
        hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=24,
        image_size=[16, 32], patch_size=8, num_labels=3)), (1, 3, 16, 32),
     lambda m, x: m(x), 3, False),
    ("resnet", lambda: ResNetModel.from_config(_cfg(ResNetConfig,
        embedding_size=8, hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1])),
     (2, 3, 37, 50), lambda m, x: m(x), 5, True),
    ("resnet-head", lambda: ResNetForImageClassification.from_config(_cfg(ResNetConfig,
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
        downsample_in_first_stage=True)), (1, 3, 31, 31), lambda m, x: m(x), 3, True),
    ("llama", lambda: LlamaForCausalLM.from_config(_cfg(LlamaConfig,
        vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)),
     (2, 6), lambda m, x: m(input_ids=x), 2, False),
    ("swin", lambda: SwinModel.from_config(_cfg(SwinConfig,
        image_size=20, patch_size=2, embed_dim=8, depths=[1, 2], num_heads=[2, 2],
        window_size=3)), (2, 3, 20, 18), lambda m, x: m(x), 3, True),
    ("swin-head", lambda: SwinForImageClassification.from_config(_cfg(SwinConfig,
        patch_size=4, embed_dim=8, depths=[2, 1, 1], num_heads=[2, 2, 2], window_size=2,
        num_labels=3)), (1, 3, 30, 37), lambda m, x: m(x), 4, True),
]


@pytest.fixture(params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family(request):
    name, build, shape, run, depth, hier = request.param
    torch.manual_seed(0)
    model = build().eval()
    make = _image if len(shape) == 4 else _text
    return model, shape, (lambda: run(model, make(shape))), depth, hier


def test_declared_shapes_equal_captured_shapes(family):
    """The declared shape of one sample is the fetched feature's shape less the batch."""
    model, batch_shape, forward, depth, hier = family
    shape = batch_shape[1:]  # one sample, as the downstream platform passes it
    assert model.get_depth() == depth
    assert model.is_hierarchical_features() is hier
    declared = model.get_features_shapes_all_layers(shape)
    assert len(declared) == depth
    assert [model.get_features_shape(shape, i) for i in range(depth)] == declared
    model.register_features_buffer_by_layer_indexes(list(range(depth)))
    with torch.no_grad():
        forward()
    fetched = model.fetch_features()
    assert all(f.shape[0] == batch_shape[0] for f in fetched)
    assert [tuple(f.shape[1:]) for f in fetched] == declared
    if hier:  # the resolution shrinks with depth
        assert declared[-1][1] < declared[0][1]
    else:
        assert len(set(declared)) == 1


def test_reregistering_replaces_hooks(family):
    model, shape, forward, depth, _ = family
    model.register_features_buffer_by_layer_indexes([0, depth - 1])
    model.register_features_buffer_by_layer_indexes([-1])
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    assert hooks == 1
    with torch.no_grad():
        forward()
    (last,) = model.fetch_features()
    assert tuple(last.shape[1:]) == model.get_features_shape(shape[1:], depth - 1)
    model.clear_features_hooks()
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_captured_features_are_the_block_outputs():
    torch.manual_seed(0)
    model = BertModel.from_config(_cfg(BertConfig, vocab_size=50, hidden_size=16, num_hidden_layers=3,
                                             num_attention_heads=2, intermediate_size=24)).eval()
    x = _text((2, 5))
    model.register_features_buffer_by_layer_indexes([0, 2])
    with torch.no_grad():
        out = model(input_ids=x, output_hidden_states=True)
    first, last = model.fetch_features()
    assert torch.equal(first, out["all_hidden_states"][1])
    assert torch.equal(last, out["hidden_states"])


def test_bad_indexes_and_order_of_calls():
    model = GPT2LMHeadModel.from_config(_cfg(GPT2Config, vocab_size=50, n_positions=16, n_embd=8,
                                                   n_layer=2, n_head=2)).eval()
    with pytest.raises(FeaturesNotCapturedError, match="register"):
        model.fetch_features()
    for bad in (2, -3, 100):
        with pytest.raises(LayerIndexNotFoundError, match="out of range") as info:
            model.get_features_shape((4,), bad)
        assert isinstance(info.value, IndexError)
        assert isinstance(info.value, LayerIndexNotFoundException)
    with pytest.raises(LayerIndexNotFoundError, match="must be an int"):
        model.get_features_shape((4,), "0")
    model.register_features_buffer_by_layer_indexes([1])
    with pytest.raises(LayerIndexNotFoundError):
        model.register_features_buffer_by_layer_indexes([0, 5])
    # a failed re-registration leaves the earlier hooks in place
    assert sum(len(m._forward_hooks) for m in model.modules()) == 1
    with pytest.raises(FeaturesNotCapturedError, match="forward pass"):
        model.fetch_features()
    for bad_shape in ((1, 4), (3, 8, 8), (0,), 4):  # a batch dimension is one too many
        with pytest.raises(FeatureShapeError, match=r"\(seq_len,\)") as err:
            model.get_features_shape(bad_shape, 0)
        assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
    with pytest.raises(InputError):
        model.get_features_shapes_all_layers((0,))


@pytest.mark.parametrize("bad", [(1, 3, 24, 24), (24, 24), (1, 24, 24), (4, 24, 24), (3, 0, 24)])
def test_image_sample_shape_is_checked(bad):
    model = ViTModel.from_config(_cfg(ViTConfig, hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=24, image_size=24,
                                      patch_size=6))
    assert model.get_features_shape((3, 24, 24), 0) == (17, 16)
    with pytest.raises(FeatureShapeError, match=r"channels"):
        model.get_features_shape(bad, 0)


def test_save_and_reload_roundtrip(family, tmp_path):
    """Our own save_pretrained output loads back strictly, with identical outputs."""
    model, shape, forward, _, _ = family
    from hubloader import BaseModel

    with torch.no_grad():
        before = forward()["logits"]
    model.save_pretrained(tmp_path)
    again = BaseModel.from_pretrain(str(tmp_path))
    assert type(again) is type(model)
    model.load_state_dict(again.state_dict())  # same tensors under the same names
    with torch.no_grad():
        assert torch.equal(forward()["logits"], before)


def test_every_family_is_a_downstream_model(family):
    """Each model is the platform's interface: description, constructor, range check."""
    model, batch_shape, _, depth, _ = family
    assert isinstance(model, BigModel4DownstreamInterface)
    assert model.get_features_shapes_all_layers(batch_shape[1:]) == [
        model.get_features_shape(batch_shape[1:], i) for i in range(depth)]
    model._check_layer_index_range(list(range(depth)))
    with pytest.raises(LayerIndexNotFoundException):
        model._check_layer_index_range(depth)
    assert type(model).__name__ in model.get_description()
    with pytest.raises(ConfigError, match="load_weights"):
        type(model).from_pretrained()


def test_description_and_from_pretrained_from_a_saved_folder(tmp_path):
    model = BertModel.from_config(_cfg(BertConfig, vocab_size=50, hidden_size=16,
                                       num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=24))
    model.save_pretrained(tmp_path, card_body="A tiny BERT for the feature tests.\n")
    again = BertModel.from_pretrained(str(tmp_path / "model.safetensors"))
    assert again.get_description() == "A tiny BERT for the feature tests."
    (tmp_path / "README.md").write_text("Plain prose, no front matter.\n")
    assert BertModel.from_pretrained(str(tmp_path)).get_description() == \
        "Plain prose, no front matter."


def test_pyramid_layers():
    from model_downstream_interface.utils import get_pyramid_feature_layer_indexes as pick

    assert pick([(4, 4, 8)] * 2 + [(2, 2, 16)] * 3 + [(1, 1, 32)]) == [1, 4, 5]
    assert pick([(5, 8)] * 3) == [2]
    assert pick([]) == []


def test_validate_interface_run_on_every_family(family):
    """validate's interface run (one random input, declared vs fetched) passes every family."""
    from hubloader.packages.downstream import check_interface

    model, batch_shape, _, depth, hier = family
    report = check_interface(model, batch_shape[1:])
    assert (report.depth, report.hierarchical) == (depth, hier)
    assert len(report.table()) == depth + 1 and all(c.ok for c in report.layers)
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0  # hooks removed after


def test_description_from_the_card_a_model_was_loaded_by(tmp_path, monkeypatch):
    """A model fetched by card name describes itself with its card, not its cache folder."""
    src = tmp_path / "src"
    BertModel.from_config(_cfg(BertConfig, vocab_size=50, hidden_size=16, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=24)).save_pretrained(src)
    (src / "README.md").unlink()
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "described.md").write_text(
        "---\nname: Described-Bert\ntasks: [feature-extraction]\nlicense: mit\nauthor: me\n"
        f"architecture: bert\nsource: {src.as_uri()}\n---\n\nTrained on nothing at all.\n")
    monkeypatch.setenv("HUBLOADER_CARDS_PATH", str(cards))
    monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HUBLOADER_DISABLE_PROGRESS_BARS", "1")
    model = BertModel.from_pretrain("described-bert")
    assert model.model_dir != src and model.get_description() == "Trained on nothing at all."
