"""Llama 2's tokenizer from ``tokenizer.model`` (a SentencePiece BPE model), built the way
transformers' ``LlamaTokenizer`` builds it, so the ids are the same.

The model file is read by :func:`hubloader.text.vocab.read_sentencepiece_model` (no
``sentencepiece`` or ``protobuf`` needed). SentencePiece stores no merges: they are derived from
the vocabulary, every split of a piece into two pieces being a merge ranked by the piece's id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TokenizerError
from .vocab import read_sentencepiece_model, register_builder, token_str as _token_str

__all__ = ["merges_from_vocab", "build_sentencepiece_bpe"]


def merges_from_vocab(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece BPE vocabulary: each way to cut a piece into two
    pieces, ordered by the piece's id (then the left part's id), as transformers derives them."""
    merges: list[tuple[str, str, int]] = []
    for piece, rank in vocab.items():
        local = [(piece[:i], piece[i:], rank) for i in range(1, len(piece))
                 if piece[:i] in vocab and piece[i:] in vocab]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])))
    return [(left, right) for left, right, _ in merges]


@register_builder(("tokenizer.model",))
def build_sentencepiece_bpe(model_dir: Path, cfg: dict[str, Any]):
    """The ``tokenizers.Tokenizer`` of a SentencePiece BPE ``tokenizer.model`` (Llama 2 and kin).

    ``tokenizer_config.json`` decides ``add_bos_token`` (default true), ``add_eos_token``
    (default false), ``add_prefix_space`` (default true) and ``legacy`` (default false: only
    the start of the text gets the ``▁`` prefix, not the text after each special token).

    Raises:
        TokenizerError: the file is not a SentencePiece BPE model.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    path = model_dir / "tokenizer.model"
    spm = read_sentencepiece_model(path)
    if spm["model_type"] != 2:
        raise TokenizerError(f"{path} is a SentencePiece model of type {spm['model_type']}, not "
                             "BPE (type 2); provide a tokenizer.json instead")
    vocab = {piece: i for i, (piece, _, _) in enumerate(spm["pieces"])}
    tok = Tokenizer(BPE(vocab=vocab, merges=merges_from_vocab(vocab), fuse_unk=True,
                        byte_fallback=True, dropout=None))
    prefix = cfg.get("add_prefix_space")
    prefix = True if prefix is None else bool(prefix)
    scheme = ("first" if not cfg.get("legacy", False) else "always") if prefix else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme,
                                                 split=False)
    steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    bos = _token_str(cfg.get("bos_token")) or "<s>"
    eos = _token_str(cfg.get("eos_token")) or "</s>"
    unk = _token_str(cfg.get("unk_token")) or "<unk>"
    # control pieces are special tokens, user-defined pieces plain added tokens
    tok.add_tokens([AddedToken(p, special=kind == 3, normalized=False)
                    for p, _, kind in spm["pieces"] if kind in (3, 4)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in (bos, eos, unk) if t in vocab])
    add_bos = cfg.get("add_bos_token", True) and bos in vocab
    add_eos = cfg.get("add_eos_token", False) and eos in vocab
    single = f"{bos + ':0 ' if add_bos else ''}$A:0{' ' + eos + ':0' if add_eos else ''}"
    pair = f"{single}{' ' + bos + ':1' if add_bos else ''} $B:1{' ' + eos + ':1' if add_eos else ''}"
    special = ([(bos, vocab[bos])] if add_bos else []) + ([(eos, vocab[eos])] if add_eos else [])
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                       special_tokens=special)
    return tok
