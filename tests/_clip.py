"""Test helpers for the CLIP family: a tiny CLIP vocabulary learned with CLIP's own
pre-tokenization (so its merges fit OpenAI's derived vocabulary), written both as transformers'
``vocab.json`` + ``merges.txt`` and as OpenAI's gzipped merges file; a tiny XLM-R
SentencePiece model; small random images."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import numpy as np

from hubloader.text.clip import _CLIP_SPLIT, _byte_symbols

# English, Chinese, Arabic and emoji text (the languages the tokenizers must agree on)
TEXTS = ["A photo of a cat, sitting on the mat!", "北京是中国的首都", "مرحبا بالعالم، كيف حالك؟",
         "I ❤️ pizza 🍕🍕 and 😀 emoji", "don't  stop   it's 42 dogs", "a photo of a dog"]
CORPUS = TEXTS * 30 + ["the quick brown fox jumps over the lazy dog"] * 30


@functools.lru_cache(maxsize=None)
def clip_merges() -> tuple[tuple[str, str], ...]:
    """Merges learned on ``CORPUS`` whose parts are symbols of OpenAI's derived vocabulary
    (learned once: the trainer breaks ties differently from run to run)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    t = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                         normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    symbols = _byte_symbols()
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=700, initial_alphabet=symbols,
                                                      end_of_word_suffix="</w>",
                                                      show_progress=False))
    learned = json.loads(t.to_str())["model"]["merges"]
    known = set(symbols) | {s + "</w>" for s in symbols}
    kept = []
    for merge in learned:
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        if a in known and b in known and a + b not in known:
            kept.append((a, b))
            known.add(a + b)
    return tuple(kept)


def write_clip_vocab(d: Path, *, transformers_files: bool = True, openai_file: bool = True) -> int:
    """Write the vocabulary into ``d``; returns its size."""
    d.mkdir(parents=True, exist_ok=True)
    merges = clip_merges()
    symbols = _byte_symbols()
    words = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    words += ["<|startoftext|>", "<|endoftext|>"]
    lines = [f"{a} {b}" for a, b in merges]
    if transformers_files:
        (d / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(words)}))
        (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
        (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer"}))
    if openai_file:  # OpenAI's file has no final newline (its reader keeps an empty last line)
        with gzip.open(d / "bpe_simple_vocab_16e6.txt.gz", "wt", encoding="utf-8") as fh:
            fh.write("#version: 0.2\n" + "\n".join(lines))
    return len(words)


def write_xlmr_vocab(d: Path) -> None:
    """A tiny SentencePiece Unigram model as ``sentencepiece.bpe.model`` (XLM-R's file)."""
    import sentencepiece as spm

    d.mkdir(parents=True, exist_ok=True)
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(d / "sentencepiece.bpe"),
                                   vocab_size=150, hard_vocab_limit=False, model_type="unigram",
                                   character_coverage=1.0, minloglevel=2)
    corpus.unlink()
    (d / "sentencepiece.bpe.vocab").unlink()
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMRobertaTokenizer"}))


CLIP_PREPROCESSOR = {"crop_size": 32, "do_center_crop": True, "do_normalize": True,
                     "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
                     "image_mean": [0.48145466, 0.4578275, 0.40821073],
                     "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
                     "size": 32}


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path
