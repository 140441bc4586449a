"""One fetcher per node under ``torch.distributed``: local rank 0 downloads while the other
ranks wait at a barrier, then read the warm cache without touching the network.

Active only when torch is already imported and a process group is initialized with more
than one rank; ``import hubloader`` never imports torch.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, TypeVar, cast

__all__ = ["active", "local_rank", "once_per_node"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _dist():
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist
    except Exception:  # a half-built torch: behave as a single process
        return None
    return None


def active() -> bool:
    """Whether this process is one rank of an initialized multi-process group."""
    return _dist() is not None


def local_rank() -> int:
    """This process's rank on its node: ``LOCAL_RANK`` (torchrun), else global rank modulo
    ``LOCAL_WORLD_SIZE``, else the global rank (every rank then counts as its own node and
    the per-file locks still keep the work single)."""
    if os.environ.get("LOCAL_RANK", "").strip().isdigit():
        return int(os.environ["LOCAL_RANK"])
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    size = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return rank % int(size) if size.isdigit() and int(size) > 0 else rank


def once_per_node(fetch: Callable[[], T], lookup: Callable[[], T]) -> T:
    """Run ``fetch`` on local rank 0 and ``lookup`` (cache only) on the other ranks, after a
    barrier every rank reaches even when rank 0 fails.

    Raises:
        Whatever ``fetch`` raised on local rank 0; on the other ranks, what ``lookup`` raises
        (``LocalEntryNotFoundError`` when rank 0 failed).
    """
    dist = _dist()
    if dist is None:
        return fetch()
    mine = local_rank()
    result: T | None = None
    error: BaseException | None = None
    if mine == 0:
        try:
            result = fetch()
        except BaseException as err:  # reach the barrier first, then re-raise
            error = err
    logger.debug("rank %d (local %d) waiting for the node's fetcher", dist.get_rank(), mine)
    dist.barrier()
    if error is not None:
        raise error
    return cast(T, result) if mine == 0 else lookup()
