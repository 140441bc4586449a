"""Tokenizers through the ``tokenizers`` library, with the call shape users know from
``transformers``: ``tok(["a", "b"])`` → padded ``input_ids`` / ``attention_mask`` tensors.

Built from ``tokenizer.json`` where present, else from vocabulary files: ``vocab.txt``
(WordPiece, BERT), ``vocab.json`` + ``merges.txt`` (byte-level BPE, GPT-2/RoBERTa) and
``spiece.model`` (SentencePiece Unigram, T5 — read with a small protobuf reader, so neither
``sentencepiece`` nor ``protobuf`` is needed). Families add builders for their vocabulary
formats through :func:`register_builder`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import TokenizerError

__all__ = ["Tokenizer", "load_tokenizer", "register_builder", "read_sentencepiece_model"]

logger = logging.getLogger(__name__)

# (files that must exist, builder(model_dir, tokenizer_config) -> tokenizers.Tokenizer)
_BUILDERS: list[tuple[tuple[str, ...], Callable[[Path, dict], Any]]] = []


def register_builder(required_files: tuple[str, ...]):
    """Register a builder that makes a ``tokenizers.Tokenizer`` from vocabulary files."""
    def deco(fn):
        _BUILDERS.append((required_files, fn))
        return fn
    return deco


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path} is not valid JSON ({err}); download the model again") from err
    return data if isinstance(data, dict) else {}


@register_builder(("vocab.txt",))
def _wordpiece(model_dir: Path, cfg: dict):
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
    names = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token", "sep_token",
             "cls_token")
    special = [_token_str(cfg.get(k)) for k in names]
    special += ["<|endoftext|>", "<s>", "</s>", "<pad>", "<unk>", "<mask>"]
    tok.add_special_tokens([t for t in dict.fromkeys(special) if t and t in vocab])
    return tok


def _token_str(value: Any) -> str | None:
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
    value: int | float | bytes
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
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


@register_builder(("spiece.model",))
def _sentencepiece_unigram(model_dir: Path, cfg: dict):
    """T5's tokenizer from ``spiece.model``, built as transformers' ``T5Tokenizer`` builds it."""
    from tokenizers import Tokenizer as _T, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    path = model_dir / "spiece.model"
    spm = read_sentencepiece_model(path)
    if spm["model_type"] != 1:
        raise TokenizerError(f"{path} is a SentencePiece model of type {spm['model_type']}; only "
                             "Unigram (type 1) is supported; provide a tokenizer.json instead")
    pieces = spm["pieces"]
    unk_id = next((i for i, (_, _, kind) in enumerate(pieces) if kind == 2), 0)
    tok = _T(Unigram([(p, s) for p, s, _ in pieces], unk_id=unk_id,
                     byte_fallback=spm["byte_fallback"]))
    if spm["precompiled_charsmap"]:
        tok.normalizer = normalizers.Precompiled(spm["precompiled_charsmap"])
    scheme = "always" if spm["add_dummy_prefix"] else "never"
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme, split=True)])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme, split=True)
    ids = {p: i for i, (p, _, _) in enumerate(pieces)}
    eos = _token_str(cfg.get("eos_token")) or "</s>"
    if eos in ids:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, ids[eos])])
    # control and unknown pieces are special; T5's sentinels follow the vocabulary, the
    # highest id being <extra_id_0>
    tok.add_special_tokens([p for p, _, kind in pieces if kind in (2, 3)])
    extra = cfg.get("extra_ids", 100)
    extra = extra if isinstance(extra, int) and extra >= 0 else 100
    sentinels = [f"<extra_id_{i}>" for i in range(extra - 1, -1, -1)]
    tok.add_special_tokens([t for t in sentinels if t not in ids])
    return tok


class Tokenizer:
    """A callable tokenizer.

    Example:
        >>> tok = load_tokenizer("./model")
        >>> batch = tok(["hello world", "hi"])      # dict of [2, seq] LongTensors
        >>> tok.decode(batch["input_ids"][0])
        'hello world'
    """

    def __init__(self, backend, *, model_max_length: int = 512, pad_token: str | None = None,
                 model_input_names: Sequence[str] = ("input_ids", "attention_mask",
                                                     "token_type_ids")):
        self.backend = backend
        self.model_input_names = tuple(model_input_names)
        self.backend.no_padding()
        self.backend.no_truncation()
        self.model_max_length = model_max_length
        self.pad_token = pad_token or self._first_present(("[PAD]", "<pad>", "<|endoftext|>"))
        self.pad_token_id = self.backend.token_to_id(self.pad_token) if self.pad_token else None

    def _first_present(self, tokens: Sequence[str]) -> str | None:
        return next((t for t in tokens if self.backend.token_to_id(t) is not None), None)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def convert_tokens_to_ids(self, tokens: str | list[str]):
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def tokenize(self, text: str) -> list[str]:
        return self.backend.encode(text, add_special_tokens=False).tokens

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        self._check_text(text)
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    @staticmethod
    def _check_text(text: Any) -> None:
        if not isinstance(text, str):
            raise TokenizerError(f"the tokenizer takes a string or a list of strings, got "
                                 f"{type(text).__name__}")

    def __call__(self, text: str | list[str], text_pair: str | list[str] | None = None, *,
                 padding: bool = True, truncation: bool = True, max_length: int | None = None,
                 add_special_tokens: bool = True, return_tensors: str | None = "pt") -> dict[str, Any]:
        """Tokenize one string or a batch.

        Returns:
            ``input_ids``, ``attention_mask`` and (for models that take them, e.g. BERT)
            ``token_type_ids``: ``[batch, seq]`` LongTensors padded to the longest (lists of
            lists with ``return_tensors=None``).
        """
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)) or not texts:
            raise TokenizerError("the tokenizer takes a string or a non-empty list of strings")
        for t in texts:
            self._check_text(t)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise TokenizerError(f"{len(texts)} texts but {len(pairs)} text pairs")
        limit = max_length or self.model_max_length
        if truncation:
            self.backend.enable_truncation(limit)
        try:
            inputs = list(zip(texts, pairs)) if pairs else list(texts)
            encs = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self.backend.no_truncation()
        width = max(len(e.ids) for e in encs) if padding else None
        pad = self.pad_token_id if self.pad_token_id is not None else 0
        out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        for e in encs:
            n = len(e.ids)
            fill = (width - n) if width else 0
            out["input_ids"].append(list(e.ids) + [pad] * fill)
            out["attention_mask"].append([1] * n + [0] * fill)
            out["token_type_ids"].append(list(e.type_ids) + [0] * fill)
        out = {k: v for k, v in out.items() if k in self.model_input_names or k == "input_ids"}
        if return_tensors == "pt":
            import torch

            if not padding and len({len(r) for r in out["input_ids"]}) > 1:
                raise TokenizerError("sequences differ in length: pass padding=True for tensors")
            return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        if single:
            return {k: v[0] for k, v in out.items()}
        return out

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch, *, skip_special_tokens: bool = True) -> list[str]:
        if hasattr(batch, "tolist"):
            batch = batch.tolist()
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in batch]


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The tokenizer of a model directory: ``tokenizer.json`` first, else vocabulary files.

    Raises:
        TokenizerError: no tokenizer file, or a corrupt one.
    """
    d = Path(model_dir)
    cfg = _read_json(d / "tokenizer_config.json")
    model_type = _read_json(d / "config.json").get("model_type")
    model_type = model_type.lower() if isinstance(model_type, str) else ""
    cfg = {**cfg, "_model_type": model_type}
    max_len = cfg.get("model_max_length")
    st = _read_json(d / "sentence_bert_config.json")  # sentence-transformers' own limit
    if isinstance(st.get("max_seq_length"), int):
        max_len = st["max_seq_length"]
    if not isinstance(max_len, int) or max_len > 1_000_000:
        max_len = 512
    if (d / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as _T

        try:
            backend = _T.from_file(str(d / "tokenizer.json"))
        except Exception as err:  # the Rust side raises plain Exception on bad files
            raise TokenizerError(f"{d / 'tokenizer.json'} is corrupt ({err}); download the model "
                                 "again") from err
    else:
        for required, builder in reversed(_BUILDERS):
            if all((d / f).is_file() for f in required):
                backend = builder(d, cfg)
                break
        else:
            wanted = ["tokenizer.json"] + [" + ".join(r) for r, _ in _BUILDERS]
            raise TokenizerError(f"no tokenizer files in {d}: looked for {', '.join(wanted)}; "
                                 "this model has no tokenizer, or its download is incomplete")
    pad = _token_str(cfg.get("pad_token"))
    names = cfg.get("model_input_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        names = (["input_ids", "attention_mask"] if model_type in _NO_TOKEN_TYPES
                 else ["input_ids", "attention_mask", "token_type_ids"])
    return Tokenizer(backend, model_max_length=max_len, pad_token=pad, model_input_names=names)


# families whose forward takes no token_type_ids (transformers' model_input_names)
_NO_TOKEN_TYPES = frozenset({"gpt2", "t5", "mt5"})
