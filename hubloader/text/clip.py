"""CLIP's byte-level BPE (with ``</w>`` word ends) and XLM-R's SentencePiece vocabulary as
``tokenizers`` backends, built as transformers' ``CLIPTokenizer`` and ``XLMRobertaTokenizer``
build them, registered with :func:`hubloader.text.vocab.register_builder`.

- ``vocab.json`` + ``merges.txt`` of a CLIP model (``tokenizer_class`` CLIPTokenizer, or a
  CLIP ``model_type``): transformers' layout.
- ``bpe_simple_vocab_16e6.txt.gz``: OpenAI's merges file, which FlagAI's CLIP and EVA-CLIP
  folders carry; the vocabulary is derived from it as OpenAI's tokenizer derives it (the 256
  byte symbols, the same with ``</w>``, every merge, then the two special tokens), so ids equal
  FlagAI's ``ClipTokenizer``'s.
- ``sentencepiece.bpe.model``: XLM-R's (AltCLIP's) vocabulary with fairseq's id layout
  (``<s>`` ``<pad>`` ``</s>`` ``<unk>`` first, ``<mask>`` last).

OpenAI's tokenizer also runs ``ftfy`` and HTML unescaping first; like transformers' fast
tokenizer, this one does not (text that needs them differs).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from .vocab import _byte_level_bpe, read_sentencepiece_model, register_builder, \
    sentencepiece_backend

__all__ = ["clip_backend", "is_clip"]

OPENAI_MERGES = "bpe_simple_vocab_16e6.txt.gz"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# the part of OpenAI's merges file its tokenizer uses (49152 symbols less bytes and specials)
_OPENAI_MERGE_COUNT = 49152 - 256 - 2
_CLIP_SPLIT = (r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|"""
               r"""[\p{N}]|[^\s\p{L}\p{N}]+""")


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in OpenAI's order."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    codes, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            codes.append(256 + n)
            n += 1
    return [chr(c) for c in codes]


def clip_backend(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Any:
    """A ``tokenizers.Tokenizer`` that is transformers' ``CLIPTokenizer`` for ``vocab`` and
    ``merges``: NFC, whitespace runs to one space, lower case; CLIP's split; byte-level BPE
    with ``</w>`` word ends; ``<|startoftext|> … <|endoftext|>`` around each text."""
    from tokenizers import Regex, Tokenizer as _T, decoders, normalizers, pre_tokenizers, \
        processors
    from tokenizers.models import BPE

    for special in (BOS, EOS):
        if special not in vocab:
            raise TokenizerError(f"a CLIP vocabulary needs {special!r}; the files are corrupt")
    try:
        tok = _T(BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                     fuse_unk=False, unk_token=EOS))
    except Exception as err:  # tokenizers raises plain Exception on merges outside the vocab
        raise TokenizerError(f"the CLIP merges do not fit the vocabulary ({err})") from err
    tok.normalizer = normalizers.Sequence([normalizers.NFC(),
                                           normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " "),
                                     decoders.Strip(" ", 0, 1)])
    tok.post_processor = processors.RobertaProcessing((EOS, vocab[EOS]), (BOS, vocab[BOS]),
                                                      trim_offsets=False,
                                                      add_prefix_space=False)
    tok.add_special_tokens([BOS, EOS])
    return tok


def is_clip(cfg: dict[str, Any]) -> bool:
    """Whether a tokenizer config (with the builder's ``_model_type``) is CLIP's."""
    cls = str(cfg.get("tokenizer_class") or "").lower()
    return cls.startswith("clip") or (not cls and cfg.get("_model_type") in ("clip", "eva_clip"))


@register_builder(("vocab.json", "merges.txt"))
def _vocab_and_merges(model_dir: Path, cfg: dict) -> Any:
    """CLIP's files when the config says CLIP; GPT-2's byte-level BPE otherwise."""
    if not is_clip(cfg):
        return _byte_level_bpe(model_dir, cfg)
    import json

    try:
        vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))
        lines = (model_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerError(f"{model_dir}: unreadable CLIP vocabulary ({err}); download the "
                             "model again") from err
    merges = [tuple(line.split(" ")) for n, line in enumerate(lines)
              if line.strip() and not (n == 0 and line.startswith("#version"))]
    if not isinstance(vocab, dict) or any(len(m) != 2 for m in merges):
        raise TokenizerError(f"{model_dir}: vocab.json must map tokens to ids and merges.txt "
                             "hold two tokens a line; download the model again")
    return clip_backend(vocab, [(a, b) for a, b in merges])


@register_builder((OPENAI_MERGES,))
def _openai_merges(model_dir: Path, cfg: dict) -> Any:
    path = model_dir / OPENAI_MERGES
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path} is not a gzipped merges file ({err}); download the model "
                             "again") from err
    merges = [tuple(line.split()) for line in lines[1:_OPENAI_MERGE_COUNT + 1] if line.strip()]
    if any(len(m) != 2 for m in merges):
        raise TokenizerError(f"{path}: a merge is two symbols separated by a space; the file "
                             "is corrupt")
    symbols = _byte_symbols()
    words = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {w: i for i, w in enumerate(words)}
    if len(vocab) != len(words):
        raise TokenizerError(f"{path}: two merges make the same symbol; the file is corrupt")
    return clip_backend(vocab, [(a, b) for a, b in merges])


@register_builder(("sentencepiece.bpe.model",))
def _xlm_roberta(model_dir: Path, cfg: dict) -> Any:
    """XLM-R's vocabulary: fairseq's four specials, the SentencePiece pieces after its own
    three control pieces (each id shifted by one), ``<mask>`` last; ``<s> … </s>`` around
    each text, ``<s> A </s></s> B </s>`` around a pair."""
    from tokenizers import Tokenizer as _T, processors
    from tokenizers.models import Unigram

    path = model_dir / "sentencepiece.bpe.model"
    spm = read_sentencepiece_model(path)
    base, _ = sentencepiece_backend(path)  # normalizer, pre-tokenizer, decoder
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(p, s) for p, s, _ in spm["pieces"][3:]] + [("<mask>", 0.0)]
    tok = _T(Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = base.normalizer, base.pre_tokenizer, \
        base.decoder
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return tok
