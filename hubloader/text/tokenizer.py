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
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import TokenizerError
from . import clip as _clip  # noqa: F401  (registers CLIP's and XLM-R's builders)
from . import sentencepiece_bpe  # noqa: F401  (registers the tokenizer.model builder)
from .vocab import builders, read_json, token_str

__all__ = ["Tokenizer", "BatchEncoding", "load_tokenizer", "SPECIAL_TOKENS_ATTRIBUTES",
           "VERY_LARGE_INTEGER"]

logger = logging.getLogger(__name__)

# -- the tokenizer users call, with transformers' semantics ------------------------------------
#: transformers' stand-in for "no limit" (``model_max_length`` of a tokenizer without one)
VERY_LARGE_INTEGER = int(1e30)
_LARGE_INTEGER = int(1e20)
SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                             "cls_token", "mask_token")
# transformers' class defaults per tokenizer kind (each used only if the vocabulary holds it)
_DEFAULT_SPECIAL: dict[str, dict[str, str]] = {
    "bert": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
             "cls_token": "[CLS]", "mask_token": "[MASK]"},
    "gpt2": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
             "unk_token": "<|endoftext|>"},
    "roberta": {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"},
    "t5": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "clip": {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
             "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    "cpm": {"eos_token": "<eod>", "unk_token": "<unk>", "pad_token": "<pad>"},
}
_DEFAULT_SPECIAL["xlmroberta"] = _DEFAULT_SPECIAL["roberta"]
# transformers' class defaults that are not "right": Llama's tokenizer pads on the left, ready
# for batched generation
_DEFAULT_SIDE = {("padding_side", "llama"): "left"}
_TOKENIZER_CLASSES = {"bert": "BertTokenizer", "gpt2": "GPT2Tokenizer",
                      "roberta": "RobertaTokenizer", "t5": "T5Tokenizer",
                      "clip": "CLIPTokenizer", "xlmroberta": "XLMRobertaTokenizer"}
_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length",
            False: None, "do_not_pad": None}
_TRUNCATION = {True: "longest_first", "longest_first": "longest_first",
               "only_first": "only_first", "only_second": "only_second",
               False: None, "do_not_truncate": None}
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
            (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


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


class Tokenizer:
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

    # -- special tokens -------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        special = self.__dict__.get("_special", {})
        if name in special:
            return special[name]
        if name.endswith("_id") and name[:-3] in special:
            token = special[name[:-3]]
            return None if token is None else self.backend.token_to_id(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SPECIAL_TOKENS_ATTRIBUTES:  # tok.pad_token = tok.eos_token, as users do
            self._special[name] = value
        else:
            super().__setattr__(name, value)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {k: v for k, v in self._special.items() if v is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """The special-token attributes' tokens, then the extra ones (T5's sentinels...)."""
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self.extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int]:
        return [i for i in (self.backend.token_to_id(t) for t in self.all_special_tokens)
                if i is not None]

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

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        """A token's id (the unknown token's id for one outside the vocabulary), or a list."""
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Any, *, skip_special_tokens: bool = False) -> Any:
        """An id's token, or the tokens of a list (or tensor) of ids."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(i) for i in ids if i not in special]

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
    @staticmethod
    def _check_text(text: Any) -> None:
        if not isinstance(text, str):
            raise TokenizerError(f"the tokenizer takes a string or a list of strings, got "
                                 f"{type(text).__name__}")

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
        if return_tensors not in (None, "pt", "np"):
            raise TokenizerError(f"return_tensors must be None, 'pt' or 'np', got {return_tensors!r}")
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
        if return_tensors is not None:
            if len({len(r) for r in out["input_ids"]}) > 1:
                raise TokenizerError("sequences differ in length; pass padding=True (and "
                                     "truncation=True) to make tensors")
            if return_tensors == "pt":
                import torch

                return BatchEncoding({k: torch.tensor(v, dtype=torch.long) for k, v in out.items()})
            import numpy as np

            return BatchEncoding({k: np.asarray(v, dtype=np.int64) for k, v in out.items()})
        return BatchEncoding({k: v[0] for k, v in out.items()} if single else out)

    def encode(self, text: str, text_pair: str | None = None, *, add_special_tokens: bool = True,
               padding: bool | str = False, truncation: bool | str | None = None,
               max_length: int | None = None, return_tensors: str | None = None) -> Any:
        """The ids of one text (or pair): a list, or a ``[1, seq]`` tensor with ``"pt"``."""
        self._check_text(text)
        enc = self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding,
                   truncation=truncation, max_length=max_length, return_tensors=return_tensors,
                   return_token_type_ids=False, return_attention_mask=False)
        return enc["input_ids"]

    # -- chat ---------------------------------------------------------------------------
    #: the model's chat template, set by load_tokenizer (tokenizer_config.json, chat_template.jinja)
    chat_template: str | None = None

    def apply_chat_template(self, messages: list[dict[str, Any]], *,
                            add_generation_prompt: bool = False, tokenize: bool = False,
                            chat_template: str | None = None, **variables: Any):
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
        from .chat_template import render_chat_template
        from ..errors import ChatTemplateError

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

    def batch_decode(self, sequences: Any, *, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None) -> list[str]:
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        return [self.decode(r, skip_special_tokens=skip_special_tokens,
                            clean_up_tokenization_spaces=clean_up_tokenization_spaces) for r in rows]

    # -- saving ---------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path) -> list[Path]:
        """Write ``tokenizer.json`` and ``tokenizer_config.json``, which transformers'
        ``AutoTokenizer.from_pretrained`` reads back to the same ids.

        Returns:
            The two files written.

        Example:
            >>> tok.save_pretrained("out/model")
        """
        from ..load.saving import atomic_write_text

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
    return {"mt5": "t5", "eva_clip": "clip", "altclip": "xlmroberta"}.get(model_type, model_type)


def load_tokenizer(model_dir: str | Path, *, model_type: str | None = None) -> Any:
    """The tokenizer of a model directory: ``tokenizer.json`` first, else vocabulary files;
    special tokens, ``model_max_length`` and padding side from ``tokenizer_config.json`` (then
    ``special_tokens_map.json``, then transformers' defaults for the tokenizer's class). GLM
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
        from .glm import load_glm_tokenizer

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
    special: dict[str, str] = {}
    for source in (_DEFAULT_SPECIAL.get(kind, {}), read_json(d / "special_tokens_map.json"), cfg):
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
        names = (["input_ids", "attention_mask"] if kind in _NO_TOKEN_TYPES
                 or model_type in _NO_TOKEN_TYPES
                 else ["input_ids", "token_type_ids", "attention_mask"])
    sides = [str(cfg[k]) if cfg.get(k) in ("left", "right") else _DEFAULT_SIDE.get((k, kind), "right")
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
        else _TOKENIZER_CLASSES.get(kind)
    tok = Tokenizer(backend, model_max_length=max_len, model_input_names=names,
                    special_tokens=special, clean_up_tokenization_spaces=bool(
                        cfg.get("clean_up_tokenization_spaces", False)),
                    tokenizer_class=tokenizer_class, init_kwargs=init,
                    extra_special_tokens=extra, padding_side=sides[0],
                    truncation_side=sides[1])
    from .chat_template import find_chat_template

    tok.chat_template = find_chat_template(d, cfg)
    return tok


# families whose forward takes no token_type_ids (transformers' model_input_names)
_NO_TOKEN_TYPES = frozenset({"gpt2", "t5", "mt5", "roberta", "llama", "mistral", "qwen2",
                             "aquila", "opt", "galactica", "cpm", "clip", "eva_clip", "xlmroberta",
                             "altclip"})
