"""Vocabulary files into a ``tokenizers.Tokenizer``: the builders for ``vocab.txt`` (WordPiece),
``vocab.json`` + ``merges.txt`` (byte-level BPE) and ``spiece.model`` (SentencePiece Unigram,
read with a small protobuf reader so neither ``sentencepiece`` nor ``protobuf`` is needed at run
time). Families add builders for their formats through :func:`register_builder`; the
:class:`~hubloader.text.tokenizer.Tokenizer` wraps whatever a builder returns.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import TokenizerError

__all__ = ["register_builder", "builders", "read_json", "read_sentencepiece_model",
           "sentencepiece_backend", "token_str", "wordpiece"]

logger = logging.getLogger(__name__)

# (files that must exist, builder(model_dir, tokenizer_config) -> tokenizers.Tokenizer)
_BUILDERS: list[tuple[tuple[str, ...], Callable[[Path, dict], Any]]] = []


def register_builder(required_files: tuple[str, ...]):
    """Register a builder that makes a ``tokenizers.Tokenizer`` from vocabulary files."""
    def deco(fn):
        _BUILDERS.append((required_files, fn))
        return fn
    return deco


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path} is not valid JSON ({err}); download the model again") from err
    return data if isinstance(data, dict) else {}


@register_builder(("vocab.txt",))
def wordpiece(model_dir: Path, cfg: dict):
    from tokenizers import Tokenizer as _T, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab_file = model_dir / "vocab.txt"
    try:
        lines = vocab_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise TokenizerError(f"{vocab_file} is not UTF-8 text ({err})") from err
    vocab = {tok: i for i, tok in enumerate(lines) if tok or i == 0}
    unk = cfg.get("unk_token", "[UNK]")
    cls_t, sep_t = cfg.get("cls_token", "[CLS]"), cfg.get("sep_token", "[SEP]")
    for t in (unk, cls_t, sep_t):
        if t not in vocab:
            raise TokenizerError(f"{vocab_file} lacks the special token {t!r}; the file is corrupt")
    tok = _T(WordPiece(vocab, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=cfg.get("tokenize_chinese_chars", True),
        strip_accents=cfg.get("strip_accents"), lowercase=cfg.get("do_lower_case", True))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls_t} $A:0 {sep_t}:0", pair=f"{cls_t} $A:0 {sep_t}:0 $B:1 {sep_t}:1",
        special_tokens=[(cls_t, vocab[cls_t]), (sep_t, vocab[sep_t])])
    tok.decoder = decoders.WordPiece()
    special = [t for t in (cfg.get("pad_token", "[PAD]"), unk, cls_t, sep_t,
                           cfg.get("mask_token", "[MASK]")) if t in vocab]
    tok.add_special_tokens(special)
    return tok


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerError(f"{path} is not UTF-8 text ({err}); download the model again") from err


@register_builder(("vocab.json", "merges.txt"))
def _byte_level_bpe(model_dir: Path, cfg: dict):
    from tokenizers import Tokenizer as _T, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab_file, merges_file = model_dir / "vocab.json", model_dir / "merges.txt"
    try:
        vocab = json.loads(_read_text(vocab_file))
    except json.JSONDecodeError as err:
        raise TokenizerError(f"{vocab_file} is not valid JSON ({err}); download the model again") from err
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerError(f"{vocab_file} must map tokens to integer ids")
    merges = []
    for n, line in enumerate(_read_text(merges_file).splitlines(), 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"{merges_file}:{n}: a merge is two tokens separated by one "
                                 f"space, got {line!r}; the file is corrupt")
        merges.append((parts[0], parts[1]))
    try:
        tok = _T(BPE(vocab, merges, fuse_unk=False))
    except Exception as err:  # tokenizers raises plain Exception on merges outside the vocab
        raise TokenizerError(f"{merges_file} does not fit {vocab_file} ({err})") from err
    prefix = bool(cfg.get("add_prefix_space", False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
    tok.decoder = decoders.ByteLevel()
    roberta = "roberta" in (cfg.get("_model_type") or "") or \
        str(cfg.get("tokenizer_class", "")).lower().startswith("roberta")
    if roberta and "<s>" in vocab and "</s>" in vocab:
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), add_prefix_space=prefix)
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    bos = token_str(cfg.get("bos_token"))
    if cfg.get("add_bos_token") is True and not roberta and bos in vocab:
        # OPT's GPT2Tokenizer: every sequence starts with the BOS token (</s> for OPT)
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, vocab[bos])])])
    names = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token",
             "cls_token")
    special = [token_str(cfg.get(k)) for k in names]
    special += ["<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>", "<mask>"]
    tok.add_special_tokens([t for t in dict.fromkeys(special) if t and t in vocab])
    return tok


def token_str(value: Any) -> str | None:
    if isinstance(value, dict):  # transformers writes AddedToken objects as dicts
        value = value.get("content")
    return value if isinstance(value, str) else None


# -- SentencePiece model files (protobuf), read without sentencepiece/protobuf ----------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)`` of one protobuf message."""
    import struct

    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack("<f", buf[pos:pos + 4])[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
        yield number, wire, value


def read_sentencepiece_model(path: Path) -> dict[str, Any]:
    """The parts of a SentencePiece ``ModelProto`` a tokenizer needs.

    Returns:
        ``pieces`` (``[(piece, score, type)]``), ``model_type`` (1 Unigram, 2 BPE...),
        ``byte_fallback``, ``precompiled_charsmap`` and ``add_dummy_prefix``.

    Raises:
        TokenizerError: the file is not a SentencePiece model.
    """
    out: dict[str, Any] = {"pieces": [], "model_type": 1, "byte_fallback": False,
                           "precompiled_charsmap": b"", "add_dummy_prefix": True}
    try:
        for number, wire, value in _fields(path.read_bytes()):
            if number == 1 and wire == 2:
                piece, score, kind = None, 0.0, 1
                for n, w, v in _fields(value):
                    if n == 1 and w == 2:
                        piece = v.decode("utf-8")
                    elif n == 2 and w == 5:
                        score = v
                    elif n == 3 and w == 0:
                        kind = v
                if piece is None:
                    raise ValueError("a piece without text")
                out["pieces"].append((piece, score, kind))
            elif number == 2 and wire == 2:  # TrainerSpec
                for n, w, v in _fields(value):
                    if n == 3 and w == 0:
                        out["model_type"] = v
                    elif n == 35 and w == 0:
                        out["byte_fallback"] = bool(v)
            elif number == 3 and wire == 2:  # NormalizerSpec
                for n, w, v in _fields(value):
                    if n == 2 and w == 2:
                        out["precompiled_charsmap"] = bytes(v)
                    elif n == 3 and w == 0:
                        out["add_dummy_prefix"] = bool(v)
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise TokenizerError(f"{path} is not a SentencePiece model ({err}); download the model "
                             "again") from err
    if not out["pieces"]:
        raise TokenizerError(f"{path} holds no vocabulary; it is not a SentencePiece model")
    return out


def sentencepiece_backend(path: Path, *, extra_pieces: Sequence[str] = ()):
    """A ``tokenizers.Tokenizer`` segmenting text as a SentencePiece Unigram model does (its
    normalizer, whitespace split and ``▁`` prefix), with ``extra_pieces`` after the vocabulary
    and no special tokens or templates.

    Returns:
        ``(backend, spm)``: the tokenizer and :func:`read_sentencepiece_model`'s dict.

    Raises:
        TokenizerError: not a SentencePiece model, or not a Unigram one.
    """
    from tokenizers import Tokenizer as _T, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram

    spm = read_sentencepiece_model(path)
    if spm["model_type"] != 1:
        raise TokenizerError(f"{path} is a SentencePiece model of type {spm['model_type']}; only "
                             "Unigram (type 1) is supported; provide a tokenizer.json instead")
    pieces = spm["pieces"]
    unk_id = next((i for i, (_, _, kind) in enumerate(pieces) if kind == 2), 0)
    tok = _T(Unigram([(p, s) for p, s, _ in pieces] + [(t, 0.0) for t in extra_pieces],
                     unk_id=unk_id, byte_fallback=spm["byte_fallback"]))
    if spm["precompiled_charsmap"]:
        tok.normalizer = normalizers.Precompiled(spm["precompiled_charsmap"])
    scheme = "always" if spm["add_dummy_prefix"] else "never"
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme, split=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme, split=True)
    return tok, spm


@register_builder(("spiece.model",))
def _sentencepiece_unigram(model_dir: Path, cfg: dict):
    """T5's tokenizer from ``spiece.model``, built as transformers' ``T5Tokenizer`` builds it."""
    from tokenizers import processors

    spm = read_sentencepiece_model(model_dir / "spiece.model")
    pieces = spm["pieces"]
    ids = {p: i for i, (p, _, _) in enumerate(pieces)}
    # T5's sentinels follow the vocabulary, the highest id being <extra_id_0>; they belong to
    # the model's vocabulary (transformers' vocab_size counts them) and are special tokens
    extra = cfg.get("extra_ids", 100)
    extra = extra if isinstance(extra, int) and extra >= 0 else 100
    sentinels = [t for t in (f"<extra_id_{i}>" for i in range(extra - 1, -1, -1)) if t not in ids]
    tok, _ = sentencepiece_backend(model_dir / "spiece.model", extra_pieces=sentinels)
    eos = token_str(cfg.get("eos_token")) or "</s>"
    if eos in ids:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, ids[eos])])
    # control and unknown pieces are special
    tok.add_special_tokens([p for p, _, kind in pieces if kind in (2, 3)] + sentinels)
    return tok


def builders() -> list[tuple[tuple[str, ...], Callable[[Path, dict], Any]]]:
    """The registered builders, the latest registration first (a family's builder for its own
    files wins over the generic ones)."""
    return list(reversed(_BUILDERS))
