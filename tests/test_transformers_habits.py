"""A transformers user's habitual lines, run on hubloader's classes against transformers on the
same random tiny checkpoint and tokenizer: the dtype and device_map spellings, AutoTokenizer,
generation_config, generate()'s arguments (max_length, min_new_tokens, sampling, beam search,
stop strings, stopping criteria, streamer), save_pretrained's arguments and push_to_hub.
These are the lines the README's "Coming from transformers" section lists."""

from __future__ import annotations

import json

import pytest
import torch

from hubloader import AutoTokenizer, GenerationConfig, Tokenizer
from hubloader.errors import ConfigError, GenerationArgumentError, TokenizerError
from hubloader.models import GPT2LMHeadModel, LlamaForCausalLM
from hubloader.load.saving import parse_size

import transformers  # noqa: E402  (test-only oracle)

CORPUS = ["The quick brown fox jumps over the lazy dog.", "Stop here. Then stop again!",
          "Hello world, hello models; generation stops at the word stop."] * 30


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A byte-level BPE tokenizer and a tiny GPT-2 over its vocabulary, saved by transformers."""
    from tokenizers import ByteLevelBPETokenizer

    d = tmp_path_factory.mktemp("gpt2")
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                                special_tokens=["<|endoftext|>"])
    trainer.save_model(str(d))
    tok = transformers.GPT2TokenizerFast.from_pretrained(str(d))
    tok.save_pretrained(str(d))
    assert (d / "tokenizer.json").is_file() and len(tok("Hello world")["input_ids"]) > 1
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2,
                                  n_head=4, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # sharper logits: beams and samples differ from greedy
        hf.lm_head.weight.mul_(8)
    hf.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def models(gpt2_dir):
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gpt2_dir)).eval()
    ours = GPT2LMHeadModel.from_pretrained(str(gpt2_dir))
    return hf, ours


def _prompt(tok, texts=("Hello world",)):
    return tok(list(texts), return_tensors="pt")


# -- 1. tokenizer = AutoTokenizer.from_pretrained(name) -------------------------------------
def test_auto_tokenizer_from_pretrained(gpt2_dir):
    ref = transformers.AutoTokenizer.from_pretrained(str(gpt2_dir))
    for tok in (AutoTokenizer.from_pretrained(str(gpt2_dir)),
                Tokenizer.from_pretrained(str(gpt2_dir), padding_side="left",
                                          pad_token="<|endoftext|>")):
        for text in CORPUS[:3] + ["unseen zzz qq"]:
            assert tok(text)["input_ids"] == ref(text)["input_ids"] != []
            assert tok.decode(tok(text)["input_ids"]) == ref.decode(ref(text)["input_ids"])
    left = Tokenizer.from_pretrained(str(gpt2_dir), padding_side="left", pad_token="<|endoftext|>")
    ref_left = transformers.AutoTokenizer.from_pretrained(str(gpt2_dir), padding_side="left",
                                                          pad_token="<|endoftext|>")
    a = left(["hi", "Hello world again"], padding=True, return_tensors="pt")
    b = ref_left(["hi", "Hello world again"], padding=True, return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["attention_mask"], b["attention_mask"])
    with pytest.raises(TokenizerError, match="use_fast"):
        AutoTokenizer.from_pretrained(str(gpt2_dir), use_fast=False)
    with pytest.raises(TokenizerError, match="cache_dir"):
        AutoTokenizer.from_pretrained(str(gpt2_dir), cache_dir="x")


# -- 2. from_pretrained(name, dtype=..., torch_dtype="auto", device_map=...) -----------------
def test_dtype_spellings_match_transformers(gpt2_dir, tmp_path):
    for kw in ({"dtype": torch.float16}, {"torch_dtype": torch.bfloat16},
               {"torch_dtype": "auto"}, {"dtype": "auto"}, {}):
        ref = transformers.AutoModelForCausalLM.from_pretrained(str(gpt2_dir), **kw)
        ours = GPT2LMHeadModel.from_pretrained(str(gpt2_dir), **kw)
        assert ours.dtype == ref.dtype, kw
    # a bf16 checkpoint whose config declares no dtype: "auto" takes the checkpoint's own
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gpt2_dir)).to(torch.bfloat16)
    hf.save_pretrained(str(tmp_path))
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("dtype", None), cfg.pop("torch_dtype", None)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype="auto")
    ours = GPT2LMHeadModel.from_pretrained(str(tmp_path), dtype="auto")
    assert ours.dtype == ref.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="disagree"):
        GPT2LMHeadModel.from_pretrained(str(gpt2_dir), dtype=torch.float16,
                                        torch_dtype=torch.bfloat16)


def test_device_map_on_one_device(models, gpt2_dir):
    hf, _ = models
    ids = _prompt(transformers.AutoTokenizer.from_pretrained(str(gpt2_dir)))["input_ids"]
    with torch.no_grad():
        want = hf(ids).logits
    for dm in ("cpu", "auto", {"": "cpu"}, torch.device("cpu")):
        ref = transformers.AutoModelForCausalLM.from_pretrained(str(gpt2_dir), device_map=dm)
        ours = GPT2LMHeadModel.from_pretrained(str(gpt2_dir), device_map=dm)
        assert ours.device == ref.device == torch.device("cpu")
        with torch.no_grad():
            assert torch.allclose(ours(ids)["logits"], want, atol=1e-5)
    if not torch.cuda.is_available():  # transformers refuses these here too
        for dm in ("cuda", "cuda:1", 0):
            with pytest.raises(ConfigError, match="CUDA"):
                GPT2LMHeadModel.from_pretrained(str(gpt2_dir), device_map=dm)
    with pytest.raises(ConfigError, match="attn_implementation"):
        GPT2LMHeadModel.from_pretrained(str(gpt2_dir), attn_implementation="flash_attention_2")
    with pytest.raises(ConfigError, match="cache_dir"):  # not honoured: named
        GPT2LMHeadModel.from_pretrained(str(gpt2_dir), cache_dir="elsewhere")


def test_device_map_placement_through_accelerate(gpt2_dir):
    """A {module: device} map goes through accelerate's dispatch_model (here all on the CPU)."""
    pytest.importorskip("accelerate")
    from hubloader.load.hf_args import dispatch_over_devices

    ours = GPT2LMHeadModel.from_pretrained(str(gpt2_dir))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        want = ours(ids)["logits"]
    plan = {name: "cpu" for name, _ in ours.named_children()}
    placed = dispatch_over_devices(ours, plan)
    assert placed.hf_device_map == plan
    auto = dispatch_over_devices(GPT2LMHeadModel.from_pretrained(str(gpt2_dir)), "auto")
    assert set(auto.hf_device_map.values()) == {"cpu"}
    with torch.no_grad():
        assert torch.allclose(placed(ids)["logits"], want)
        assert torch.allclose(auto(ids)["logits"], want)


# -- 3. generation_config --------------------------------------------------------------------
def test_generation_config_read_and_written(gpt2_dir, tmp_path, models):
    hf, _ = models
    for f in gpt2_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    transformers.GenerationConfig(max_new_tokens=7, repetition_penalty=1.3, eos_token_id=0,
                                  bos_token_id=0).save_pretrained(str(tmp_path))
    ours = GPT2LMHeadModel.from_pretrained(str(tmp_path))
    assert ours.generation_config.max_new_tokens == 7
    assert ours.generation_config.repetition_penalty == 1.3
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path))
    ids = torch.tensor([[5, 6, 7]])
    assert torch.equal(ours.generate(ids), ref.generate(ids, attention_mask=torch.ones_like(ids)))
    ours.generation_config.max_new_tokens = 4
    ours.generation_config.top_k = 9
    out = ours.save_pretrained(tmp_path / "saved")
    back = transformers.GenerationConfig.from_pretrained(str(out))
    assert (back.max_new_tokens, back.top_k, back.repetition_penalty) == (4, 9, 1.3)
    assert GPT2LMHeadModel.from_pretrained(str(out)).generation_config == ours.generation_config
    assert isinstance(ours.generation_config, GenerationConfig)


# -- 4. model.generate(**inputs, ...) --------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {},  # transformers' default: max_length 20
    {"max_length": 24}, {"max_new_tokens": 9, "min_new_tokens": 9},
    {"max_new_tokens": 8, "repetition_penalty": 1.5},
    {"max_new_tokens": 8, "num_beams": 3},
    {"max_new_tokens": 10, "num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.5},
    {"max_new_tokens": 10, "num_beams": 3, "early_stopping": True},
    {"max_new_tokens": 10, "num_beams": 2, "early_stopping": "never", "length_penalty": 2.0},
])
def test_generate_arguments_match_transformers(models, gpt2_dir, kw):
    hf, ours = models
    tok = transformers.AutoTokenizer.from_pretrained(str(gpt2_dir), padding_side="left",
                                                     pad_token="<|endoftext|>")
    inputs = tok(["Hello world", "The quick brown fox jumps"], padding=True, return_tensors="pt")
    ref = hf.generate(**inputs, **kw)
    got = ours.generate(**inputs, **kw)
    assert torch.equal(got, ref), (got, ref)


def test_max_length_shorter_than_the_prompt_is_refused_as_in_transformers(models):
    hf, ours = models
    ids = torch.tensor([[5, 9, 14, 3]])
    with pytest.raises(ValueError, match="max_length"):
        hf.generate(ids, attention_mask=torch.ones_like(ids), max_length=4)
    with pytest.raises(GenerationArgumentError, match="max_length"):
        ours.generate(ids, max_length=4)


def test_beam_search_with_eos_matches_transformers(models):
    hf, ours = models
    ids = torch.tensor([[5, 9, 14, 3], [7, 7, 20, 1]])
    greedy = ours.generate(ids, max_new_tokens=10, eos_token_id=[])
    for eos in ([int(greedy[0, 6])], [int(greedy[0, 6]), int(greedy[1, 8])]):
        for beams in (2, 5):
            kw = dict(max_new_tokens=10, num_beams=beams, eos_token_id=eos, pad_token_id=3)
            ref = hf.generate(ids, attention_mask=torch.ones_like(ids), **kw)
            assert torch.equal(ours.generate(ids, **kw), ref), (eos, beams)


def test_sampling_matches_transformers_under_the_same_seed(models):
    hf, ours = models
    ids = torch.tensor([[5, 9, 14, 3]])
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.7, top_k=20, top_p=0.9)
    torch.manual_seed(11)
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), **kw)
    torch.manual_seed(11)
    assert torch.equal(ours.generate(ids, **kw), ref)
    torch.manual_seed(12)
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                      max_new_tokens=6, num_return_sequences=3)
    torch.manual_seed(12)
    assert torch.equal(ours.generate(ids, do_sample=True, max_new_tokens=6,
                                     num_return_sequences=3), ref)


def test_stop_strings_and_stopping_criteria_match_transformers(models, gpt2_dir):
    hf, ours = models
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(gpt2_dir))
    tok = AutoTokenizer.from_pretrained(str(gpt2_dir))
    ids = torch.tensor([[5, 9, 14, 3]])
    free = ours.generate(ids, max_new_tokens=16, eos_token_id=[])
    text = tok.decode(free[0, 4:])
    stop = text[len(text) // 2:len(text) // 2 + 2]  # a piece of what greedy writes
    assert stop.strip()
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                      stop_strings=[stop], tokenizer=ref_tok, eos_token_id=None)
    got = ours.generate(ids, max_new_tokens=16, stop_strings=[stop], tokenizer=tok,
                        eos_token_id=[])
    assert torch.equal(got, ref)
    assert got.shape[1] < free.shape[1]
    crit = transformers.StoppingCriteriaList([transformers.MaxLengthCriteria(max_length=9)])
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                      stopping_criteria=crit)
    assert torch.equal(ours.generate(ids, max_new_tokens=16, stopping_criteria=crit), ref)
    assert ref.shape[1] == 9
    with pytest.raises(GenerationArgumentError, match="tokenizer"):
        ours.generate(ids, max_new_tokens=3, stop_strings="x")


def test_streamer_gets_what_transformers_streams(models, gpt2_dir):
    hf, ours = models
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(gpt2_dir))
    ids = torch.tensor([[5, 9, 14, 3]])
    texts = []
    for model, tok in ((hf, ref_tok), (ours, AutoTokenizer.from_pretrained(str(gpt2_dir)))):
        streamer = transformers.TextIteratorStreamer(tok, skip_prompt=True)
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10,
                       streamer=streamer)
        texts.append("".join(streamer))
    assert texts[0] == texts[1] and texts[0]
    with pytest.raises(GenerationArgumentError, match="streamer"):
        ours.generate(ids, max_new_tokens=3, num_beams=2, streamer=streamer)


def test_unsupported_generate_arguments_are_named(models):
    _, ours = models
    ids = torch.tensor([[5, 9]])
    with pytest.raises(GenerationArgumentError, match="output_scores"):
        ours.generate(ids, max_new_tokens=2, output_scores=True)
    with pytest.raises(GenerationArgumentError, match="beam sampling"):
        ours.generate(ids, max_new_tokens=2, num_beams=2, do_sample=True)


def test_llama_beam_search_matches_transformers(tmp_path):
    """Grouped-query attention and RoPE under beam reordering of the KV cache."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, bos_token_id=1, eos_token_id=2,
                                   pad_token_id=0)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(6)
    hf.save_pretrained(str(tmp_path))
    ours = LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32)
    ids = torch.tensor([[0, 0, 5, 17, 33], [9, 4, 50, 61, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    kw = dict(max_new_tokens=8, num_beams=3, num_return_sequences=3)
    assert torch.equal(ours.generate(ids, attention_mask=mask, **kw),
                       hf.generate(ids, attention_mask=mask, **kw))


# -- 5. save_pretrained(dir, safe_serialization=True, max_shard_size="...") ------------------
def test_save_pretrained_arguments_as_transformers_reads_them(models, tmp_path):
    from transformers.utils.hub import convert_file_size_to_int

    for size in ("5GB", "5GiB", "5Gb", "500MB", "20MiB", "100KB", "7kB", 12345):
        assert parse_size(size) == convert_file_size_to_int(size), size
    _, ours = models
    out = ours.save_pretrained(tmp_path / "m", safe_serialization=True, max_shard_size="20KB")
    assert (out / "model.safetensors.index.json").is_file()
    back = transformers.AutoModelForCausalLM.from_pretrained(str(out))
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, ours(ids)["logits"], atol=1e-6)
    with pytest.raises(ConfigError, match="safe_serialization"):
        ours.save_pretrained(tmp_path / "bin", safe_serialization=False)


# -- 6. model.push_to_hub(repo) ----------------------------------------------------------------
def test_push_to_hub_over_hubloader_push(models, tmp_path, monkeypatch):
    """huggingface_hub reads HF_HUB_DISABLE_XET at import: the push runs in a fresh process."""
    import os
    import subprocess
    import sys

    import servers

    _, ours = models
    folder = ours.save_pretrained(tmp_path / "src")
    server = servers.HubServer()
    try:
        env = dict(os.environ, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
                   HUBLOADER_HOME=str(tmp_path / "home"))
        code = ("import sys; from hubloader.models import GPT2LMHeadModel; "
                "m = GPT2LMHeadModel.from_pretrain(sys.argv[1]); "
                "r = m.push_to_hub('org/tiny-gpt2', endpoint_url=sys.argv[2], token='hf_test', "
                "progress=False); print(r.bytes_uploaded)")
        out = subprocess.run([sys.executable, "-c", code, str(folder), server.url], env=env,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        assert int(out.stdout.split()[-1]) > 0
        head = server.repos["org/tiny-gpt2"]["refs"]["main"]
        files = server.repos["org/tiny-gpt2"]["commits"][head]
        assert {"model.safetensors", "config.json", "README.md",
                "generation_config.json"} <= set(files)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HUBLOADER_HOME", str(tmp_path / "cache"))
        back = GPT2LMHeadModel.from_pretrain("hf://org/tiny-gpt2")
        for (name, a), (_, b) in zip(ours.state_dict().items(), back.state_dict().items()):
            assert torch.equal(a, b), name
    finally:
        server.close()


def test_readme_lines_run(gpt2_dir, tmp_path, capsys):
    """The README's "Coming from transformers" block, run as written (CUDA lines on the CPU
    where there is none), and its ids equal transformers' for the same lines."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Coming from transformers"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    if not torch.cuda.is_available():
        code = code.replace('device_map="cuda:0"', 'device_map="cpu"')
    scope = {"name": str(gpt2_dir), "out_dir": str(tmp_path / "out")}
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["model"].dtype == torch.float32  # line 3 (auto) came last
    assert (tmp_path / "out" / "model.safetensors").is_file()
    tok, model, inputs = scope["tok"], scope["model"], scope["inputs"]
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(gpt2_dir), padding_side="left")
    ref_tok.pad_token = ref_tok.eos_token
    ref_inputs = ref_tok(["Hello", "Hi there"], padding=True, return_tensors="pt")
    assert torch.equal(inputs["input_ids"], ref_inputs["input_ids"])
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(gpt2_dir), torch_dtype="auto",
                                                            device_map="auto")
    assert torch.equal(model.generate(**inputs, max_new_tokens=50),
                       ref.generate(**ref_inputs, max_new_tokens=50))
    assert model.generation_config.max_new_tokens == 64  # line 9
    kw = dict(num_beams=4, num_return_sequences=2, max_new_tokens=10)
    assert torch.equal(model.generate(**inputs, **kw), ref.generate(**ref_inputs, **kw))
    assert capsys.readouterr().out  # the streamer wrote the text
    assert tok.batch_decode(scope["out"], skip_special_tokens=True) == ref_tok.batch_decode(
        scope["out"], skip_special_tokens=True)


def test_max_shard_size_parses_as_transformers_for_generated_sizes():
    from hypothesis import given, settings, strategies as st
    from transformers.utils.hub import convert_file_size_to_int

    units = st.sampled_from(["GB", "MB", "KB", "GiB", "MiB", "KiB", "Gb", "Mb", "Kb", "gb", "mib"])

    @settings(max_examples=200, deadline=None)
    @given(n=st.integers(1, 10**6), unit=units)
    def check(n, unit):
        assert parse_size(f"{n}{unit}") == convert_file_size_to_int(f"{n}{unit}")

    check()


def test_device_map_values_are_a_device_or_a_typed_error():
    from hypothesis import given, settings, strategies as st

    from hubloader.load.hf_args import take_load_spellings

    values = st.one_of(st.text(max_size=8), st.integers(-3, 3), st.booleans(), st.none(),
                       st.dictionaries(st.text(max_size=4), st.sampled_from(["cpu", "disk", 0]),
                                       max_size=3), st.floats(allow_nan=False))

    @settings(max_examples=200, deadline=None)
    @given(value=values)
    def check(value):
        try:
            spell = take_load_spellings({"device_map": value}, device="cpu", torch_dtype=None,
                                        offline=None)
        except ConfigError:
            return
        assert spell.device_map is not None or isinstance(spell.device, (str, torch.device))

    check()


def test_t5_beam_search_and_max_length_match_transformers(tmp_path):
    """Encoder-decoder: beams reorder the decoder cache and keep the encoder output per row;
    max_length counts the decoder ids (start token included)."""
    from hubloader.models import T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                num_heads=2, decoder_start_token_id=0, pad_token_id=0,
                                eos_token_id=1)
    hf = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(20)
    hf.save_pretrained(str(tmp_path))
    ours = T5ForConditionalGeneration.from_pretrain(str(tmp_path))
    src = torch.randint(2, 64, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(src)
    for kw in (dict(max_new_tokens=8, num_beams=3),
               dict(max_new_tokens=8, num_beams=3, num_return_sequences=2, eos_token_id=5),
               dict(max_length=6)):
        assert torch.equal(ours.generate(src, attention_mask=mask, **kw),
                           hf.generate(input_ids=src, attention_mask=mask, **kw)), kw
