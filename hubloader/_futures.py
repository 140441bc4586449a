"""Thread-pool helper shared by the parallel download and the parallel multipart push."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Sequence, TypeVar

__all__ = ["results_or_cancel"]

T = TypeVar("T")


def results_or_cancel(futures: Sequence[Future[T]]) -> list[T]:
    """The futures' results in order; at the first failure the ones not yet started are
    cancelled (no more work is sent) and the error propagates."""
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise
