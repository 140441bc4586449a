"""One fetch per cluster: under a multi-node ``torch.distributed`` job, node 0 (the node of
global rank 0) fetches a snapshot from its source and the other nodes receive the bytes from
a peer over ``torch.distributed`` instead of from the source.

The nodes form a chain (``HUBLOADER_FANOUT=chain``) or a tree in which each node feeds
``HUBLOADER_FANOUT_DEGREE`` others (``tree``), by node rank (torchrun's ``GROUP_RANK``).
A node forwards each chunk to its children as soon as it has written it, so the last node
trails the first by about one chunk's time per hop, not one file's.

What a receiving node writes keeps a download's guarantees: each file goes to a temp file of
its own beside the partial downloads (adopting a dead receiver's bytes, see
:mod:`.partials`), is hashed as it arrives and checked against the sha256 node 0 verified it
with, and only then is linked into the cache through the ordinary snapshot path
(:func:`.snapshot.fetch_snapshot` with a source whose files are those verified copies).

No collective runs on the user's path. The nodes meet through the process group's store
(keys under ``hubloader/fanout/<request>/<n>``), and every edge of the tree is a private
two-process gloo group built from that store, so a user's ``dist.barrier()`` before or after
a download pairs with the user's own. Node 0 never waits for the others: it fetches, says
what it holds, and serves its children from a background thread, so ``if rank == 0:
download(); dist.barrier()`` works. A node whose cache already holds every file (a cache
shared with node 0, or a second call) tells its parent so, and serves its own children
from its cache.

A failure anywhere is written once to the store, naming the global rank of the node at
fault; every node checks that key between chunks, and a node that stops closes its edges, so
its neighbours' transfers fail at once rather than at a timeout.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime
import gc
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import settings
from ..errors import IntegrityError, PeerTransferError
from . import cache, distributed, partials
from .cache import SnapshotPaths
from .request import SnapshotRequest
from .snapshot import select_files
from .sources.base import Listing, RemoteFile, Source

__all__ = ["across_nodes", "job_group"]

logger = logging.getLogger(__name__)

_serving: set[str] = set()  # rounds this process serves already
_serving_lock = threading.Lock()
_transfers: set[threading.Thread] = set()  # forwarders still serving: joined at exit
_cleanups: list[Callable[[], None]] = []  # removals of received temp files still pending
_DIGEST_FIELDS = ("sha256", "md5", "git_sha1", "checksum")


@dataclass(frozen=True)
class _Plan:
    """This node's place in one fan-out: the store keys' prefix, node ranks, tree shape."""

    store: Any
    key: str  # the request's keys (the ranks, node 0's offer); a round's keys once known
    base: str
    node: int
    nodes: int
    rank: int
    degree: int  # children per node (1: a chain)
    chunk: int
    timeout: float

    def parent(self, node: int) -> int:
        return (node - 1) // self.degree

    def children(self, node: int) -> list[int]:
        first = node * self.degree + 1
        return list(range(first, min(first + self.degree, self.nodes)))


def _plan(request: SnapshotRequest) -> _Plan | None:
    """This node's plan, or ``None`` when the fan-out does not apply (off, one node, no
    store, not the node's local rank 0)."""
    mode = settings.fanout_mode()
    nodes = os.environ.get("GROUP_WORLD_SIZE", "").strip()
    node = os.environ.get("GROUP_RANK", "").strip()
    if mode == "off" or not nodes.isdigit() or int(nodes) < 2 or not node.isdigit():
        return None
    dist = distributed._dist()
    store = _client(distributed._store(dist)) if dist is not None else None
    if store is None or distributed.local_rank() != 0:
        return None
    what = json.dumps([request.uri, request.revision, list(request.allow_patterns or []),
                       sorted(request.card_files.items()), distributed._incarnation(),
                       os.environ.get("TORCHELASTIC_RUN_ID", "")])
    digest = hashlib.sha256(what.encode()).hexdigest()[:32]
    key = f"hubloader/fanout/{digest}"
    return _Plan(store, key, key, int(node), int(nodes), dist.get_rank(),
                 1 if mode == "chain" else settings.fanout_degree(),
                 settings.fanout_chunk_bytes(), settings.fanout_timeout())


def across_nodes(request: SnapshotRequest, download: Callable[[SnapshotRequest], Path]) -> Path:
    """``download(request)`` on node 0; on the other nodes, the same snapshot received from
    a peer and stored in this node's cache (see the module's description).

    Args:
        request: the snapshot.
        download: the ordinary download (locks, cache, source) of one request.

    Returns:
        The snapshot directory in this node's cache.

    Raises:
        PeerTransferError: a node failed or went silent mid-transfer (its rank is in the
            error), or node 0 failed to fetch the snapshot.
        Whatever ``download`` raises.
    """
    plan = _plan(request)
    if plan is None:
        return download(request)
    plan.store.set(f"{plan.base}/rank/{plan.node}", str(plan.rank))
    if plan.node == 0:
        return _root(plan, request, download)
    return _receive(plan, request, download)


@contextlib.contextmanager
def job_group():
    """Join the job's process group for the block when this process was started by
    ``torchrun`` and none is initialized yet (the ``hubloader download`` command), so that
    a node's ranks fetch once and the nodes once in all; elsewhere, do nothing."""
    env = os.environ
    if not (env.get("TORCHELASTIC_RUN_ID") and env.get("MASTER_ADDR")
            and env.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")):
        yield
        return
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo")
    try:
        yield
    finally:
        _drain()  # the children of this node are served before the group goes
        dist.destroy_process_group()


# -- the store ------------------------------------------------------------------------------
def _client(store):
    """A connection of this fan-out's own to the job's store. A TCPStore client serves one
    request at a time, and a wait (a gloo group's rendezvous among them) holds it: on the
    process group's own client that would stall the user's and the other edges' requests.
    Other stores (a FileStore) are used as they are."""
    import torch.distributed as dist

    if store is None:
        return None
    inner = store
    while hasattr(inner, "underlying_store"):
        inner = inner.underlying_store
    if not isinstance(inner, dist.TCPStore):
        return store
    try:
        return dist.TCPStore(inner.host, inner.port, is_master=False, wait_for_workers=False,
                             timeout=datetime.timedelta(seconds=settings.fanout_timeout()))
    except Exception as err:
        logger.debug("no connection of its own to the store (%s); sharing the group's", err)
        return store


def _wait_key(plan: _Plan, key: str, limit: float, *, watch: bool = False) -> bytes | None:
    """The value of ``key`` once set, ``None`` after ``limit`` seconds. Polled, so that the
    connection stays free for this process's other requests meanwhile. ``watch``: raise
    the round's recorded failure as soon as there is one."""
    deadline, pause = time.monotonic() + limit, 0.001
    while not plan.store.check([key]):
        failure = _failed(plan) if watch else None
        if failure is not None:
            raise failure
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    return plan.store.get(key)


def _round(plan: _Plan, offer: bytes) -> _Plan:
    """The plan of the round that passes on ``offer``: every call for the same bytes, on
    any node and however often, meets in one round, so a node that asks once more than
    another (node 0's own ``download()`` before a barrier) starts nothing new."""
    return dataclasses.replace(plan, key=f"{plan.base}/{hashlib.sha256(offer).hexdigest()[:16]}")


def _rank_of(plan: _Plan, node: int) -> int:
    key = f"{plan.base}/rank/{node}"
    try:
        return int(plan.store.get(key)) if plan.store.check([key]) else -1
    except Exception:
        return -1


def _blame(plan: _Plan, node: int, reason: str) -> PeerTransferError:
    """Record (unless a failure is recorded already) that ``node`` failed; the recorded
    failure, as the error to raise."""
    failure = json.dumps({"rank": _rank_of(plan, node), "node": node, "reason": reason})
    try:
        recorded = plan.store.compare_set(f"{plan.key}/failed", "", failure)
    except Exception:  # the store itself is gone (the job is being torn down)
        recorded = failure.encode()
    return _failure(json.loads(recorded or failure))


def _failure(said: dict) -> PeerTransferError:
    rank = int(said.get("rank", -1))
    who = f"rank {rank}" if rank >= 0 else "local rank 0"
    return PeerTransferError(
        f"the fan-out of this snapshot between nodes failed at {who} (node {said.get('node')}): "
        f"{said.get('reason')}; nothing of it is visible in the cache. See that rank's log, "
        "then run again (received files resume), or set HUBLOADER_FANOUT=off to fetch on "
        "every node from the source", rank=rank)


def _failed(plan: _Plan) -> PeerTransferError | None:
    key = f"{plan.key}/failed"
    try:
        if plan.store.check([key]):
            return _failure(json.loads(plan.store.get(key)))
    except PeerTransferError:
        raise
    except Exception:
        return None
    return None


def _settled(plan: _Plan, err: Exception) -> PeerTransferError | None:
    """The failure recorded when a peer's connection broke with ``err``. A peer that stops
    records why before it closes its edges, so a closed connection is answered at once;
    after a timeout, the failure may be on its way from a node further up, and is waited
    for a moment."""
    if "timed out" not in str(err).lower() and "timeout" not in str(err).lower():
        return _failed(plan)
    deadline = time.monotonic() + 2.0
    while True:
        failure = _failed(plan)
        if failure is not None or time.monotonic() >= deadline:
            return failure
        time.sleep(0.05)


# -- edges ---------------------------------------------------------------------------------
_edges_lock = threading.Lock()  # one gloo group built at a time in a process


def _edge(plan: _Plan, parent: int, child: int, me: int):
    """The private two-process gloo group of one edge of the tree (``me``: 0 parent, 1 child).
    The parent says its end is being built (``edge-up``) only once it builds it: groups built
    at once by threads of one process fail to connect."""
    import torch.distributed as dist

    prefix = dist.PrefixStore(f"{plan.key}/edge/{parent}-{child}", _client(plan.store))
    with _edges_lock:
        if me == 0:
            plan.store.set(f"{plan.key}/edge-up/{child}", "1")
        return dist.ProcessGroupGloo(prefix, me, 2, datetime.timedelta(seconds=plan.timeout))


def _buffer(size: int):
    import torch

    return torch.empty(size, dtype=torch.uint8)


class _Feed:
    """The files one node passes on, each readable from a path while it grows: a node that
    holds the snapshot gives its cache files (complete), a receiver its temp files, which
    :meth:`wrote` extends chunk by chunk."""

    def __init__(self, files: list[dict], sources: dict[str, Path], complete: bool):
        self.files, self.sources = files, sources
        self.have = {f["path"]: (int(f["size"]) if complete else 0) for f in files}
        self.cond = threading.Condition()
        self.error: BaseException | None = None

    def wrote(self, path: str, upto: int) -> None:
        with self.cond:
            self.have[path] = upto
            self.cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.error = self.error or error
            self.cond.notify_all()

    def ready(self, path: str, upto: int) -> None:
        with self.cond:
            while self.have[path] < upto and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error


def _forward(plan: _Plan, feed: _Feed, child: int) -> None:
    """Feed ``child`` every file of ``feed`` (run in a thread; failures go to the store)."""
    try:
        _answer_and_forward(plan, feed, child)
    finally:
        _transfers.discard(threading.current_thread())


def _answer_and_forward(plan: _Plan, feed: _Feed, child: int) -> None:
    try:
        said = _wait_key(plan, f"{plan.key}/child/{child}", settings.lock_timeout(), watch=True)
    except PeerTransferError as err:
        feed.fail(err)
        return
    if said is None:
        logger.warning("node %d did not ask for %s within HUBLOADER_LOCK_TIMEOUT; its part of "
                       "the fan-out is not served", child, plan.key)
        return
    if said == b"skip":  # its cache holds the files: it serves its own children
        return
    _forward_to(plan, feed, child)


def _forward_to(plan: _Plan, feed: _Feed, child: int) -> None:
    try:
        group = _edge(plan, plan.node, child, 0)
    except Exception as err:
        feed.fail(_blame(plan, child, f"it did not connect ({err})"))
        return
    buf = _buffer(plan.chunk)
    try:
        for f in feed.files:
            size = int(f["size"])
            with open(feed.sources[f["path"]], "rb", buffering=0) as fh:
                for lo in range(0, size, plan.chunk):
                    n = min(plan.chunk, size - lo)
                    feed.ready(f["path"], lo + n)
                    failure = _failed(plan)
                    if failure is not None:
                        raise failure
                    view = buf[:n]
                    if fh.readinto(memoryview(view.numpy())) != n:
                        raise OSError(f"{feed.sources[f['path']]} is shorter than {size} bytes")
                    try:
                        group.send([view], 1, 0).wait()
                    except Exception as err:
                        raise _settled(plan, err) or _blame(plan, child, f"sending to it "
                                                                         f"failed ({err})") from err
    except PeerTransferError as err:
        feed.fail(err)
    except BaseException as err:  # this node's own trouble (a file it cannot read)
        feed.fail(_blame(plan, plan.node, f"{type(err).__name__}: {err}"))
    finally:
        del group
        gc.collect()  # closes the edge now: the child's wait ends with this node's error


def _serve(plan: _Plan, feed: _Feed, *, done: threading.Event | None = None,
           cleanup: Callable[[], None] = lambda: None) -> None:
    """Forward ``feed`` to this node's children, one thread each, in the background;
    ``cleanup`` once they have ended and ``done`` is set (or at exit)."""
    with _serving_lock:
        if plan.key in _serving:
            cleanup()
            return
        _serving.add(plan.key)
    threads = [threading.Thread(target=_forward, args=(plan, feed, c), daemon=True,
                                name=f"hubloader-fanout-{c}") for c in plan.children(plan.node)]
    _transfers.update(threads)
    for t in threads:
        t.start()
    _cleanups.append(cleanup)

    def finish() -> None:
        for t in threads:
            t.join()
        if feed.error is not None:
            logger.error("%s", feed.error)
        if done is not None:
            done.wait()
        if cleanup in _cleanups:
            _cleanups.remove(cleanup)
            cleanup()

    threading.Thread(target=finish, daemon=True, name="hubloader-fanout-serve").start()


@atexit.register
def _drain() -> None:
    """At exit, let the children finish receiving from this process, for
    ``HUBLOADER_FANOUT_TIMEOUT`` at most (a node that never asks for the snapshot holds
    the exit that long), then remove the received temp files."""
    deadline = time.monotonic() + settings.fanout_timeout()
    for t in list(_transfers):
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    for cleanup in list(_cleanups):
        cleanup()


# -- what node 0 (or a node whose cache holds the snapshot) offers --------------------------
def _held(request: SnapshotRequest, snapshot_dir: Path) -> tuple[SnapshotPaths, dict] | None:
    """The paths and manifest of the complete snapshot at ``snapshot_dir``."""
    for paths in (request.paths_for(snapshot_dir.name), request.offline_paths()):
        manifest = cache.read_manifest(paths)
        if paths.snapshot_dir == snapshot_dir and manifest.get("complete"):
            return paths, manifest
    return None


def _offer(request: SnapshotRequest, snapshot_dir: Path) -> tuple[dict, dict[str, Path]]:
    """What node 0 sends: the revision and the request's files with the digests they were
    verified against (the same selection every node makes of them), and where each is."""
    held = _held(request, snapshot_dir)
    if held is None:
        raise PeerTransferError(f"{snapshot_dir} holds no complete snapshot to pass on")
    paths, manifest = held
    entries = manifest["files"]
    listed = [RemoteFile(p, size=e.get("size"), etag=e.get("etag"), sha256=e.get("sha256"))
              for p, e in entries.items()]
    chosen = select_files(listed, card_files=request.card_files,
                          allow_patterns=request.allow_patterns, where=request.uri)
    files = [{"path": f.path, "size": entries[f.path]["size"], "etag": entries[f.path].get("etag"),
              "digest": entries[f.path]["sha256"],
              "verified": entries[f.path].get("verified")} for f in chosen]
    return ({"revision": manifest["revision"], "files": files},
            {f["path"]: paths.file(f["path"]) for f in files})


def _root(plan: _Plan, request: SnapshotRequest,
          download: Callable[[SnapshotRequest], Path]) -> Path:
    try:
        snapshot_dir = download(request)
        offer, sources = _offer(request, snapshot_dir)
    except BaseException as err:
        plan.store.set(f"{plan.key}/ready", json.dumps(
            {"error": f"{type(err).__name__}: {err}", "rank": plan.rank}))
        raise
    said = json.dumps(offer).encode()
    plan.store.set(f"{plan.key}/ready", said)
    _serve(_round(plan, said), _Feed(offer["files"], sources, complete=True))
    return snapshot_dir


# -- a receiving node ---------------------------------------------------------------------
def _holds_all(paths: SnapshotPaths, files: list[dict]) -> bool:
    entries = cache.read_manifest(paths)["files"]
    for f in files:
        entry = entries.get(f["path"])
        if not entry or entry.get("sha256") != f["digest"]:
            return False
        try:
            if paths.file(f["path"]).stat().st_size != f["size"]:
                return False
        except FileNotFoundError:
            return False
    return True


def _remote(f: dict) -> RemoteFile:
    return RemoteFile(f["path"], size=f["size"], etag=f["etag"],
                      sha256=f["digest"] if f["verified"] else None)


def _receive(plan: _Plan, request: SnapshotRequest,
             download: Callable[[SnapshotRequest], Path]) -> Path:
    raw = _wait_key(plan, f"{plan.key}/ready", settings.lock_timeout())
    if raw is None:
        logger.warning("%s: node 0 has not fetched it after HUBLOADER_LOCK_TIMEOUT; fetching "
                       "it from the source on this node", request.uri)
        return download(request)
    offer = json.loads(raw)
    if "error" in offer:
        raise PeerTransferError(f"{request.uri}: node 0 (rank {offer['rank']}) failed to fetch "
                                f"it: {offer['error']}", rank=int(offer["rank"]))
    plan = _round(plan, raw)
    files = offer["files"]
    paths = request.paths_for(cache.revision_key(offer["revision"]))
    if _holds_all(paths, files):  # shared with node 0, or fetched before: pass on our copy
        plan.store.set(f"{plan.key}/child/{plan.node}", "skip")
        snapshot_dir = download(request)
        held_offer, sources = _offer(request, snapshot_dir)
        _serve(plan, _Feed(held_offer["files"], sources, complete=True))
        return snapshot_dir
    plan.store.set(f"{plan.key}/child/{plan.node}", "join")
    parent = plan.parent(plan.node)
    if _wait_key(plan, f"{plan.base}/rank/{parent}", settings.lock_timeout()) is None:
        raise _blame(plan, parent, "it did not ask for the snapshot within "
                                   "HUBLOADER_LOCK_TIMEOUT")
    done = threading.Event()  # set once the received files are in this node's cache
    try:
        spools = _receive_files(plan, paths, files, parent, done)
        origin = f"peer rank {_rank_of(plan, parent)}"
        listing = Listing(offer["revision"], tuple(_remote(f) for f in files))
        digests = {f["path"]: f["digest"] for f in files}
        return download(dataclasses.replace(
            request, source=_PeerSource(request.source, listing, spools, digests, origin)))
    finally:
        done.set()


def _receive_files(plan: _Plan, paths: SnapshotPaths, files: list[dict], parent: int,
                   done: threading.Event) -> dict[str, Path]:
    """Receive every file from ``parent`` into temp files (forwarding each chunk to this
    node's children as it lands); the verified temp files by path. They are removed once
    ``done`` is set and the children have had them."""
    paths.meta_dir.mkdir(parents=True, exist_ok=True)
    owner = partials.new_owner()
    spools = {f["path"]: partials.claim(paths, _remote(f), owner) for f in files}
    for spool in spools.values():  # readable by the forwarders from the start
        spool.touch()
    feed = _Feed(files, spools, complete=False)

    def cleanup() -> None:  # the children have what they need: the temp files may go
        if feed.error is not None:  # kept for the next try, which resumes from them
            return
        for spool in spools.values():
            for p in partials.unit(spool):
                p.unlink(missing_ok=True)

    _serve(plan, feed, done=done, cleanup=cleanup)
    try:
        # the parent's end first: a rendezvous with a peer that died would last the timeout
        if _wait_key(plan, f"{plan.key}/edge-up/{plan.node}", settings.lock_timeout(),
                     watch=True) is None:
            raise TimeoutError("HUBLOADER_LOCK_TIMEOUT passed")
        group = _edge(plan, parent, plan.node, 1)
    except PeerTransferError as err:
        feed.fail(err)
        raise
    except Exception as err:
        error = _blame(plan, parent, f"it did not connect ({err})")
        feed.fail(error)
        raise error from err
    heartbeat = partials.Heartbeat(next(iter(spools.values())))
    try:
        with heartbeat:
            for f in files:
                heartbeat.partial = spools[f["path"]]
                _receive_file(plan, group, feed, f, spools[f["path"]], parent)
    except BaseException as err:
        failure = err if isinstance(err, PeerTransferError) else \
            _blame(plan, plan.node, f"{type(err).__name__}: {err}")
        feed.fail(failure)
        if failure is err:
            raise
        raise failure from err
    finally:
        del group
        gc.collect()  # closes the edge to the parent at once
    return spools


def _receive_file(plan: _Plan, group, feed: _Feed, f: dict, spool: Path, parent: int) -> None:
    size = int(f["size"])
    try:
        have = spool.stat().st_size
    except FileNotFoundError:
        have = 0
    if have > size:
        spool.unlink()
        have = 0
    digest = hashlib.sha256()
    fd = os.open(spool, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        pos = 0
        while pos < have:  # bytes a dead receiver left: part of the digest, not written again
            block = os.pread(fd, min(8 << 20, have - pos), pos)
            digest.update(block)
            pos += len(block)
        feed.wrote(f["path"], have)
        buf = _buffer(plan.chunk)
        for lo in range(0, size, plan.chunk):
            n = min(plan.chunk, size - lo)
            failure = _failed(plan)
            if failure is not None:
                raise failure
            view = buf[:n]
            try:
                group.recv([view], 0, 0).wait()
            except Exception as err:
                raise _settled(plan, err) or _blame(plan, parent, f"receiving from it failed "
                                                                  f"({err})") from err
            data = memoryview(view.numpy())
            if lo + n > have:
                skip = max(0, have - lo)
                os.pwrite(fd, data[skip:], lo + skip)
                digest.update(data[skip:])
                feed.wrote(f["path"], lo + n)
        if digest.hexdigest() != f["digest"]:
            spool.unlink(missing_ok=True)
            raise IntegrityError(f"{f['path']}: the bytes received from node {parent} have "
                                 f"sha256 {digest.hexdigest()}, expected {f['digest']}",
                                 path=f["path"], expected=f["digest"], actual=digest.hexdigest())
        os.fdatasync(fd)  # the cache takes it as a finished copy: on disk first
    finally:
        os.close(fd)


class _PeerSource(Source):
    """The source a receiving node stores from: the listing node 0 sent, each file a
    verified temp file (:meth:`local_copy`), linked into the cache like a copy from another
    cache; never a request."""

    supports_ranges = False

    def __init__(self, inner: Source, listing: Listing, spools: dict[str, Path],
                 digests: dict[str, str], origin: str):
        self.inner, self.uri, self.local_origin = inner, inner.uri, origin
        self._listing, self._spools, self._digests = listing, spools, digests

    def is_pinned(self, revision: str | None) -> bool:
        return self.inner.is_pinned(revision)

    def list_files(self, revision: str | None) -> Listing:
        return self._listing

    def local_copy(self, file: RemoteFile) -> tuple[Path, str] | None:
        spool = self._spools.get(file.path)
        return (spool, self._digests[file.path]) if spool is not None else None

    def iter_bytes(self, file: RemoteFile, *, revision: str, start: int = 0,
                   end: int | None = None):
        raise PeerTransferError(f"{self.describe(file.path)}: no verified copy was received "
                                "from the peer")
