"""One fetcher per node under ``torch.distributed``: local rank 0 downloads while the other
ranks of its node wait for a key it sets in the process group's store, then read the warm
cache without touching the network.

No collective runs on the download path. A collective (a barrier) is bounded by the process
group's timeout, which a long download outlives, and it would consume a barrier the user's
own code places after ``if rank == 0: download()``. A store key is waited on by the ranks
that need it and by no one else, for ``HUBLOADER_LOCK_TIMEOUT`` at most, like a lock.

Active only when torch is already imported and a process group is initialized with more
than one rank; ``import hubloader`` never imports torch.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter
from typing import Callable, TypeVar, cast

from .. import settings
from ..errors import LocalEntryNotFoundError, PeerTransferError

__all__ = ["active", "local_rank", "node_id", "once_per_node"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_DONE, _FAILED = b"done", b"failed"
_POLL = 30.0  # seconds per store wait, so a negative (endless) timeout still wakes up
_calls: Counter = Counter()  # per download key: how many times this process asked for it
_calls_lock = threading.Lock()


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


def node_id() -> str:
    """Which node this process runs on: the host name, and the node's rank in the job
    (``GROUP_RANK``, set by torchrun) where there is one, so that two launchers on one host
    count as two nodes."""
    group = os.environ.get("GROUP_RANK", "").strip()
    return socket.gethostname() + (f"/{group}" if group else "")


def _incarnation() -> str:
    """Which start of the job this is: torchrun restarts failed workers against the same
    store, where a key set by the previous start must not answer the new one."""
    return os.environ.get("TORCHELASTIC_RESTART_COUNT", "").strip()


def _store(dist):
    """The process group's key-value store, or ``None`` where it cannot be had."""
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception as err:  # another backend's group, or a torch without the helper
        logger.debug("no process-group store (%s): each rank fetches for itself", err)
        return None


def _key(what: str) -> str:
    """The store key of this process's next request for ``what`` on its node. Ranks of a
    node ask for the same things in the same order, so their n-th requests meet at one key;
    a rank that asks once more than another (rank 0's own ``download()`` before a barrier)
    only sets a key nobody waits for."""
    digest = hashlib.sha256(f"{node_id()}\0{_incarnation()}\0{what}".encode()).hexdigest()[:32]
    with _calls_lock:
        _calls[digest] += 1
        return f"hubloader/fetch/{digest}/{_calls[digest]}"


def _wait(store, key: str, what: str) -> bytes | None:
    """Wait for ``key`` for ``HUBLOADER_LOCK_TIMEOUT`` at most; its value, or ``None``."""
    limit = settings.lock_timeout()
    started = time.monotonic()
    while True:
        left = _POLL if limit < 0 else min(_POLL, limit - (time.monotonic() - started))
        try:
            store.wait([key], datetime.timedelta(seconds=max(left, 0.01)))
            return store.get(key)
        except Exception as err:  # the store says "timeout" with a plain RuntimeError
            if "timeout" not in str(err).lower() and "timed out" not in str(err).lower():
                raise
        if limit >= 0 and time.monotonic() - started >= limit:
            logger.warning("%s: local rank 0 has not finished fetching it after %.0f s "
                           "(HUBLOADER_LOCK_TIMEOUT); fetching alongside it", what, limit)
            return None


def once_per_node(fetch: Callable[[], T], lookup: Callable[[], T], *, what: str,
                  request: str = "") -> T:
    """Run ``fetch`` on local rank 0 and ``lookup`` (cache only) on the other ranks of the
    node, once rank 0 has said (through the process group's store) that it is done.

    Args:
        fetch: the download.
        lookup: the cache-only lookup of the same thing.
        what: what is fetched, for messages (its URI).
        request: the rest of what makes two requests the same (revision, target folder,
            patterns), written the same way on every rank.

    Raises:
        Whatever ``fetch`` raised on local rank 0. On the other ranks:
        LocalEntryNotFoundError: local rank 0 failed to fetch it.
        PeerTransferError: local rank 0's fan-out from another node failed (same rank). A rank that waited
        ``HUBLOADER_LOCK_TIMEOUT`` in vain runs ``fetch`` itself (the per-file locks still
        keep each file fetched once), with its errors.
    """
    dist = _dist()
    store = _store(dist) if dist is not None else None
    if store is None:
        return fetch()
    key = _key(f"{what}\0{request}")
    if local_rank() == 0:
        outcome = _FAILED
        try:
            result = fetch()
            outcome = _DONE
            return result
        except PeerTransferError as err:  # the node's other ranks name the same peer
            outcome = _FAILED + b":" + json.dumps([str(err), err.rank]).encode()
            raise
        finally:
            try:
                store.set(key, outcome)
            except Exception as err:  # the waiting ranks then time out and fetch themselves
                logger.warning("could not tell the other ranks that %s is fetched: %s", what, err)
    logger.debug("rank %d waiting for its node's fetch of %s", dist.get_rank(), what)
    said = _wait(store, key, what)
    if said is None:
        return fetch()
    if said.startswith(_FAILED + b":"):
        message, rank = json.loads(said[len(_FAILED) + 1:])
        raise PeerTransferError(message, rank=rank)
    if said != _DONE:
        raise LocalEntryNotFoundError(f"{what}: local rank 0 failed to fetch it; its error "
                                      "says why (see that rank's log)")
    return lookup()
