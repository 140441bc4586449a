"""Pause Python's cyclic garbage collector while a model is built and its weights attached
(and while the S3 client is built, see :func:`hubloader.hub.sources.s3.make_client`), and
keep torch's own objects out of its later walks.

Building a model allocates thousands of long-lived objects (modules, parameters, their
dicts). Those allocations trigger full (generation 2) collections, and each one walks every
object that ``import torch`` created, a large share of a warm load, and processes loading at
once each pay it. A build makes no garbage worth collecting, so the collector resumes when
the outermost pause ends (nested and concurrent pauses are counted; a collector the caller
had disabled stays disabled).

``import torch`` itself is the largest such allocation: its modules, classes and operator
tables live as long as the process, yet with the collector running they are walked by each
collection the import triggers and by every collection after it. When hubloader is the one
importing torch (:func:`torch_import`), the import runs paused and what exists once it is
done moves to the collector's permanent generation (:func:`gc.freeze`), as a pre-forking
server does with its start-up state (the freeze takes everything then alive, early in a
process as torch's import is; cyclic garbage of that moment is kept, not collected). A
process that imported torch itself keeps its own collector settings.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from typing import Iterator

__all__ = ["gc_paused", "torch_import"]

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


@contextlib.contextmanager
def torch_import() -> Iterator[None]:
    """Around an import that may import torch: paused, and frozen after if it did."""
    first = "torch" not in sys.modules
    with gc_paused():
        yield
        if first and "torch" in sys.modules:
            gc.freeze()  # before the collector resumes: its first run would walk them all
