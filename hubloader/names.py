"""The name grammar: one function turns what a user typed into a :class:`ModelRef`.

Accepted forms::

    bert-base-en                 a card name (case-insensitive)
    ./path/to/dir, /abs/dir, ~/x a local directory
    file:///abs/dir              a local directory (or a folder hub)
    s3://bucket/prefix/          an S3 (or S3-compatible) prefix
    hf://org/repo[@revision]     a Hugging Face hub repository
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, InputError, InvalidModelNameError, UnsupportedSourceError

__all__ = ["ModelRef", "parse_model_name", "safe_join", "validate_fetch_arguments", "validate_card_name",
           "validate_download_path", "SCHEMES"]

SCHEMES = ("s3", "hf", "file")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
_CARD_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# S3's own rule is 3-63 lowercase characters; S3-compatible servers accept a little more
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_HF_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_MAX_NAME = 4096  # PATH_MAX: no card, URI or local path is longer
_MAX_CARD_NAME = 200  # a card name becomes a folder name (255 bytes at most)


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
    if not name or not _CARD_NAME_RE.match(name) or ".." in name or len(name) > _MAX_CARD_NAME:
        raise InvalidModelNameError(
            f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-' "
            f"(no '/', no '..', at most {_MAX_CARD_NAME}); give a local directory as './dir' or "
            "a URI such as s3://bucket/prefix/"
        )
    return name


def validate_download_path(download_path: object) -> None:
    """Refuse a ``download_path`` that is not a path, or names an existing non-directory.

    Raises:
        InvalidModelNameError: with what to pass instead.
    """
    if download_path is None:
        return
    if not isinstance(download_path, (str, os.PathLike)) or not os.fspath(download_path):
        raise InvalidModelNameError(f"download_path must be a directory path, got "
                                    f"{download_path!r} ({type(download_path).__name__})")
    path = Path(download_path).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidModelNameError(f"download_path {str(path)!r} is a file, not a directory; "
                                    "give a folder (it is created if missing)")


def validate_fetch_arguments(model_name: object, *, revision: object, allow_patterns: object,
                             offline: object, progress: object = True) -> None:
    """Refuse, before anything starts, arguments of a fetch that have the wrong type.

    Raises:
        InputError: with the type each argument takes.
        ConfigError: ``offline`` is not a bool or ``None``.
    """
    if not isinstance(model_name, (str, os.PathLike)) or \
            not isinstance(os.fspath(model_name), str):
        raise InputError(f"model_name must be a str (a card name, a URI or a directory), got "
                         f"{type(model_name).__name__}; decode bytes first")
    if revision is not None and not isinstance(revision, str):
        raise InputError(f"revision must be a str (a branch, tag or commit) or None, got "
                         f"{type(revision).__name__}")
    if allow_patterns is not None and not isinstance(allow_patterns, str) and not (
            isinstance(allow_patterns, (list, tuple, set, frozenset))
            and all(isinstance(p, str) for p in allow_patterns)):
        raise InputError("allow_patterns must be a str or a list of str (shell patterns like "
                         f"'*.json'), got {allow_patterns!r}")
    if offline is not None and not isinstance(offline, bool):  # as settings.is_offline says
        raise ConfigError(f"offline must be True, False or None, got {offline!r}")
    if not isinstance(progress, bool):
        raise InputError(f"progress must be True or False, got {progress!r}")


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
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in name.split("/")):
        raise InvalidModelNameError(
            f"{name[:40]!r}... is longer than the 255 bytes a folder or file name may have, so it "
            f"cannot be put under {str(base)!r}; use a shorter name (or no download_path)")
    base_path = Path(base).expanduser()
    joined = base_path / candidate
    root = base_path.resolve()
    if not (joined.resolve() == root or root in joined.resolve().parents):
        raise InvalidModelNameError(f"model name {name!r} resolves outside {str(base)!r}")
    return joined


def _check_s3(text: str, rest: str) -> None:
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InvalidModelNameError(f"{text!r} names no bucket; write s3://BUCKET/prefix/")
    if not _BUCKET_RE.match(bucket):
        raise InvalidModelNameError(f"{text!r}: {bucket!r} is not a bucket name (letters, "
                                    "digits, '.', '_' and '-')")
    parts = prefix.replace("\\", "/").split("/")
    if ".." in parts or "." in parts or prefix.startswith("/"):
        raise InvalidModelNameError(f"{text!r}: the prefix must not hold '.', '..' or a "
                                    "leading '/'; write s3://BUCKET/path/to/model/")


def _is_dir(text: str) -> bool:
    try:
        return Path(text).expanduser().is_dir()
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise InvalidModelNameError(f"model_name {text[:40]!r}... is too long for a path "
                                        "on this system") from None
        return False
    except (ValueError, RuntimeError):  # an unknown ~user, a NUL byte
        return False


def _is_zip(text: str) -> bool:
    """A package zip given by its file name (``pkg.zip``, which is also a valid card name)."""
    try:
        return text.lower().endswith(".zip") and Path(text).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):
        return False


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
    if len(text) > _MAX_NAME or "\x00" in text:
        raise InvalidModelNameError(f"model_name {text[:40]!r}... ({len(text)} characters) is "
                                    f"too long or holds a NUL byte; names are at most "
                                    f"{_MAX_NAME} characters")

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
        if scheme == "s3":
            _check_s3(text, rest)
        rest = rest.strip("/") if scheme == "hf" else rest
        if not rest:
            raise InvalidModelNameError(f"{text!r} names no bucket or repository")
        if scheme == "hf" and (rest.count("/") > 1 or ".." in rest
                               or not all(_HF_PART_RE.match(p) for p in rest.split("/"))):
            raise InvalidModelNameError(f"{text!r}: a hub repository is 'org/name' or 'name', "
                                        "of letters, digits, '.', '_' and '-'")
        return ModelRef("uri", text, scheme, rest, pinned or revision)

    if _is_dir(text) or _is_zip(text) or _looks_like_path(text):
        return ModelRef("local", text, None, text, revision)
    validate_card_name(text)
    return ModelRef("card", text, None, text, revision)
