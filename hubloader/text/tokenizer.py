"""Tokenizers through the ``tokenizers`` library that behave as transformers' do for the same
call: ``tok(["a", "b"], padding=True, return_tensors="pt")`` → ``input_ids`` /
``attention_mask`` tensors, the same defaults, special-token attributes, decoding, and
``save_pretrained`` files that ``transformers.AutoTokenizer`` reads back.

Built from ``tokenizer.json`` where present, else from vocabulary files: ``vocab.txt``
(WordPiece, BERT), ``vocab.json`` + ``merges.txt`` (byte-level BPE, GPT-2/RoBERTa) and
``spiece.model`` (SentencePiece Unigram, T5 — read with a small protobuf reader, so neither
``sentencepiece`` nor ``protobuf`` is needed); ``tokenizer.model`` (SentencePiece BPE, Llama 2)
is built in :mod:`hubloader.text.sentencepiece_bpe`. Families add builders for their vocabulary
formats through :func:`register_builder`. ``apply_chat_template`` renders the model's chat
template (:mod:`hubloader.text.chat_template`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Sequence

from ..errors import ChatTemplateError, TokenizerError
from ..files import atomic_write_text
from ..load.registry import tokenizer_defaults
from . import clip as _clip  # noqa: F401  (registers CLIP's and XLM-R's builders)
from . import sentencepiece_bpe  # noqa: F401  (registers the tokenizer.model builder)
from .chat_template import find_chat_template, render_chat_template
from .base import (SPECIAL_TOKENS_ATTRIBUTES, VERY_LARGE_INTEGER, BaseTokenizer, BatchEncoding)
from .glm import GLMTokenizer, load_glm_tokenizer
from .vocab import builders, read_json, token_str

__all__ = ["Tokenizer", "AutoTokenizer", "BatchEncoding", "load_tokenizer", "SPECIAL_TOKENS_ATTRIBUTES",
           "VERY_LARGE_INTEGER"]

logger = logging.getLogger(__name__)

# -- the tokenizer users call, with transformers' semantics ------------------------------------
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class Tokenizer(BaseTokenizer):
    """A callable tokenizer that behaves as transformers' for the same call.

    Defaults are transformers': no padding, no truncation (unless ``max_length`` is given
    alone), Python lists unless ``return_tensors="pt"``, ``decode`` keeping special tokens.

    Example:
        >>> tok = load_tokenizer("./model")
        >>> batch = tok(["hello world", "hi"], padding=True, return_tensors="pt")
        >>> out = model(**batch)
        >>> tok.decode(batch["input_ids"][0], skip_special_tokens=True)
        'hello world'
    """

    def __init__(self, backend: Any, *, model_max_length: int = VERY_LARGE_INTEGER,
                 pad_token: str | None = None,
                 model_input_names: Sequence[str] = ("input_ids", "token_type_ids",
                                                     "attention_mask"),
                 special_tokens: dict[str, str] | None = None, padding_side: str = "right",
                 truncation_side: str = "right", clean_up_tokenization_spaces: bool = False,
                 tokenizer_class: str | None = None, init_kwargs: dict[str, Any] | None = None,
                 extra_special_tokens: Sequence[str] = ()):
        self.backend = backend
        self.backend.no_padding()
        self.backend.no_truncation()
        self.model_input_names = list(model_input_names)
        self.model_max_length = model_max_length
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.tokenizer_class = tokenizer_class
        self.init_kwargs = dict(init_kwargs or {})
        self._special: dict[str, str | None] = dict.fromkeys(SPECIAL_TOKENS_ATTRIBUTES)
        self._special.update(special_tokens or {})
        if pad_token is not None:
            self._special["pad_token"] = pad_token
        self.extra_special_tokens = list(extra_special_tokens)
        self._lock = threading.Lock()  # padding/truncation are set on the shared backend

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """The tokenizer of a model by card name, directory or URI (transformers' spelling):
        only the tokenizer and config files are fetched.

        Args:
            pretrained_model_name_or_path: as :meth:`hubloader.BaseModel.from_pretrain`'s name.
            **kwargs: ``revision``, ``offline`` / ``local_files_only``, ``download_path``;
                ``padding_side``, ``truncation_side``, ``model_max_length`` and special tokens
                (``pad_token="<pad>"``) set on the tokenizer; ``use_fast=True`` and
                ``trust_remote_code=False`` are what hubloader does anyway.

        Returns:
            A :class:`Tokenizer` (GLM models: their :class:`~hubloader.glm_tokenization.GLMTokenizer`).

        Raises:
            TokenizerError: no tokenizer files, or an argument hubloader cannot honour (named).
            ModelNotFoundError, SourceError: as loading a model.

        Example:
            >>> tok = Tokenizer.from_pretrained("bert-base-en", padding_side="left")
        """
        return _tokenizer_from_pretrained(pretrained_model_name_or_path, kwargs)

    # -- special tokens -------------------------------------------------------------------
    @property
    def all_special_tokens(self) -> list[str]:
        """The special-token attributes' tokens, then the extra ones (T5's sentinels...)."""
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self.extra_special_tokens]))

    # -- vocabulary -----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """The base vocabulary's size, without added tokens (``len(tok)`` counts them)."""
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, id_: int) -> str | None:
        return self.backend.id_to_token(id_)

    def tokenize(self, text: str, text_pair: str | None = None, *,
                 add_special_tokens: bool = False) -> list[str]:
        self._check_text(text)
        return self.backend.encode(text, text_pair, add_special_tokens=add_special_tokens).tokens

    def tokenize_as_tensor(self, texts: str | Sequence[str], context_length: int = 77) -> Any:
        """FlagAI's CLIP call: each text with its special tokens, cut to ``context_length``
        and padded with id 0, as one ``[texts, context_length]`` LongTensor.

        Raises:
            TokenizerError: a text that is not a string.
        """
        import torch

        items = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(items), context_length, dtype=torch.long)
        for row, text in enumerate(items):
            self._check_text(text)
            ids = self.backend.encode(text).ids[:context_length]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    # -- encoding -------------------------------------------------------------------------
    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None, *,
                 add_special_tokens: bool = True, padding: bool | str = False,
                 truncation: bool | str | None = None, max_length: int | None = None,
                 stride: int = 0, pad_to_multiple_of: int | None = None,
                 padding_side: str | None = None, return_tensors: str | None = None,
                 return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None) -> BatchEncoding:
        """Tokenize one string (or pair) or a batch, as transformers' tokenizer does.

        Args:
            text: a string or a list of strings.
            text_pair: the second sequence(s) of pairs (same count as ``text``).
            padding: ``True``/``"longest"`` (to the batch's longest), ``"max_length"`` (to
                ``max_length``, else the model's limit), ``False`` (none).
            truncation: ``True``/``"longest_first"``, ``"only_first"``, ``"only_second"`` or
                ``False``; ``None`` truncates only when ``max_length`` is given without padding.
            max_length: the length to truncate or pad to (default: ``model_max_length``).
            return_tensors: ``None`` (lists; a single text gives flat lists), ``"pt"``
                (``[batch, seq]`` LongTensors) or ``"np"``.
            return_token_type_ids, return_attention_mask: default: whether the model takes them
                (``model_input_names``).

        Returns:
            A :class:`BatchEncoding` (a dict): ``input_ids`` and, as asked, ``token_type_ids``
            and ``attention_mask``.

        Raises:
            TokenizerError: a bad argument, padding without a pad token, or tensors of rows of
                different lengths (pass ``padding=True``).
        """
        single, texts, pairs = self._texts(text, text_pair)
        self._check_return_tensors(return_tensors)
        side = padding_side or self.padding_side
        if side not in ("left", "right"):
            raise TokenizerError(f"padding_side must be 'left' or 'right', got {side!r}")
        pad, trunc, limit = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        inputs = list(zip(texts, pairs)) if pairs is not None else list(texts)
        with self._lock:
            try:
                if trunc is not None and limit is not None:
                    self.backend.enable_truncation(limit, stride=stride, strategy=trunc,
                                                   direction=self.truncation_side)
                if pad is not None:
                    self.backend.enable_padding(
                        direction=side, pad_id=self.pad_token_id, pad_token=self.pad_token,
                        pad_type_id=0, length=limit if pad == "max_length" else None,
                        pad_to_multiple_of=pad_to_multiple_of)
                encs = self.backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
            except Exception as err:  # the Rust side raises plain Exception on impossible cuts
                if isinstance(err, TokenizerError):
                    raise
                raise TokenizerError(f"cannot encode with truncation={truncation!r}, "
                                     f"max_length={limit}: {err}") from err
            finally:
                self.backend.no_padding()
                self.backend.no_truncation()
        want_types = ("token_type_ids" in self.model_input_names if return_token_type_ids is None
                      else return_token_type_ids)
        want_mask = ("attention_mask" in self.model_input_names if return_attention_mask is None
                     else return_attention_mask)
        out: dict[str, Any] = {"input_ids": [list(e.ids) for e in encs]}
        if want_types:
            out["token_type_ids"] = [list(e.type_ids) for e in encs]
        if want_mask:
            out["attention_mask"] = [list(e.attention_mask) for e in encs]
        return self._encoding(out, single=single, return_tensors=return_tensors)

    # -- chat ---------------------------------------------------------------------------
    #: the model's chat template, set by load_tokenizer (tokenizer_config.json, chat_template.jinja)
    chat_template: str | None = None

    def apply_chat_template(self, messages: list[dict[str, Any]], *,
                            add_generation_prompt: bool = False, tokenize: bool = False,
                            chat_template: str | None = None,
                            **variables: Any) -> str | list[int]:
        """Render a conversation with the model's chat template, as transformers does (see
        :func:`hubloader.text.chat_template.render_chat_template`).

        Returns:
            The prompt string, or its ids (``list[int]``, no special tokens added) with
            ``tokenize=True``.

        Raises:
            ChatTemplateError: no template, bad messages, or the template failed.

        Example:
            >>> tok.apply_chat_template([{"role": "user", "content": "Hi"}],
            ...                         add_generation_prompt=True)
        """
        template = chat_template or self.chat_template
        if template is None:
            raise ChatTemplateError("this tokenizer has no chat_template (tokenizer_config.json "
                                    "or chat_template.jinja); pass chat_template=")
        text = render_chat_template(template, messages, add_generation_prompt=add_generation_prompt,
                                    special_tokens=self.special_tokens_map, **variables)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    # -- decoding -------------------------------------------------------------------------
    def decode(self, token_ids: Any, *, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None) -> str:
        """The text of a list (or tensor) of ids; special tokens kept unless skipped."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids
        ids = [ids] if isinstance(ids, int) else list(ids)
        if ids and isinstance(ids[0], list):
            raise TokenizerError("decode takes one sequence of ids; use batch_decode for a batch")
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = (self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None
                 else clean_up_tokenization_spaces)
        if clean and type(self.backend.model).__name__ != "BPE":  # as transformers: BPE keeps
            for old, new in _CLEANUP:
                text = text.replace(old, new)
        return text

    # -- saving ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path) -> list[Path]:
        """Write ``tokenizer.json`` and ``tokenizer_config.json``, which transformers'
        ``AutoTokenizer.from_pretrained`` reads back to the same ids.

        Returns:
            The two files written.

        Example:
            >>> tok.save_pretrained("out/model")
        """
        d = Path(save_directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {k: v for k, v in self.init_kwargs.items()
                               if k not in ("added_tokens_decoder", "name_or_path",
                                            "additional_special_tokens")}
        cfg.update(self.special_tokens_map)
        if self.extra_special_tokens:
            cfg["extra_special_tokens"] = self.extra_special_tokens
        if self.tokenizer_class:
            cfg["tokenizer_class"] = self.tokenizer_class
        cfg.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                   truncation_side=self.truncation_side, model_input_names=self.model_input_names,
                   clean_up_tokenization_spaces=self.clean_up_tokenization_spaces)
        files = [d / "tokenizer.json", d / "tokenizer_config.json"]
        atomic_write_text(files[0], self.backend.to_str(pretty=True))
        atomic_write_text(files[1], json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        return files


def _kind(cfg: dict[str, Any], model_type: str) -> str:
    """``bert``, ``gpt2``, ``roberta``, ``t5``... from ``tokenizer_class``, else the model type."""
    cls = cfg.get("tokenizer_class")
    if isinstance(cls, str):
        name = cls.lower().removesuffix("fast").removesuffix("tokenizer")
        if name:
            return name
    return {"mt5": "t5"}.get(model_type, model_type)


def load_tokenizer(model_dir: str | Path, *,
                   model_type: str | None = None) -> Tokenizer | GLMTokenizer:
    """The tokenizer of a model directory: ``tokenizer.json`` first, else vocabulary files;
    special tokens, ``model_max_length`` and padding side from ``tokenizer_config.json`` (then
    ``special_tokens_map.json``, then the defaults the family declares with its
    ``register_model``, which are transformers' for its tokenizer class). GLM
    models get GLM's (:class:`~hubloader.text.glm.GLMTokenizer`).

    Args:
        model_type: the family, where ``config.json`` does not say (FlagAI's configs).

    Raises:
        TokenizerError: no tokenizer file, or a corrupt one.
    """
    d = Path(model_dir)
    cfg = read_json(d / "tokenizer_config.json")
    if model_type is None:
        model_type = read_json(d / "config.json").get("model_type")
    model_type = model_type.lower() if isinstance(model_type, str) else ""
    if model_type in ("glm", "alm"):  # ALM: GLM's command tokens over an Arabic spiece.model
        return load_glm_tokenizer(d)
    build_cfg = {**cfg, "_model_type": model_type}
    if (d / "tokenizer.json").is_file():
        from tokenizers import Tokenizer as _T

        try:
            backend = _T.from_file(str(d / "tokenizer.json"))
        except Exception as err:  # the Rust side raises plain Exception on bad files
            raise TokenizerError(f"{d / 'tokenizer.json'} is corrupt ({err}); download the model "
                                 "again") from err
    elif "cpm" in (model_type, _kind(cfg, model_type)) and (d / "spiece.model").is_file():
        from .cpm import cpm_backend

        backend = cpm_backend(d / "spiece.model")
    else:
        for required, builder in builders():
            if all((d / f).is_file() for f in required):
                backend = builder(d, build_cfg)
                break
        else:
            wanted = ["tokenizer.json"] + [" + ".join(r) for r, _ in builders()]
            raise TokenizerError(f"no tokenizer files in {d}: looked for {', '.join(wanted)}; "
                                 "this model has no tokenizer, or its download is incomplete")
    kind = _kind(cfg, model_type)
    if not kind and (d / "vocab.txt").is_file():
        kind = "bert"
    if kind == "qwen2" and backend.normalizer is None:
        from tokenizers import normalizers

        # transformers' Qwen2 tokenizer composes the text (NFC) whatever tokenizer.json says
        backend.normalizer = normalizers.NFC()
    family = tokenizer_defaults(kind) if kind else None  # what the tokenizer's family declared
    special: dict[str, str] = {}
    for source in (family.special_tokens if family else {}, read_json(d / "special_tokens_map.json"), cfg):
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            if key in source:
                token = token_str(source[key])
                if token is None:
                    special.pop(key, None)
                elif backend.token_to_id(token) is not None:
                    special[key] = token
    max_len = cfg.get("model_max_length")
    if isinstance(max_len, bool) or not isinstance(max_len, int):
        max_len = VERY_LARGE_INTEGER
    names = cfg.get("model_input_names")
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        own = tokenizer_defaults(model_type) if model_type else None
        no_types = any(f is not None and not f.token_type_ids for f in (family, own))
        names = (["input_ids", "attention_mask"] if no_types
                 else ["input_ids", "token_type_ids", "attention_mask"])
    defaults = {"padding_side": family.padding_side if family else "right", "truncation_side": "right"}
    sides = [str(cfg[k]) if cfg.get(k) in ("left", "right") else defaults[k]
             for k in ("padding_side", "truncation_side")]
    extra = cfg.get("extra_special_tokens", cfg.get("additional_special_tokens"))
    if isinstance(extra, list):
        extra = [t for t in (token_str(x) for x in extra) if t is not None]
    elif kind == "t5":  # transformers' T5 tokenizer: the sentinels
        n = cfg.get("extra_ids", 100)
        extra = [f"<extra_id_{i}>" for i in range(n if isinstance(n, int) else 100)]
    else:
        extra = []
    extra = [t for t in extra if backend.token_to_id(t) is not None]
    init = {k: v for k, v in cfg.items() if k not in SPECIAL_TOKENS_ATTRIBUTES}
    tokenizer_class = cfg.get("tokenizer_class") if isinstance(cfg.get("tokenizer_class"), str) \
        else (family.tokenizer_class if family else None)
    tok = Tokenizer(backend, model_max_length=max_len, model_input_names=names,
                    special_tokens=special, clean_up_tokenization_spaces=bool(
                        cfg.get("clean_up_tokenization_spaces", False)),
                    tokenizer_class=tokenizer_class, init_kwargs=init,
                    extra_special_tokens=extra, padding_side=sides[0],
                    truncation_side=sides[1])
    tok.chat_template = find_chat_template(d, cfg)
    return tok


_FETCH_ARGS = ("revision", "offline", "download_path")
_SET_ARGS = ("padding_side", "truncation_side", "model_max_length")


def _tokenizer_from_pretrained(name: str | os.PathLike, kwargs: dict[str, Any]) -> Any:
    from .. import settings
    from ..load.resolve import resolve_model_dir

    kw = dict(kwargs)
    fetch = {k: kw.pop(k) for k in _FETCH_ARGS if k in kw}
    if kw.pop("local_files_only", False):
        fetch["offline"] = True
    if kw.pop("use_fast", True) is not True:
        raise TokenizerError("use_fast=False: hubloader has only the fast (Rust) tokenizers, "
                             "whose ids equal the slow ones'; drop the argument")
    if kw.pop("trust_remote_code", False):
        raise TokenizerError("trust_remote_code=True: a tokenizer's own code is not run; "
                             "hubloader reads tokenizer.json and the vocabulary files only")
    setters = {k: kw.pop(k) for k in _SET_ARGS if k in kw}
    special = {k: kw.pop(k) for k in SPECIAL_TOKENS_ATTRIBUTES if k in kw}
    if kw:
        raise TokenizerError(f"from_pretrained does not support {', '.join(sorted(kw))}; it "
                             f"takes {', '.join(_FETCH_ARGS + _SET_ARGS)}, local_files_only "
                             "and special tokens")
    for key, value in setters.items():
        if key.endswith("_side") and value not in ("left", "right"):
            raise TokenizerError(f"{key} must be 'left' or 'right', got {value!r}")
        if key == "model_max_length" and (isinstance(value, bool) or not isinstance(value, int)
                                          or value <= 0):
            raise TokenizerError(f"model_max_length must be a positive int, got {value!r}")
    model_dir = resolve_model_dir(name, allow_patterns=list(settings.NO_WEIGHT_PATTERNS), **fetch)
    tok = load_tokenizer(model_dir)
    for key, value in {**setters, **special}.items():
        setattr(tok, key, value)
    return tok


class AutoTokenizer:
    """transformers' ``AutoTokenizer`` spelling: ``AutoTokenizer.from_pretrained(name)`` is
    :meth:`Tokenizer.from_pretrained`, which picks the model's tokenizer (GLM's for GLM)."""

    def __init__(self) -> None:
        raise TypeError("AutoTokenizer is not instantiated: use AutoTokenizer.from_pretrained(name)")

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """See :meth:`Tokenizer.from_pretrained`."""
        return _tokenizer_from_pretrained(pretrained_model_name_or_path, kwargs)
