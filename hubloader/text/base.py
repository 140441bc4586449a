"""The one tokenizer interface every tokenizer hubloader returns shares: transformers' surface
(``convert_tokens_to_ids``, ``convert_ids_to_tokens``, ``__call__`` with padding, truncation,
``max_length`` and ``return_tensors``, ``decode``, ``batch_decode``, ``save_pretrained``, the
special-token attributes), with transformers' resolution of padding and truncation in one
place. The ``tokenizers``-backed :class:`~hubloader.text.tokenizer.Tokenizer` and GLM's
:class:`~hubloader.text.glm.GLMTokenizer` fill it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union, overload

from ..errors import TokenizerError

if TYPE_CHECKING:
    import numpy as np
    import torch

    #: ids as ``return_tensors`` asks: a ``[1, seq]`` LongTensor ("pt") or int64 array ("np")
    TensorIds = Union[torch.Tensor, np.ndarray]

__all__ = ["BaseTokenizer", "BatchEncoding", "SPECIAL_TOKENS_ATTRIBUTES", "VERY_LARGE_INTEGER"]

#: transformers' stand-in for "no limit" (``model_max_length`` of a tokenizer without one)
VERY_LARGE_INTEGER = int(1e30)
_LARGE_INTEGER = int(1e20)
SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                             "cls_token", "mask_token")
_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length",
            False: None, "do_not_pad": None}
_TRUNCATION = {True: "longest_first", "longest_first": "longest_first",
               "only_first": "only_first", "only_second": "only_second",
               False: None, "do_not_truncate": None}


class BatchEncoding(dict):
    """The tokenizer's output: a dict (``model(**enc)``) whose keys also read as attributes,
    with ``to(device)`` for tensors, as transformers' ``BatchEncoding``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: Any) -> "BatchEncoding":
        return BatchEncoding({k: (v.to(device) if hasattr(v, "to") else v) for k, v in self.items()})


class BaseTokenizer(ABC):
    """transformers' tokenizer surface. Special tokens read and write as attributes
    (``tok.pad_token = tok.eos_token``); each ``<name>_id`` is its id, ``None`` when unset."""

    bos_token: str | None
    eos_token: str | None
    unk_token: str | None
    sep_token: str | None
    pad_token: str | None
    cls_token: str | None
    mask_token: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    unk_token_id: int | None
    sep_token_id: int | None
    pad_token_id: int | None
    cls_token_id: int | None
    mask_token_id: int | None
    model_max_length: int
    padding_side: str
    truncation_side: str
    model_input_names: list[str]
    _special: dict[str, str | None]

    # -- special tokens -------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        special = self.__dict__.get("_special", {})
        if name in special:
            return special[name]
        if name.endswith("_id") and name[:-3] in special:
            token = special[name[:-3]]
            return None if token is None else self.token_to_id(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SPECIAL_TOKENS_ATTRIBUTES:  # tok.pad_token = tok.eos_token, as users do
            self._special[name] = value
        else:
            super().__setattr__(name, value)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {k: v for k, v in self._special.items() if v is not None}

    # -- vocabulary -----------------------------------------------------------------------
    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """A token's id, ``None`` outside the vocabulary."""

    @abstractmethod
    def id_to_token(self, id_: int) -> str | None:
        """An id's token, ``None`` outside the vocabulary."""

    @abstractmethod
    def get_vocab(self) -> dict[str, int]:
        """Every token and its id, added and special tokens included."""

    @abstractmethod
    def __len__(self) -> int:
        """The vocabulary's size with added and special tokens."""

    @overload
    def convert_tokens_to_ids(self, tokens: str) -> int | None: ...

    @overload
    def convert_tokens_to_ids(self, tokens: list[str] | tuple[str, ...]) -> list[int | None]: ...

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """A token's id (the unknown token's id for one outside the vocabulary), or a list."""
        if isinstance(tokens, str):
            found = self.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    @overload
    def convert_ids_to_tokens(self, ids: int, *, skip_special_tokens: bool = False) -> str | None: ...

    @overload
    def convert_ids_to_tokens(self, ids: Sequence[int] | TensorIds, *,
                              skip_special_tokens: bool = False) -> list[str | None]: ...

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | TensorIds, *,
                              skip_special_tokens: bool = False) -> str | None | list[str | None]:
        """An id's token, or the tokens of a list (or tensor) of ids."""
        plain = ids.tolist() if hasattr(ids, "tolist") else ids
        if isinstance(plain, int):
            return self.id_to_token(plain)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.id_to_token(i) for i in plain if i not in special]

    @property
    @abstractmethod
    def all_special_tokens(self) -> list[str]:
        """The special-token attributes' tokens, then any others the tokenizer keeps."""

    @property
    def all_special_ids(self) -> list[int]:
        return [i for i in (self.token_to_id(t) for t in self.all_special_tokens) if i is not None]

    # -- encoding -------------------------------------------------------------------------
    @staticmethod
    def _check_text(text: Any) -> None:
        if not isinstance(text, str):
            raise TokenizerError(f"the tokenizer takes a string or a list of strings, got "
                                 f"{type(text).__name__}")

    def _texts(self, text: Any, text_pair: Any) -> tuple[bool, list[str], list[str] | None]:
        """``(single, texts, pairs)`` of a call, checked."""
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, (list, tuple)) or not texts:
            raise TokenizerError("the tokenizer takes a string or a non-empty list of strings")
        for t in texts:
            self._check_text(t)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else text_pair
            if not isinstance(pairs, (list, tuple)) or len(pairs) != len(texts):
                raise TokenizerError(f"{len(texts)} texts need as many text pairs, got "
                                     f"{text_pair!r}")
            for t in pairs:
                self._check_text(t)
        return single, list(texts), None if pairs is None else list(pairs)

    def _strategies(self, padding: Any, truncation: Any, max_length: int | None,
                    pad_to_multiple_of: int | None) -> tuple[str | None, str | None, int | None]:
        """transformers' resolution of padding, truncation and ``max_length``."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # max_length alone truncates
        if not isinstance(padding, (bool, str)) or padding not in _PADDING:
            raise TokenizerError(f"padding must be True, False, 'longest', 'max_length' or "
                                 f"'do_not_pad', got {padding!r}")
        if truncation is not None and (not isinstance(truncation, (bool, str))
                                       or truncation not in _TRUNCATION):
            raise TokenizerError(f"truncation must be True, False, 'longest_first', 'only_first', "
                                 f"'only_second' or 'do_not_truncate', got {truncation!r}")
        if max_length is not None and (isinstance(max_length, bool)
                                       or not isinstance(max_length, int) or max_length <= 0):
            raise TokenizerError(f"max_length must be a positive integer, got {max_length!r}")
        pad, trunc = _PADDING[padding], _TRUNCATION[truncation or False]
        if max_length is None:
            limit = None if self.model_max_length > _LARGE_INTEGER else self.model_max_length
            if pad == "max_length":
                pad, max_length = (None, None) if limit is None else (pad, limit)
            if trunc is not None:
                trunc, max_length = (None, max_length) if limit is None else (trunc, limit)
        if pad is not None and self.pad_token_id is None:
            raise TokenizerError("asking to pad but the tokenizer has no padding token; set one "
                                 "(tok.pad_token = tok.eos_token) or pass padding=False")
        if (trunc and pad and pad_to_multiple_of and max_length
                and max_length % pad_to_multiple_of):
            raise TokenizerError(f"truncation length {max_length} is not a multiple of "
                                 f"pad_to_multiple_of {pad_to_multiple_of}")
        return pad, trunc, max_length

    @staticmethod
    def _check_return_tensors(return_tensors: str | None) -> None:
        if return_tensors not in (None, "pt", "np"):
            raise TokenizerError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")

    @staticmethod
    def _encoding(out: dict[str, list[Any]], *, single: bool,
                  return_tensors: str | None) -> BatchEncoding:
        """Rows of ids (and masks) as a :class:`BatchEncoding`: lists (a single text's flat),
        or ``[batch, ...]`` tensors of equal-length rows."""
        if return_tensors is None:
            return BatchEncoding({k: v[0] for k, v in out.items()} if single else out)
        if len({len(r) for r in out["input_ids"]}) > 1:
            raise TokenizerError("sequences differ in length; pass padding=True (and "
                                 "truncation=True) to make tensors")
        if return_tensors == "pt":
            import torch

            return BatchEncoding({k: torch.tensor(v, dtype=torch.long) for k, v in out.items()})
        import numpy as np

        return BatchEncoding({k: np.asarray(v, dtype=np.int64) for k, v in out.items()})

    @abstractmethod
    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = False,
                 truncation: bool | str | None = None, max_length: int | None = None,
                 stride: int = 0, pad_to_multiple_of: int | None = None,
                 padding_side: str | None = None, return_tensors: str | None = None,
                 return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None) -> BatchEncoding:
        """Tokenize one string (or pair) or a batch, as transformers' tokenizer does."""

    @abstractmethod
    def tokenize(self, text: str, text_pair: str | None = None, *,
                 add_special_tokens: bool = False) -> list[str]:
        """The tokens of a text."""

    @overload
    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None,
               max_length: int | None = None, return_tensors: None = None) -> list[int]: ...

    @overload
    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None,
               max_length: int | None = None, return_tensors: str) -> TensorIds: ...

    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None,
               max_length: int | None = None,
               return_tensors: str | None = None) -> list[int] | TensorIds:
        """The ids of one text (or pair): a list, or a ``[1, seq]`` tensor with ``"pt"``."""
        self._check_text(text)
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding,
                    truncation=truncation, max_length=max_length, return_tensors=return_tensors,
                    return_token_type_ids=False, return_attention_mask=False)["input_ids"]

    # -- decoding -------------------------------------------------------------------------
    @abstractmethod
    def decode(self, token_ids: Any, *, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """The text of a list (or tensor) of ids."""

    def batch_decode(self, sequences: Any, *, skip_special_tokens: bool | None = None,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        """The texts of rows of ids; ``skip_special_tokens=None``: :meth:`decode`'s default."""
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        kwargs: dict[str, Any] = {"clean_up_tokenization_spaces": clean_up_tokenization_spaces}
        if skip_special_tokens is not None:
            kwargs["skip_special_tokens"] = skip_special_tokens
        return [self.decode(r, **kwargs) for r in rows]

    # -- saving ---------------------------------------------------------------------------
    @abstractmethod
    def save_pretrained(self, save_directory: str | Path) -> list[Path]:
        """Write the tokenizer's files, which ``load_tokenizer`` reads back to the same ids."""
