"""Chat-model tokenizers against transformers on the same files: SentencePiece BPE from
``tokenizer.model`` (Llama 2, TinyLlama), byte-level BPE from ``tokenizer.json`` (Llama 3,
Qwen2), and ``apply_chat_template``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from hubloader.errors import ChatTemplateError, TokenizerError
from hubloader.text.tokenizer import load_tokenizer

import transformers  # noqa: E402  (test-only oracle)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello world! How are you today?",
    "  leading spaces and trailing  ", "Numbers: 12345 and 3.14159, dates 2024-01-31.",
    "Unicode: café, naïve, Straße, 北京欢迎你, こんにちは, emoji 🙂🚀.",
    "def main():\n    print('hi')\n\treturn 0\n", "Llama models talk; Qwen models talk too.",
] * 20

SAMPLES = ["Hello world", " Hello  world ", "北京欢迎你 🙂", "tab\tand\nnewline", "", "a",
           "unseen glyphs: ℵ ∑ 🦙", "<s> in text </s>", "Straße café"]

# chat templates written for these tests in the three styles the cards' models use
CHATML = (
    "{% if tools %}<|im_start|>system\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    "<|im_end|>\n{% elif messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}")
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' "
    "+ message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")

MESSAGES = [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "What is 2+2? 北京"},
            {"role": "assistant", "content": "4."}, {"role": "user", "content": "And 3+3?"}]


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory) -> Path:
    """A SentencePiece BPE model with byte fallback, as Llama 2 and TinyLlama ship."""
    import sentencepiece as spm

    d = tmp_path_factory.mktemp("spm")
    (d / "corpus.txt").write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(d / "corpus.txt"), model_prefix=str(d / "tokenizer"), vocab_size=420,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, bos_id=1, eos_id=2,
        unk_id=0, pad_id=-1, add_dummy_prefix=True, minloglevel=2)
    (d / "tokenizer.vocab").unlink()
    (d / "corpus.txt").unlink()
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True,
        "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "chat_template": ZEPHYR}))
    return d


@pytest.fixture(scope="module")
def bbpe_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json with Qwen2's pre-tokenizer and ChatML special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    d = tmp_path_factory.mktemp("bbpe")
    tok = Tokenizer(models.BPE())
    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "bos_token": None, "chat_template": CHATML}))
    return d


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory, bbpe_dir) -> Path:
    """Llama 3's shape: byte-level BPE whose tokenizer.json post-processor adds the BOS."""
    from tokenizers import Tokenizer, processors

    d = tmp_path_factory.mktemp("llama3")
    tok = Tokenizer.from_file(str(bbpe_dir / "tokenizer.json"))
    tok.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                            "<|eot_id|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "chat_template": LLAMA3}))
    return d


DIRS = ["spm_dir", "bbpe_dir", "llama3_dir"]


@pytest.fixture(params=DIRS)
def pair(request):
    d = request.getfixturevalue(request.param)
    return load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d))


def test_sentencepiece_bpe_is_built_from_tokenizer_model(spm_dir):
    assert not (spm_dir / "tokenizer.json").exists()
    tok = load_tokenizer(spm_dir)
    assert tok.encode("Hello")[0] == tok.token_to_id("<s>") == 1  # add_bos_token


def test_ids_and_decoding_equal_transformers(pair):
    ours, ref = pair
    for text in SAMPLES + sorted(set(CORPUS)):
        assert ours.encode(text) == ref.encode(text), text
        assert ours.encode(text, add_special_tokens=False) == \
            ref.encode(text, add_special_tokens=False), text
        ids = ref.encode(text)
        assert ours.decode(ids) == ref.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == \
            ref.decode(ids, skip_special_tokens=True), text


def test_padded_batches_equal_transformers(pair):
    """Llama's tokenizer pads on the left by default (ready for generate), the others right."""
    ours, ref = pair
    assert ours.padding_side == ref.padding_side
    if ref.pad_token is None:  # Llama ships none: users pad with EOS
        ours.pad_token, ref.pad_token = ours.eos_token, ref.eos_token
    texts = ["a short one", "a rather longer prompt about llamas 北京", "x"]
    got = ours(texts, padding=True, return_tensors="pt")
    want = ref(texts, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask"):
        assert got[key].tolist() == want[key].tolist(), key


@pytest.mark.parametrize("name", DIRS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
@example(text="\uf900")  # a compatibility ideograph: NFC changes it
@example(text="e\u0301")  # a combining accent: NFC composes it
def test_any_text_encodes_like_transformers(request, name, text):
    d = request.getfixturevalue(name)
    ours, ref = _cached(d)
    assert ours.encode(text) == ref.encode(text)


_CACHE: dict[Path, tuple] = {}


def _cached(d: Path):
    if d not in _CACHE:
        _CACHE[d] = (load_tokenizer(d), transformers.AutoTokenizer.from_pretrained(str(d)))
    return _CACHE[d]


@pytest.mark.parametrize("gen", [True, False])
def test_chat_template_renders_like_transformers(pair, gen):
    ours, ref = pair
    for messages in (MESSAGES, MESSAGES[1:2]):
        want = ref.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
        got = ours.apply_chat_template(messages, add_generation_prompt=gen)
        assert got == want
        assert ours.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True) == \
            ref.encode(want, add_special_tokens=False)


def test_chat_template_with_tools_like_transformers(bbpe_dir):
    ours, ref = _cached(bbpe_dir)
    tools = [{"type": "function", "function": {"name": "weather", "description": "Météo",
                                               "parameters": {"type": "object"}}}]
    want = ref.apply_chat_template(MESSAGES[1:2], tools=tools, add_generation_prompt=True,
                                   tokenize=False)
    assert ours.apply_chat_template(MESSAGES[1:2], tools=tools, add_generation_prompt=True) == want
    assert "Météo" in want  # tojson keeps non-ASCII, as transformers' filter does


def test_template_errors_are_typed(llama3_dir, bbpe_dir, tmp_path):
    ours, _ = _cached(llama3_dir)
    with pytest.raises(ChatTemplateError, match="unknown role"):
        ours.apply_chat_template([{"role": "robot", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="role"):
        ours.apply_chat_template(["just a string"])  # type: ignore[list-item]
    with pytest.raises(ChatTemplateError, match="parse"):
        ours.apply_chat_template(MESSAGES, chat_template="{% for %}")
    assert isinstance(ChatTemplateError("x"), TokenizerError)
    # the sandbox: a template cannot reach Python internals
    with pytest.raises(ChatTemplateError):
        ours.apply_chat_template(MESSAGES, chat_template="{{ messages.__class__.__mro__ }}"
                                 "{{ ''.__class__.__subclasses__() }}")
    (tmp_path / "tokenizer.json").write_bytes((bbpe_dir / "tokenizer.json").read_bytes())
    with pytest.raises(ChatTemplateError, match="no chat_template"):
        load_tokenizer(tmp_path).apply_chat_template(MESSAGES)


def test_chat_template_jinja_file_is_found(bbpe_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_bytes((bbpe_dir / "tokenizer.json").read_bytes())
    (tmp_path / "chat_template.jinja").write_text(CHATML)
    assert load_tokenizer(tmp_path).apply_chat_template(MESSAGES[1:2]).startswith(
        "<|im_start|>system\nYou are a helpful assistant.")


def test_not_a_bpe_sentencepiece_model_is_refused(tmp_path):
    import sentencepiece as spm

    (tmp_path / "c.txt").write_text("\n".join(CORPUS))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "c.txt"), model_prefix=str(tmp_path / "tokenizer"),
                                   vocab_size=80, model_type="unigram", minloglevel=2)
    with pytest.raises(TokenizerError, match="not BPE"):
        load_tokenizer(tmp_path)
