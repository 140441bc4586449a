"""``GenerationConfig``: a model's decoding defaults, read from and written to
``generation_config.json`` as transformers does.

``model.generation_config`` is built on first use from the checkpoint's
``generation_config.json`` when there is one, else from the model config's token ids (as
transformers' ``GenerationConfig.from_model_config``). ``generate()`` takes each argument it is
not given from it; ``save_pretrained`` writes it back when it differs from the defaults.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from ..load.config import read_config_file

__all__ = ["GenerationConfig", "GENERATION_CONFIG_NAME"]

logger = logging.getLogger(__name__)

GENERATION_CONFIG_NAME = "generation_config.json"

# transformers' defaults for the fields generate() reads
_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
    "do_sample": False, "num_beams": 1, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
    "repetition_penalty": 1.0, "length_penalty": 1.0, "early_stopping": False,
    "num_return_sequences": 1, "stop_strings": None,
    "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
    "decoder_start_token_id": None,
}
_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


class GenerationConfig:
    """Decoding defaults; unknown fields of a file are kept and written back unchanged.

    Example:
        >>> model.generation_config.max_new_tokens = 32
        >>> model.generation_config.save_pretrained("out/model")
    """

    def __init__(self, **fields: Any):
        for key, value in _DEFAULTS.items():
            setattr(self, key, copy.deepcopy(value))
        for key, value in fields.items():
            setattr(self, key, value)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_model_config(cls, config: Any) -> "GenerationConfig":
        """The token ids of a model config (ours or transformers'), other fields default."""
        ids = {k: getattr(config, k, None) for k in _TOKEN_FIELDS}
        if ids["decoder_start_token_id"] is None:
            ids["decoder_start_token_id"] = getattr(config, "start_token_id", None)
        return cls(**{k: v for k, v in ids.items() if v is not None})

    @classmethod
    def from_pretrained(cls, directory: str | Path, *,
                        config: Any = None) -> "GenerationConfig":
        """``directory/generation_config.json``; without one, :meth:`from_model_config` of
        ``config`` (or the defaults).

        Raises:
            ConfigError: the file exists but is not a JSON object.
        """
        path = Path(directory) / GENERATION_CONFIG_NAME
        base = cls.from_model_config(config) if config is not None else cls()
        if not path.is_file():
            return base
        data = read_config_file(path)
        for key, value in data.items():
            if key in _TOKEN_FIELDS and not _valid_ids(value):
                logger.warning("ignoring %s in %s: %r is not a token id", key, path, value)
                continue
            setattr(base, key, value)
        return base

    # -- reading and writing ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_")}

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that differ from transformers' defaults (what the file holds)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in _DEFAULTS or _DEFAULTS[k] != v}

    def update(self, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``generation_config.json`` (the fields off the defaults) atomically."""
        from ..files import atomic_write_json

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / GENERATION_CONFIG_NAME
        atomic_write_json(path, self.to_diff_dict(), indent=2)
        return path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig({self.to_diff_dict()})"


def _valid_ids(value: Any) -> bool:
    def one(i: Any) -> bool:
        return isinstance(i, int) and not isinstance(i, bool) and i >= 0

    return value is None or one(value) or (isinstance(value, list) and bool(value)
                                          and all(one(i) for i in value))
