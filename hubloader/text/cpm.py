"""CPM's tokenizer, as FlagAI's ``CPMTokenizer`` (``CPM-large-ch``) runs it: spaces and line
breaks become ``▂`` and ``▃``, then SentencePiece segments the text; decoding drops
SentencePiece's word marks and turns ``▂``/``▃`` back.

FlagAI also runs jieba first, but joins its words without a separator, which leaves the text
as it was: the ids do not depend on jieba, so hubloader does not need it. Built as one
``tokenizers`` pipeline (normalizer and decoder), the tokenizer saves to ``tokenizer.json``
like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["cpm_backend", "SPACE", "NEWLINE"]

SPACE, NEWLINE = "\u2582", "\u2583"


def cpm_backend(spiece_model: Path) -> Any:
    """The ``tokenizers.Tokenizer`` of CPM's ``spiece.model`` (a SentencePiece Unigram model).

    Raises:
        TokenizerError: not a SentencePiece Unigram model.
    """
    from tokenizers import decoders, normalizers

    from .vocab import sentencepiece_backend

    tok, spm = sentencepiece_backend(spiece_model)
    # CPM's mapping comes before SentencePiece's own normalization, as in FlagAI
    steps = [normalizers.Replace(" ", SPACE), normalizers.Replace("\n", NEWLINE)]
    if tok.normalizer is not None:
        steps.append(tok.normalizer)
    tok.normalizer = normalizers.Sequence(steps)
    unk = next((p for p, _, kind in spm["pieces"] if kind == 2), "<unk>")
    # SentencePiece writes an unknown piece as " \u2047 ", whose spaces FlagAI then drops
    tok.decoder = decoders.Sequence([decoders.Replace(unk, "\u2047"), decoders.Replace("\u2581", ""),
                                     decoders.Replace(SPACE, " "), decoders.Replace(NEWLINE, "\n")])
    tok.add_special_tokens([p for p, _, kind in spm["pieces"] if kind in (2, 3)])
    return tok
