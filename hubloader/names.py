"""The name grammar: one function turns what a user typed into a :class:`ModelRef`.

Accepted forms::

    bert-base-en                 a card name (case-insensitive)
    ./path/to/dir, /abs/dir, ~/x a local directory
    file:///abs/dir              a local directory (or a folder hub)
    s3://bucket/prefix/          an S3 (or S3-compatible) prefix
    hf://org/repo[@revision]     a Hugging Face hub repository
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidModelNameError, UnsupportedSourceError

__all__ = ["ModelRef", "parse_model_name", "safe_join", "validate_card_name", "SCHEMES"]

SCHEMES = ("s3", "hf", "file")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
_CARD_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name.

    Attributes:
        kind: ``"card"``, ``"local"`` or ``"uri"``.
        name: the text the user gave (stripped).
        scheme: ``"s3"``, ``"hf"`` or ``"file"`` for URIs, else ``None``.
        location: bucket/prefix, repo id, or the local path.
        revision: a revision pinned in the name (``hf://org/repo@rev``), else ``None``.
    """

    kind: str
    name: str
    scheme: str | None = None
    location: str = ""
    revision: str | None = None

    @property
    def path(self) -> Path:
        """The local path of a ``local`` or ``file://`` reference."""
        return Path(self.location).expanduser()

    @property
    def uri(self) -> str:
        if self.kind != "uri":
            return self.name
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.scheme}://{self.location}{rev}"


def validate_card_name(name: str) -> str:
    """Return ``name`` if it is a safe single path component usable as a card/cache name."""
    if not name or not _CARD_NAME_RE.match(name) or ".." in name:
        raise InvalidModelNameError(
            f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-' "
            "(no '/', no '..'); give a local directory as './dir' or a URI such as s3://bucket/prefix/"
        )
    return name


def safe_join(base: str | os.PathLike, name: str) -> Path:
    """Join ``name`` to ``base``, refusing anything that would land outside ``base``.

    Raises:
        InvalidModelNameError: ``name`` is absolute, contains ``..``, a NUL, or resolves outside.
    """
    if not name or "\x00" in name:
        raise InvalidModelNameError(f"model name {name!r} is empty or contains a NUL byte")
    candidate = Path(name)
    if candidate.is_absolute() or name.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", name):
        raise InvalidModelNameError(
            f"model name {name!r} is an absolute path and cannot be joined to {str(base)!r}; "
            "pass the directory itself as model_name, without download_path"
        )
    if any(part == ".." for part in re.split(r"[\\/]", name)):
        raise InvalidModelNameError(
            f"model name {name!r} contains '..' and would escape {str(base)!r}; use a plain name"
        )
    base_path = Path(base).expanduser()
    joined = base_path / candidate
    root = base_path.resolve()
    if not (joined.resolve() == root or root in joined.resolve().parents):
        raise InvalidModelNameError(f"model name {name!r} resolves outside {str(base)!r}")
    return joined


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~", "\\")) or os.sep in text or (os.altsep or "\0") in text


def parse_model_name(model_name: str | os.PathLike, *, revision: str | None = None) -> ModelRef:
    """Parse a model name into a :class:`ModelRef`.

    Args:
        model_name: a card name, a local directory, or an ``s3://``, ``hf://`` or ``file://`` URI.
        revision: a revision given separately; it must agree with one pinned in the name.

    Returns:
        The parsed reference. Nothing is looked up or fetched.

    Raises:
        UnsupportedSourceError: a URI scheme no source handles.
        InvalidModelNameError: an empty or malformed name.

    Example:
        >>> parse_model_name("hf://org/repo@v1").revision
        'v1'
    """
    if isinstance(model_name, os.PathLike):
        return ModelRef("local", os.fspath(model_name), None, os.fspath(model_name))
    if not isinstance(model_name, str):
        raise InvalidModelNameError(
            f"model_name must be a string or path, got {type(model_name).__name__}"
        )
    text = model_name.strip()
    if not text:
        raise InvalidModelNameError("model_name is empty: give a card name, a directory or a URI")

    match = _SCHEME_RE.match(text)
    if match:
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme not in SCHEMES:
            raise UnsupportedSourceError(
                f"unknown URI scheme {scheme!r} in {text!r}; supported: "
                + ", ".join(f"{s}://" for s in SCHEMES)
            )
        if scheme == "file":
            return ModelRef("uri", text, "file", rest or "/", revision)
        pinned = None
        if scheme == "hf" and "@" in rest:
            rest, pinned = rest.rsplit("@", 1)
            if not pinned:
                raise InvalidModelNameError(f"empty revision after '@' in {text!r}")
        if revision is not None and pinned is not None and revision != pinned:
            raise InvalidModelNameError(
                f"revision {revision!r} conflicts with {pinned!r} pinned in {text!r}; give one"
            )
        rest = rest.strip("/") if scheme == "hf" else rest.lstrip("/")
        if not rest or (scheme == "s3" and not rest.split("/", 1)[0]):
            raise InvalidModelNameError(f"{text!r} names no bucket or repository")
        if scheme == "hf" and (rest.count("/") > 1 or ".." in rest):
            raise InvalidModelNameError(f"{text!r}: a hub repository is 'org/name' or 'name'")
        return ModelRef("uri", text, scheme, rest, pinned or revision)

    if Path(text).expanduser().is_dir() or _looks_like_path(text):
        return ModelRef("local", text, None, text, revision)
    validate_card_name(text)
    return ModelRef("card", text, None, text, revision)
