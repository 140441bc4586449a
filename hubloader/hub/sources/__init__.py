"""Sources: one class per backend behind one interface (:class:`Source`).

``open_source("s3://bucket/prefix")`` picks the backend from the URI scheme; backends import
their heavy client library (boto3, huggingface_hub) only when first used.
"""

from __future__ import annotations

from ...errors import UnsupportedSourceError
from ...names import ModelRef, parse_model_name
from .base import CHUNK_SIZE, Listing, RemoteChangedError, RemoteFile, Source

__all__ = ["Source", "RemoteFile", "Listing", "RemoteChangedError", "CHUNK_SIZE", "open_source"]


def open_source(uri: str | ModelRef) -> Source:
    """The :class:`Source` serving ``uri`` (``file://``, ``s3://`` or ``hf://``).

    Raises:
        UnsupportedSourceError: a scheme no backend handles.
        InvalidModelNameError: a malformed URI.
    """
    ref = uri if isinstance(uri, ModelRef) else parse_model_name(uri)
    if ref.kind == "local" or ref.scheme == "file":
        from .local import LocalSource

        return LocalSource(ref.path)
    if ref.scheme == "s3":
        from .s3 import S3Source

        return S3Source(ref.location)
    if ref.scheme == "hf":
        from .hf import HfSource

        return HfSource(ref.location)
    raise UnsupportedSourceError(f"no source handles {ref.name!r}; use s3://, hf:// or file://")
