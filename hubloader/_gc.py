"""Pause Python's cyclic garbage collector while a model is built and its weights attached
(and while the S3 client is built, see :func:`hubloader.hub.sources.s3.make_client`).

Building a model allocates thousands of long-lived objects (modules, parameters, their
dicts). Those allocations trigger full (generation 2) collections, and each one walks every
object that ``import torch`` created, a large share of a warm load, and processes loading at
once each pay it. A build makes no
garbage worth collecting, so the collector resumes when the outermost pause ends (nested and
concurrent pauses are counted; a collector the caller had disabled stays disabled).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

__all__ = ["gc_paused"]

_lock = threading.Lock()
_depth = 0
_resume = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
