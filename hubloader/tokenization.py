"""Tokenizers through the ``tokenizers`` library, with the call shape users know from
``transformers``: ``tok(["a", "b"])`` → padded ``input_ids`` / ``attention_mask`` tensors.

Built from ``tokenizer.json`` where present, else from vocabulary files (``vocab.txt`` for
WordPiece). Families add builders for their vocabulary formats through :func:`register_builder`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import TokenizerError

__all__ = ["Tokenizer", "load_tokenizer", "register_builder"]

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


class Tokenizer:
    """A callable tokenizer.

    Example:
        >>> tok = load_tokenizer("./model")
        >>> batch = tok(["hello world", "hi"])      # dict of [2, seq] LongTensors
        >>> tok.decode(batch["input_ids"][0])
        'hello world'
    """

    def __init__(self, backend, *, model_max_length: int = 512, pad_token: str | None = None):
        self.backend = backend
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
            ``input_ids``, ``attention_mask`` and ``token_type_ids``: ``[batch, seq]`` LongTensors
            padded to the longest (lists of lists with ``return_tensors=None``).
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
    pad = cfg.get("pad_token") if isinstance(cfg.get("pad_token"), str) else None
    return Tokenizer(backend, model_max_length=max_len, pad_token=pad)
