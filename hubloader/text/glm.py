"""GLM's tokenizers: a vocabulary (SentencePiece ``cog-pretrain.model`` for GLM-large-ch and
GLM-10b-ch, WordPiece ``vocab.txt`` for GLM-large-en) plus GLM's command tokens (``[CLS]``,
``[MASK]``, ``[sMASK]``, ``[gMASK]``, ``<|startofpiece|>``, ``<|endofpiece|>``,
``<|endoftext|>``...) at the ids FlagAI's ``GLMLargeChTokenizer`` and
``GLMLargeEnWordPieceTokenizer`` give them, with FlagAI's method names (``EncodeAsIds``,
``DecodeIds``, ``get_command_id``, ``encode_plus``...) on top of the tokenizer interface every
hubloader tokenizer shares (:class:`~hubloader.text.base.BaseTokenizer`).

Command tokens lie outside the vocabulary files and, in the SentencePiece layout, leave a gap
(no token has id ``N + 5``), so they cannot be added tokens of a ``tokenizers`` model (those
are numbered without gaps): text is split on them first, as FlagAI does, and only the pieces
between them go through the vocabulary.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import TokenizerError
from ..files import atomic_write_json, temp_name
from .base import SPECIAL_TOKENS_ATTRIBUTES, BaseTokenizer, BatchEncoding
from .vocab import read_json, sentencepiece_backend, wordpiece

__all__ = ["CommandToken", "GLMTokenizer", "GLM_SP_MODEL", "load_glm_tokenizer"]

logger = logging.getLogger(__name__)

GLM_SP_MODEL = "cog-pretrain.model"


@dataclass(frozen=True)
class CommandToken:
    """A special token: FlagAI's name (``"gMASK"``), its text, its id; ``lstrip`` drops the
    whitespace before it."""

    name: str
    token: str
    Id: int
    lstrip: bool = False


def _sentencepiece_commands(n: int, *, fix_command_token: bool) -> list[CommandToken]:
    """GLMLargeChTokenizer's layout over a vocabulary of ``n`` pieces."""
    cmds = [CommandToken("pad", "<|endoftext|>", n), CommandToken("eos", "<|endoftext|>", n),
            CommandToken("sep", "[SEP]", n + 1), CommandToken("cls", "[CLS]", n + 2),
            CommandToken("mask", "[MASK]", n + 3, lstrip=True),
            CommandToken("unk", "[UNK]", n + 4),
            CommandToken("sop", "<|startofpiece|>", n + 6),
            CommandToken("eop", "<|endofpiece|>", n + 7)]
    if fix_command_token:  # THUDM's ids: [sMASK] then [gMASK] after a free slot
        cmds += [CommandToken("sMASK", "[sMASK]", n + 8, lstrip=True),
                 CommandToken("gMASK", "[gMASK]", n + 9, lstrip=True)]
    else:
        cmds += [CommandToken("gMASK", "[gMASK]", n + 7, lstrip=True),
                 CommandToken("sMASK", "[sMASK]", n + 8, lstrip=True)]
    return cmds


def _wordpiece_commands(vocab: dict[str, int]) -> list[CommandToken]:
    """GLMLargeEnWordPieceTokenizer's layout: BERT's specials from the vocabulary, GLM's after it."""
    missing = [t for t in ("[PAD]", "[CLS]", "[MASK]", "[UNK]", "[SEP]") if t not in vocab]
    if missing:
        raise TokenizerError(f"vocab.txt lacks {', '.join(missing)}; it is not GLM-large-en's "
                             "WordPiece vocabulary")
    v = len(vocab)
    return [CommandToken("pad", "[PAD]", vocab["[PAD]"]), CommandToken("cls", "[CLS]", vocab["[CLS]"]),
            CommandToken("mask", "[MASK]", vocab["[MASK]"]),
            CommandToken("unk", "[UNK]", vocab["[UNK]"]), CommandToken("sep", "[SEP]", vocab["[SEP]"]),
            CommandToken("eos", "[PAD]", vocab["[PAD]"]),
            CommandToken("sop", "<|startofpiece|>", v), CommandToken("eop", "<|endofpiece|>", v + 1),
            CommandToken("gMASK", "[gMASK]", v + 2), CommandToken("sMASK", "[sMASK]", v + 3)]


# the special-token attributes in GLM's command tokens (FlagAI's names)
_SPECIAL_COMMANDS = {"eos_token": "eos", "unk_token": "unk", "sep_token": "sep",
                     "pad_token": "pad", "cls_token": "cls", "mask_token": "mask"}


class GLMTokenizer(BaseTokenizer):
    """GLM's tokenizer: transformers' surface plus FlagAI's methods.

    Calling it (``tok(["text", ...])``) gives what GLM models take: ``input_ids``
    (``[CLS] text <|endoftext|>``), ``position_ids`` (``[batch, 2, seq]``) and
    ``attention_mask`` in FlagAI's form, each row's separation index (its length without
    padding: the text is read bidirectionally). Padding, truncation (the text is cut, the
    special tokens kept), ``max_length`` and ``return_tensors`` mean what they mean in
    transformers; the defaults are GLM's data loaders': pad to the longest, truncate to
    ``model_max_length``, tensors. ``decode`` drops the command tokens unless told otherwise.

    Example:
        >>> tok = load_glm_tokenizer("./checkpoints/GLM-large-ch")
        >>> ids = tok.EncodeAsIds("北京是[MASK]的首都")
        >>> tok.get_command_id("gMASK"), tok.get_command_id("sop")
        (50009, 50006)
        >>> tok(["北京", "上海是"], padding="max_length", max_length=8, return_tensors=None)
    """

    def __init__(self, backend: Any, commands: Sequence[CommandToken], *, num_text_tokens: int,
                 kind: str, model_max_length: int = 1024, vocab_file: Path | None = None,
                 fix_command_token: bool | None = None):
        self.backend = backend
        self.kind = kind
        self.num_text_tokens = num_text_tokens
        self.vocab_file = vocab_file
        self.fix_command_token = fix_command_token
        self._command_tokens = list(commands)
        self.command_name_map = {c.name: c for c in self._command_tokens}
        self.command_token_map = {c.token: c for c in self._command_tokens}
        self.command_id_map = {c.Id: c for c in self._command_tokens}
        self.num_tokens = max(max(self.command_id_map) + 1, num_text_tokens)
        self.model_max_length = model_max_length
        self.padding_side, self.truncation_side = "right", "right"
        self.model_input_names = ["input_ids", "position_ids", "attention_mask"]
        self._special: dict[str, str | None] = dict.fromkeys(SPECIAL_TOKENS_ATTRIBUTES)
        self._special.update({attr: self.command_name_map[name].token
                              for attr, name in _SPECIAL_COMMANDS.items()
                              if name in self.command_name_map})

    # -- FlagAI's names -----------------------------------------------------------------------
    def get_command_id(self, name: str) -> int:
        """The id of a command token by FlagAI's name (``cls``, ``mask``, ``sMASK``, ``gMASK``,
        ``sop``, ``eop``, ``eos``, ``pad``, ``sep``, ``unk``).

        Raises:
            TokenizerError: no such command token.
        """
        try:
            return self.command_name_map[name].Id
        except KeyError:
            raise TokenizerError(f"GLM has no command token {name!r}; known: "
                                 f"{', '.join(self.command_name_map)}") from None

    def CommandTokenIds(self, exception: Sequence[str] | None = None) -> list[int]:  # noqa: N802
        return [c.Id for c in self._command_tokens if not exception or c.name not in exception]

    def _encode_text(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def _split(self, text: str) -> list[str]:
        """FlagAI's split on command tokens, in their order (whitespace before an ``lstrip``
        token is dropped)."""
        parts = [text]
        for cmd in self._command_tokens:
            out: list[str] = []
            for part in parts:
                if part in self.command_token_map:
                    out.append(part)
                    continue
                pieces = part.split(cmd.token)
                for i, sub in enumerate(pieces):
                    if cmd.lstrip and i < len(pieces) - 1:
                        sub = sub.rstrip()
                    if i == 0 and not sub:
                        out.append(cmd.token)
                    elif i == len(pieces) - 1:
                        if sub:
                            out.append(sub)
                    else:
                        if sub:
                            out.append(sub)
                        out.append(cmd.token)
            parts = out
        return parts

    def EncodeAsIds(self, text: str) -> list[int]:  # noqa: N802
        """Text → ids, command tokens written out (``"[CLS] 北京 [gMASK]"``) included."""
        if not isinstance(text, str):
            raise TokenizerError(f"EncodeAsIds takes a string, got {type(text).__name__}")
        if not text.strip():
            return []
        ids: list[int] = []
        for part in self._split(text):
            cmd = self.command_token_map.get(part)
            ids.extend([cmd.Id] if cmd is not None else self._encode_text(part))
        return ids

    def IdToToken(self, Id: int) -> str:  # noqa: N802,N803
        if Id in self.command_id_map:
            return self.command_id_map[Id].token
        token = self.backend.id_to_token(Id)
        if token is None:
            raise TokenizerError(f"id {Id} is outside GLM's vocabulary of {self.num_tokens}")
        return token

    def TokenToId(self, token: str) -> int:  # noqa: N802
        if token in self.command_token_map:
            return self.command_token_map[token].Id
        found = self.backend.token_to_id(token)
        if found is None:
            raise TokenizerError(f"{token!r} is not in GLM's vocabulary")
        return found

    def DecodeIds(self, ids: Sequence[int]) -> str:  # noqa: N802
        """Ids → text; command tokens are written out (WordPiece: tokens joined by spaces,
        ``##`` pieces glued on, as FlagAI writes them)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if self.kind == "wordpiece":
            words: list[str] = []
            for i in ids:
                tok = self.IdToToken(int(i))
                if tok.startswith("##") and words:
                    words[-1] += tok[2:]
                else:
                    words.append(tok)
            return " ".join(words)
        out, run = [], []
        for i in ids:
            cmd = self.command_id_map.get(int(i))
            if cmd is None:
                run.append(int(i))
                continue
            if run:
                out.append(self.backend.decode(run, skip_special_tokens=False))
                run = []
            out.append(cmd.token)
        if run:
            out.append(self.backend.decode(run, skip_special_tokens=False))
        return "".join(out).strip()

    def encode_plus(self, source_text: str, second_text: str | None = None,
                    target_text: str | None = None, truncation: bool = True,
                    max_length: int | None = None) -> dict[str, Any]:
        """FlagAI's GLM seq2seq sample: ``<|startofpiece|> source [SEP]``, then with
        ``target_text`` the target and ``<|endofpiece|>``, shifted into inputs and targets.

        Returns:
            ``input_ids``, ``position_ids`` (``[2, seq]``), ``attention_mask`` (the separation
            index), ``loss_mask`` and, with a target, ``target_ids``.
        """
        if second_text is not None:
            raise TokenizerError("GLM's seq2seq sample has no second text: pass the target as "
                                 "target_text=")
        sop, eop, sep = (self.get_command_id(n) for n in ("sop", "eop", "sep"))
        source = self.EncodeAsIds(source_text)
        if truncation and max_length:
            source = source[:max(0, max_length - 2)]
        source = [sop] + source + [sep]
        n = len(source)
        sample: dict[str, Any] = {"attention_mask": 0}
        if not target_text:
            sample.update(input_ids=source, position_ids=[list(range(n)), [0] * n],
                          loss_mask=[0] * n)
            return sample
        target = self.EncodeAsIds(target_text)
        if max_length:
            keep = min(max_length - n, len(target))
            target = target[:keep] + [self.get_command_id("pad")] * max(0, max_length - n - keep)
        target = target + [eop]
        tokens = source + target
        positions = list(range(len(tokens)))
        sample.update(input_ids=tokens[:-1], target_ids=tokens[1:],
                      loss_mask=([0] * n + [1] * len(target))[:-1],
                      position_ids=[positions[:-1], [0] * (len(tokens) - 1)])
        return sample

    # -- transformers' surface ----------------------------------------------------------------
    def token_to_id(self, token: str) -> int | None:
        cmd = self.command_token_map.get(token)
        return cmd.Id if cmd is not None else self.backend.token_to_id(token)

    def id_to_token(self, id_: int) -> str | None:
        cmd = self.command_id_map.get(id_)
        return cmd.token if cmd is not None else self.backend.id_to_token(id_)

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self.backend.get_vocab(with_added_tokens=True))
        vocab.update({c.token: c.Id for c in self._command_tokens if c.token not in vocab})
        return vocab

    def __len__(self) -> int:
        return self.num_tokens

    @property
    def vocab_size(self) -> int:
        return self.num_tokens

    @property
    def all_special_tokens(self) -> list[str]:
        """The special-token attributes' tokens, then GLM's other command tokens."""
        return list(dict.fromkeys([*self.special_tokens_map.values(),
                                   *(c.token for c in self._command_tokens)]))

    def tokenize(self, text: str, text_pair: str | None = None, *,
                 add_special_tokens: bool = False) -> list[str]:
        if text_pair is not None:
            raise TokenizerError(_NO_PAIRS)
        ids = self.encode(text, add_special_tokens=add_special_tokens)
        return [self.IdToToken(i) for i in ids]

    def _with_specials(self, ids: list[int]) -> list[int]:
        return [self.get_command_id("cls")] + ids + [self.get_command_id("eos")]

    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = True,
                 truncation: bool | str | None = True, max_length: int | None = None,
                 stride: int = 0, pad_to_multiple_of: int | None = None,
                 padding_side: str | None = None, return_tensors: str | None = "pt",
                 return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None,
                 return_position_ids: bool | None = None) -> BatchEncoding:
        """Tokenize texts for a GLM model (see the class docstring): transformers' arguments,
        GLM's defaults.

        Raises:
            TokenizerError: not text, a bad argument, left padding (GLM's separation index and
                position ids count from the left), or a text pair (GLM's tasks join pairs with
                their own template: build it and pass one text).
        """
        if text_pair is not None:
            raise TokenizerError(_NO_PAIRS)
        single, texts, _ = self._texts(text, None)
        self._check_return_tensors(return_tensors)
        if (padding_side or self.padding_side) != "right":
            raise TokenizerError("GLM's tokenizer pads on the right: its attention_mask is each "
                                 "row's separation index and its position ids count from the "
                                 "first token")
        pad, trunc, limit = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        n_special = 2 if add_special_tokens else 0
        rows = []
        for t in texts:
            ids = self.EncodeAsIds(t)
            if trunc is not None and limit is not None and len(ids) + n_special > limit:
                if limit < n_special:
                    raise TokenizerError(f"max_length={limit} leaves no room for the text between "
                                         f"GLM's {n_special} special tokens")
                keep = limit - n_special
                ids = ids[:keep] if self.truncation_side == "right" else ids[len(ids) - keep:]
            rows.append(self._with_specials(ids) if add_special_tokens else ids)
        lengths = [len(r) for r in rows]
        width = max(lengths)
        if pad == "max_length" and limit is not None:
            width = max(width, limit)
        if pad is not None and pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        if pad is not None:
            pad_id = self.pad_token_id
            assert pad_id is not None  # _strategies refuses to pad without one
            rows = [r + [pad_id] * (width - len(r)) for r in rows]
        out: dict[str, list[Any]] = {"input_ids": rows}
        if return_token_type_ids:
            out["token_type_ids"] = [[0] * len(r) for r in rows]
        if return_position_ids is not False:
            out["position_ids"] = [[list(range(len(r))), [0] * len(r)] for r in rows]
        if return_attention_mask is not False:
            out["attention_mask"] = lengths
        return self._encoding(out, single=single, return_tensors=return_tensors)

    def decode(self, token_ids: Any, *, skip_special_tokens: bool = True,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """The text of a list (or tensor) of ids; GLM's command tokens dropped unless
        ``skip_special_tokens=False`` (then written out, as FlagAI's ``DecodeIds``)."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids
        ids = [ids] if isinstance(ids, int) else list(ids)
        if ids and isinstance(ids[0], list):
            raise TokenizerError("decode takes one sequence of ids; use batch_decode for a batch")
        if skip_special_tokens:
            ids = [i for i in ids if int(i) not in self.command_id_map]
        return self.DecodeIds(ids)

    def save_pretrained(self, save_directory: str | Path) -> list[Path]:
        """Write GLM's vocabulary file (as it was read) and ``tokenizer_config.json`` (the
        command-token layout and ``model_max_length``), which :func:`load_glm_tokenizer`
        reads back to the same ids.

        Raises:
            TokenizerError: the tokenizer was not read from a file.
        """
        if self.vocab_file is None:
            raise TokenizerError("this GLM tokenizer was not read from a vocabulary file, so "
                                 "there is nothing to save; build it with load_glm_tokenizer")
        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        files = [d / self.vocab_file.name, d / "tokenizer_config.json"]
        if self.vocab_file.resolve() != files[0].resolve():
            part = temp_name(files[0])  # own temp file, then an atomic rename
            try:
                shutil.copyfile(self.vocab_file, part)
                os.replace(part, files[0])
            finally:
                part.unlink(missing_ok=True)
        cfg: dict[str, Any] = {"tokenizer_class": "GLMTokenizer",
                               "model_max_length": self.model_max_length}
        if self.fix_command_token is not None:
            cfg["fix_command_token"] = self.fix_command_token
        atomic_write_json(files[1], cfg, indent=2)
        return files


_NO_PAIRS = ("GLM's tokenizer takes single texts: join a pair with your task's template "
             "(e.g. 'a [SEP] b') and pass one text")


def load_glm_tokenizer(model_dir: str | Path, *,
                       fix_command_token: bool | None = None) -> GLMTokenizer:
    """GLM's tokenizer from a model directory: ``cog-pretrain.model`` (or ``spiece.model``)
    for the Chinese models, ``vocab.txt`` for GLM-large-en.

    Args:
        fix_command_token: the SentencePiece layout's ``[sMASK]``/``[gMASK]`` ids as THUDM
            trained them (``True``: FlagAI's ``GLMLargeChTokenizer``), or as FlagAI's unified
            ``Tokenizer`` gives them (``False``: ``[gMASK]`` shares ``<|endofpiece|>``'s id).
            Default: as the FlagAI tokenizer that reads the file does: ``True`` for
            ``cog-pretrain.model``, ``False`` for ``spiece.model``.

    Raises:
        TokenizerError: no GLM vocabulary file, or a corrupt one.
    """
    d = Path(model_dir)
    cfg = read_json(d / "tokenizer_config.json")  # what save_pretrained wrote, if anything
    if fix_command_token is None and isinstance(cfg.get("fix_command_token"), bool):
        fix_command_token = cfg["fix_command_token"]
    limit = cfg.get("model_max_length")
    extra: dict[str, Any] = {} if isinstance(limit, bool) or not isinstance(limit, int) \
        else {"model_max_length": limit}
    for name in (GLM_SP_MODEL, "spiece.model"):
        if (d / name).is_file():
            backend, spm = sentencepiece_backend(d / name)
            n = len(spm["pieces"])
            fix = fix_command_token if fix_command_token is not None else name == GLM_SP_MODEL
            return GLMTokenizer(backend, _sentencepiece_commands(n, fix_command_token=fix),
                                num_text_tokens=n, kind="sentencepiece", vocab_file=d / name,
                                fix_command_token=fix, **extra)
    if (d / "vocab.txt").is_file():
        backend = wordpiece(d, {})
        vocab = backend.get_vocab(with_added_tokens=False)
        return GLMTokenizer(backend, _wordpiece_commands(vocab), num_text_tokens=len(vocab),
                            kind="wordpiece", vocab_file=d / "vocab.txt", **extra)
    raise TokenizerError(f"no GLM vocabulary in {d}: expected {GLM_SP_MODEL} (GLM-large-ch, "
                         "GLM-10b-ch) or vocab.txt (GLM-large-en)")
