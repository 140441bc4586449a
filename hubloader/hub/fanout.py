"""One fetch per cluster: under a multi-node ``torch.distributed`` job, node 0 (the node of
global rank 0) fetches a snapshot from its source and the other nodes receive the bytes from
a peer over ``torch.distributed`` instead of from the source.

The nodes form a chain (``HUBLOADER_FANOUT=chain``) or a tree in which each node feeds
``HUBLOADER_FANOUT_DEGREE`` others (``tree``), by node rank (torchrun's ``GROUP_RANK``).
Node 0 passes the snapshot on file by file: it watches its own download
(:data:`.snapshot.arrivals`), says what it offers once the files are listed, and starts
sending each file to its children as soon as that file is verified and stored in its cache,
while it still fetches the next. A file is the root's unit because node 0's transfer writes
a file out of order and verifies it whole: nothing unverified leaves node 0. Every other
node forwards each chunk to its children as soon as it has written it, so the last node
trails node 0 by about one file's hop plus one chunk's time per further hop.

What a receiving node writes keeps a download's guarantees: each file goes to a temp file of
its own beside the partial downloads (adopting a dead receiver's bytes, see
:mod:`.partials`), is hashed as it arrives and checked against the sha256 node 0 verified it
with, and only once every file is in is linked into the cache through the ordinary snapshot
path (:func:`.snapshot.fetch_snapshot` with a source whose files are those verified copies).

No collective runs on the user's path. The nodes meet through the process group's store
(keys under ``hubloader/fanout/<request>/<round>``: the offer, then each file's entry as it
lands), and every edge of the tree is a private two-process gloo group built from that
store, so a user's ``dist.barrier()`` before or after a download pairs with the user's own.
Node 0 never waits for the others: it serves its children from background threads, so
``if rank == 0: download(); dist.barrier()`` works. A node whose cache already holds the
offered files (a second call), or whose cache node 0 is filling (a shared cache: node 0
holds its fetch lock), tells its parent so, and serves its own children from its cache.

A failure anywhere is written once to the store, naming the global rank of the node at
fault (node 0's own, when its fetch fails after it passed files on); every node checks that
key while it waits and between chunks, and a node that stops closes its edges, so its
neighbours' transfers fail at once rather than at a timeout. Node 0 killed between two
files closes no edge that anyone reads from: while it fetches, it raises a counter in the
store, and the nodes waiting for its next file name it once the counter stands still.
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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import settings
from ..errors import HubLoaderError, IntegrityError, PeerTransferError
from ..files import regular_size
from . import cache, distributed, locking, partials
from .cache import SnapshotPaths
from .request import SnapshotRequest
from .snapshot import Arrivals, arrivals, fetch_order, select_files
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


def _wait_key(plan: _Plan, key: str, limit: float, *, watch: bool = False,
              alive: bool = False) -> bytes | None:
    """The value of ``key`` once set, ``None`` after ``limit`` seconds. Polled, so that the
    connection stays free for this process's other requests meanwhile. ``watch``: raise
    the round's recorded failure as soon as there is one. ``alive``: node 0 is fetching
    what the key announces; raise, naming it, once its beat (:class:`_Beat`) has not
    moved for ``HUBLOADER_FANOUT_TIMEOUT``."""
    deadline, pause = time.monotonic() + limit, 0.001
    beat, beat_seen, beat_read = -1, time.monotonic(), 0.0
    try:
        while not plan.store.check([key]):
            failure = _failed(plan) if watch else None
            if failure is not None:
                raise failure
            now = time.monotonic()
            if alive and now - beat_read >= _Beat.every(plan):  # one read a beat: many wait
                beat_read = now
                count = plan.store.add(_Beat.key(plan), 0)
                if count != beat:
                    beat, beat_seen = count, now
                elif now - beat_seen > plan.timeout:
                    raise _blame(plan, 0, f"it gave no sign of life for {plan.timeout:g} s "
                                          "(HUBLOADER_FANOUT_TIMEOUT) while it fetched the "
                                          "next file: it was killed, or its machine stopped")
            if now >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        return plan.store.get(key)
    except PeerTransferError:
        raise
    except (RuntimeError, OSError) as err:  # torch's store errors are RuntimeErrors
        raise _store_gone(err) from err


def _store_gone(err: Exception) -> PeerTransferError:
    """The job's store stopped answering: it lives in global rank 0's process (the
    ``TCPStore`` of ``init_process_group``) or with node 0's launcher (``torchrun``'s), so
    node 0 is the node to name (nothing can be recorded: the store is gone)."""
    return _failure({"rank": 0, "node": 0,
                     "reason": f"the job's store stopped answering ({err}); it is served from "
                               "global rank 0's process or node 0's torchrun, so rank 0 is "
                               "most likely gone"})


class _Beat:
    """Node 0's sign of life while it fetches the files it offered: a counter in the store,
    raised every fraction of ``HUBLOADER_FANOUT_TIMEOUT``. A receiver waiting for the next
    file's entry has no connection to node 0 that would break if node 0 died; the counter
    standing still tells it instead."""

    def __init__(self, plan: _Plan):
        self._plan, self._stop = plan, threading.Event()
        threading.Thread(target=self._run, daemon=True, name="hubloader-fanout-beat").start()

    @staticmethod
    def key(plan: _Plan) -> str:
        return f"{plan.key}/alive"

    @staticmethod
    def every(plan: _Plan) -> float:
        return min(1.0, plan.timeout / 5)

    def _run(self) -> None:
        every = self.every(self._plan)
        while not self._stop.is_set():
            try:
                self._plan.store.add(self.key(self._plan), 1)
            except Exception as err:  # the store is gone: the receivers hear that themselves
                logger.debug("node 0's beat stopped: %s", err)
                return
            self._stop.wait(every)

    def stop(self) -> None:
        self._stop.set()


def _round(plan: _Plan, offer: dict) -> _Plan:
    """The plan of the round that passes on ``offer``: every call for the same bytes, on
    any node and however often, meets in one round, so a node that asks once more than
    another (node 0's own ``download()`` before a barrier) starts nothing new."""
    what = f"{_same_files(offer)}\0{offer.get('attempt', 0)}".encode()
    return dataclasses.replace(plan, key=f"{plan.base}/{hashlib.sha256(what).hexdigest()[:16]}")


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
    """The files one node passes on, in the offer's order, each readable from a path while
    it grows. A file is passed on once it is announced (its size and path known): node 0
    announces each file of its download as it lands in its cache, a node that holds the
    snapshot all its cache files at once (complete), a receiver each temp file as it starts
    receiving it, which :meth:`wrote` then extends chunk by chunk."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.sizes: dict[str, int] = {}
        self.sources: dict[str, Path] = {}
        self.have: dict[str, int] = {}
        self.cond = threading.Condition()
        self.error: BaseException | None = None

    def announce(self, path: str, size: int, source: Path, *, complete: bool) -> None:
        with self.cond:
            if path not in self.sizes:
                self.sizes[path], self.sources[path] = size, source
                self.have[path] = size if complete else 0
                self.cond.notify_all()

    def wrote(self, path: str, upto: int) -> None:
        with self.cond:
            self.have[path] = upto
            self.cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self.cond:
            self.error = self.error or error
            self.cond.notify_all()

    def opened(self, path: str) -> tuple[int, Path]:
        """The size and the readable path of ``path``, once it is announced."""
        with self.cond:
            while path not in self.sizes and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error
            return self.sizes[path], self.sources[path]

    def ready(self, path: str, upto: int) -> None:
        with self.cond:
            while self.have.get(path, -1) < upto and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise self.error


def _complete_feed(paths: SnapshotPaths, offered: list[str], entries: dict) -> _Feed:
    """The feed of a node whose cache holds the snapshot: every file announced, complete."""
    feed = _Feed(offered)
    for path in offered:
        feed.announce(path, int(entries[path]["size"]), paths.file(path), complete=True)
    return feed


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
        for path in feed.paths:
            size, source = feed.opened(path)
            with open(source, "rb", buffering=0) as fh:
                for lo in range(0, size, plan.chunk):
                    n = min(plan.chunk, size - lo)
                    feed.ready(path, lo + n)
                    failure = _failed(plan)
                    if failure is not None:
                        raise failure
                    view = buf[:n]
                    if fh.readinto(memoryview(view.numpy())) != n:
                        raise OSError(f"{source} is shorter than {size} bytes")
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
           cleanup: Callable[[], None] = lambda: None) -> bool:
    """Forward ``feed`` to this node's children, one thread each, in the background;
    ``cleanup`` once they have ended and ``done`` is set (or at exit). ``False``: this
    process serves the round already (from an earlier call), ``feed`` is not needed."""
    with _serving_lock:
        if plan.key in _serving:
            cleanup()
            return False
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
    return True


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
def _offer(revision: str, files: list[tuple[str, int | None, str | None]]) -> dict:
    """What node 0 says before any byte moves: the revision and the request's files (path,
    size where known, ETag), in the order they are fetched and passed on. Said with
    ``attempt``, node 0's failed tries at the same files, so that a try after a failure
    meets in a round of its own."""
    ordered = sorted(files, key=lambda f: fetch_order(f[0]))
    return {"revision": revision,
            "files": [{"path": p, "size": size, "etag": etag} for p, size, etag in ordered]}


def _same_files(offer: dict) -> str:
    """What identifies an offer's bytes: the revision and each file's path and ETag (the
    sizes a listing leaves out are known once the files are stored)."""
    return json.dumps([offer["revision"], [[f["path"], f["etag"]] for f in offer["files"]]])


def _entry(entry: Mapping[str, Any]) -> str:
    """A stored file's entry as node 0 passes it on: size, ETag and the sha256 the file
    was verified against (``verified``: against what, ``None`` for nothing)."""
    return json.dumps({"size": entry["size"], "etag": entry.get("etag"),
                       "digest": entry["sha256"], "verified": entry.get("verified")})


def _held(request: SnapshotRequest, snapshot_dir: Path) -> tuple[SnapshotPaths, dict] | None:
    """The paths and manifest of the complete snapshot at ``snapshot_dir``."""
    for paths in (request.paths_for(snapshot_dir.name), request.offline_paths()):
        manifest = cache.read_manifest(paths)
        if paths.snapshot_dir == snapshot_dir and manifest.get("complete"):
            return paths, manifest
    return None


def _holding(request: SnapshotRequest,
             snapshot_dir: Path) -> tuple[SnapshotPaths, dict, list[str]]:
    """The paths and manifest of the complete snapshot at ``snapshot_dir``, and the
    request's files in it (the same selection every node makes of them)."""
    held = _held(request, snapshot_dir)
    if held is None:
        raise PeerTransferError(f"{snapshot_dir} holds no complete snapshot to pass on")
    paths, manifest = held
    entries = manifest["files"]
    listed = [RemoteFile(p, size=e.get("size"), etag=e.get("etag"), sha256=e.get("sha256"))
              for p, e in entries.items()]
    chosen = select_files(listed, card_files=request.card_files,
                          allow_patterns=request.allow_patterns, where=request.uri)
    return paths, manifest, [f.path for f in chosen]


_attempts: Counter = Counter()  # node 0's failed tries, per request and offer


class _Stream:
    """Node 0's watch over its own download (see :data:`.snapshot.arrivals`): once the
    files are listed it says what it offers and starts serving its children; as each file
    lands, verified, in its cache, it passes on the file's entry, and the forwarders send
    the file. The watcher that was set before (a prefetch child's) is told everything too.

    A download that never lists (a warm cache, another process's fetch) or that lists
    other files than it keeps (the source changed meanwhile) is passed on by
    :meth:`finish` from the finished snapshot."""

    def __init__(self, plan: _Plan, request: SnapshotRequest, inner: Arrivals | None):
        self.plan, self.request, self.inner = plan, request, inner
        self.lock = threading.Lock()  # the fetch's threads report at once
        self.offer: dict | None = None
        self.round: _Plan | None = None
        self.feed: _Feed | None = None
        self.paths: SnapshotPaths | None = None
        self.index: dict[str, int] = {}
        self.sent: set[str] = set()
        self.owned = False  # the round is served by this call (not by an earlier one)
        self.beat: _Beat | None = None  # while files of the round are still to come

    def listed(self, snapshot_dir: Path, files: Sequence[RemoteFile], revision: str) -> None:
        if self.inner is not None:
            self.inner.listed(snapshot_dir, files, revision)
        with self.lock, self._guard():
            offer = _offer(revision, [(f.path, f.size, f.etag) for f in files])
            if self.offer is not None:
                if _same_files(offer) == _same_files(self.offer):
                    return  # listed again (a fetch that starts over): the same round
                self._abandon("the source changed while node 0 fetched it")
            self._publish(offer, self.request.paths_for(cache.revision_key(revision)))

    def landed(self, path: str, entry: Mapping[str, Any]) -> None:
        if self.inner is not None:
            self.inner.landed(path, entry)
        with self.lock, self._guard():
            self._land(path, entry)

    @contextlib.contextmanager
    def _guard(self):
        """Store trouble while the download runs leaves the download alone; what was not
        said is said by :meth:`finish`."""
        try:
            yield
        except Exception as err:
            logger.warning("passing on %s as it lands failed (%s); passing on the rest once "
                           "it is in the cache", self.request.uri, err)

    def _publish(self, offer: dict, paths: SnapshotPaths) -> None:
        offer["attempt"] = _attempts[(self.plan.base, _same_files(offer))]
        said = json.dumps(offer)
        self.offer, self.paths, self.round = offer, paths, _round(self.plan, offer)
        self.index = {f["path"]: i for i, f in enumerate(offer["files"])}
        self.feed = _Feed([f["path"] for f in offer["files"]])
        self.plan.store.set(f"{self.plan.key}/ready", said)
        self.owned = _serve(self.round, self.feed)
        if self.owned:
            self.beat = _Beat(self.round)

    def _land(self, path: str, entry: Mapping[str, Any]) -> None:
        if self.round is None or self.feed is None or self.paths is None or \
                path in self.sent or path not in self.index:
            return
        self.plan.store.set(f"{self.round.key}/file/{self.index[path]}", _entry(entry))
        self.sent.add(path)
        self.feed.announce(path, int(entry["size"]), self.paths.file(path), complete=True)
        if len(self.sent) == len(self.index):
            self._quiet()  # every entry is out: the edges tell the rest

    def _quiet(self) -> None:
        if self.beat is not None:
            self.beat.stop()
            self.beat = None

    def _abandon(self, reason: str) -> None:
        """Fail the round said so far (its receivers hear it at once); the next one is
        said afresh. A round an earlier call served is left as it is: it passed on what
        that call fetched."""
        self._quiet()
        if self.round is None or self.feed is None or self.offer is None:
            return
        if self.owned:
            self.feed.fail(_blame(self.round, 0, reason))
            _attempts[(self.plan.base, _same_files(self.offer))] += 1
        self.offer = self.round = self.feed = None
        self.owned = False
        self.sent.clear()

    def finish(self, snapshot_dir: Path) -> None:
        """Pass on what the finished download holds that was not passed on yet."""
        paths, manifest, chosen = _holding(self.request, snapshot_dir)
        entries = manifest["files"]
        with self.lock:
            if self.offer is not None and self.paths is not None and (
                    self.paths.snapshot_dir != snapshot_dir or not all(
                        f["path"] in entries and entries[f["path"]].get("etag") == f["etag"]
                        for f in self.offer["files"])):
                self._abandon("node 0 kept other files than it listed")
            if self.offer is None:
                self._publish(_offer(manifest["revision"], [
                    (p, entries[p]["size"], entries[p].get("etag")) for p in chosen]), paths)
            for path in list(self.index):
                self._land(path, entries[path])

    def fail(self, err: BaseException) -> None:
        """Node 0's download failed: every node hears it, naming node 0's rank."""
        reason = f"{type(err).__name__}: {err}"
        with self.lock:
            try:
                if self.offer is not None:
                    self._abandon(reason)
                self.plan.store.set(f"{self.plan.key}/ready",
                                    json.dumps({"error": reason, "rank": self.plan.rank}))
            except Exception as trouble:
                logger.warning("telling the other nodes that %s failed failed too (%s)",
                               self.request.uri, trouble)


def _root(plan: _Plan, request: SnapshotRequest,
          download: Callable[[SnapshotRequest], Path]) -> Path:
    stream = _Stream(plan, request, arrivals.get())
    try:
        token = arrivals.set(stream)
        try:
            snapshot_dir = download(request)
        finally:
            arrivals.reset(token)
        stream.finish(snapshot_dir)
    except BaseException as err:
        stream.fail(err)
        raise
    return snapshot_dir


# -- a receiving node ---------------------------------------------------------------------
def _holds_all(paths: SnapshotPaths, files: list[dict]) -> bool:
    """Whether this node's cache holds the offered files (same ETag and size): a second
    call, or a cache node 0 has filled."""
    entries = cache.read_manifest(paths)["files"]
    for f in files:
        entry = entries.get(f["path"])
        if not entry or f["etag"] is None or entry.get("etag") != f["etag"] or \
                (f["size"] is not None and entry.get("size") != f["size"]):
            return False
        if regular_size(paths.file(f["path"])) != entry.get("size"):
            return False
    return True


def _fetching_here(request: SnapshotRequest) -> bool:
    """Whether another process is fetching this snapshot into this node's cache now: node 0
    itself, when the nodes share the cache (its download holds the fetch lock)."""
    try:
        with locking.job_lock(request.offline_paths().fetch_lock, what=request.uri,
                              wait=False) as free:
            return not free
    except (HubLoaderError, OSError) as err:
        logger.debug("cannot tell whether %s is being fetched here (%s)", request.uri, err)
        return False


def _remote(path: str, entry: dict) -> RemoteFile:
    return RemoteFile(path, size=entry["size"], etag=entry["etag"],
                      sha256=entry["digest"] if entry["verified"] else None)


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
    plan = _round(plan, offer)
    files = offer["files"]
    paths = request.paths_for(cache.revision_key(offer["revision"]))
    if _holds_all(paths, files) or _fetching_here(request):
        # fetched before, or node 0 fills this very cache: pass on our copy once it is in
        plan.store.set(f"{plan.key}/child/{plan.node}", "skip")
        snapshot_dir = download(request)
        held, manifest, _ = _holding(request, snapshot_dir)
        offered = [f["path"] for f in files]
        if any(p not in manifest["files"] for p in offered):
            raise _blame(plan, plan.node, f"its cache at {snapshot_dir} lacks files node 0 "
                                          "offers")
        _serve(plan, _complete_feed(held, offered, manifest["files"]))
        return snapshot_dir
    plan.store.set(f"{plan.key}/child/{plan.node}", "join")
    parent = plan.parent(plan.node)
    if _wait_key(plan, f"{plan.base}/rank/{parent}", settings.lock_timeout()) is None:
        raise _blame(plan, parent, "it did not ask for the snapshot within "
                                   "HUBLOADER_LOCK_TIMEOUT")
    done = threading.Event()  # set once the received files are in this node's cache
    try:
        spools, entries = _receive_files(plan, paths, files, parent, done)
        origin = f"peer rank {_rank_of(plan, parent)}"
        listing = Listing(offer["revision"],
                          tuple(_remote(f["path"], entries[f["path"]]) for f in files))
        digests = {f["path"]: entries[f["path"]]["digest"] for f in files}
        return download(dataclasses.replace(
            request, source=_PeerSource(request.source, listing, spools, digests, origin)))
    finally:
        done.set()


def _receive_files(plan: _Plan, paths: SnapshotPaths, files: list[dict], parent: int,
                   done: threading.Event) -> tuple[dict[str, Path], dict[str, dict]]:
    """Receive every file from ``parent`` into temp files, each once node 0 has passed on
    its entry (forwarding each chunk to this node's children as it lands); the verified
    temp files and the entries, by path. The temp files are removed once ``done`` is set
    and the children have had them."""
    paths.meta_dir.mkdir(parents=True, exist_ok=True)
    owner = partials.new_owner()
    spools: dict[str, Path] = {}
    entries: dict[str, dict] = {}
    feed = _Feed([f["path"] for f in files])

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
    try:
        with contextlib.ExitStack() as stack:
            heartbeat: partials.Heartbeat | None = None
            for i, f in enumerate(files):
                path = f["path"]
                # node 0 has this file verified in its cache once its entry is said
                said = _wait_key(plan, f"{plan.key}/file/{i}", settings.lock_timeout(),
                                 watch=True, alive=True)
                if said is None:
                    raise _blame(plan, 0, f"it did not pass on {path} within "
                                          "HUBLOADER_LOCK_TIMEOUT")
                entry = entries[path] = json.loads(said)
                spool = spools[path] = partials.claim(paths, _remote(path, entry), owner)
                spool.touch()  # readable by the forwarders from now on
                feed.announce(path, int(entry["size"]), spool, complete=False)
                if heartbeat is None:
                    heartbeat = stack.enter_context(partials.Heartbeat(spool))
                heartbeat.partial = spool
                _receive_file(plan, group, feed, path, entry, spool, parent)
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
    return spools, entries


def _receive_file(plan: _Plan, group, feed: _Feed, path: str, entry: dict, spool: Path,
                  parent: int) -> None:
    size = int(entry["size"])
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
        feed.wrote(path, have)
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
                feed.wrote(path, lo + n)
        if digest.hexdigest() != entry["digest"]:
            spool.unlink(missing_ok=True)
            raise IntegrityError(f"{path}: the bytes received from node {parent} have "
                                 f"sha256 {digest.hexdigest()}, expected {entry['digest']}",
                                 path=path, expected=entry["digest"], actual=digest.hexdigest())
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
