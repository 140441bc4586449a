"""Weight-only quantized loading through torchao on a small Llama saved by transformers:
int8 cuts the linear weights' memory about 4x with logits close to fp32 and greedy ids mostly
unchanged; int4 (CPU: torchao's unpacked int4) and a torchao config object load; bitsandbytes
without CUDA, an unknown name and transformers' BitsAndBytesConfig on the CPU are typed errors."""

from __future__ import annotations

import pytest
import torch

from hubloader.models import LlamaForCausalLM
from hubloader.load.quantization import QuantizationError, parameter_bytes

import transformers  # noqa: E402  (test-only oracle)

torchao = pytest.importorskip("torchao")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=128, intermediate_size=256,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2)
    d = tmp_path_factory.mktemp("llama")
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(d))
    return d


def _linear_bytes(model):
    return sum(parameter_bytes(m) for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_int8_cuts_linear_memory_4x_and_keeps_greedy_ids(llama_dir):
    full = LlamaForCausalLM.from_pretrain(str(llama_dir))
    q8 = LlamaForCausalLM.from_pretrain(str(llama_dir), quantization="int8")
    linears = [m for m in q8.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m.weight).__name__ == "Int8Tensor" for m in linears)
    ratio = _linear_bytes(full) / _linear_bytes(q8)
    assert 3.5 < ratio <= 4.0, ratio  # int8 values plus one float scale per row
    assert parameter_bytes(q8) < parameter_bytes(full)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = full(ids)["logits"], q8(ids)["logits"]
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    greedy_full = full.generate(ids, max_new_tokens=8, eos_token_id=[])
    greedy_q8 = q8.generate(ids, max_new_tokens=8, eos_token_id=[])
    agree = (greedy_full[:, 8:] == greedy_q8[:, 8:]).float().mean()
    assert agree >= 0.75, agree


def test_int4_and_a_torchao_config_object(llama_dir):
    from torchao.quantization import Int8WeightOnlyConfig

    full = LlamaForCausalLM.from_pretrain(str(llama_dir))
    q4 = LlamaForCausalLM.from_pretrain(str(llama_dir), quantization="int4")
    obj = LlamaForCausalLM.from_pretrain(str(llama_dir), quantization=Int8WeightOnlyConfig())
    ids = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = full(ids)["logits"]
        for model, tol in ((q4, 0.3), (obj, 0.05)):
            got = model(ids)["logits"]
            assert (got - want).abs().max() < tol * want.abs().max()
            assert not torch.equal(got, want)  # it is quantized


def test_refused_quantizations_are_typed(llama_dir):
    for spec, match in (("bnb-int8", "CUDA"), ("fp3", "not known"), (42, "torchao config"),
                        (transformers.BitsAndBytesConfig(load_in_8bit=True), "CUDA")):
        with pytest.raises(QuantizationError, match=match):
            LlamaForCausalLM.from_pretrain(str(llama_dir), quantization=spec)
    with pytest.raises(QuantizationError, match="CUDA"):  # transformers' spelling
        LlamaForCausalLM.from_pretrain(
            str(llama_dir), quantization_config=transformers.BitsAndBytesConfig(load_in_4bit=True))
