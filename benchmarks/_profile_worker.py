"""The prefetch child of hubloader, timed phase by phase; prints JSON on its last stdout line.

    python benchmarks/_profile_worker.py NAME
    python benchmarks/_profile_worker.py --autoloader NAME

``--autoloader``: the parent instead, ``AutoLoader("base", NAME).get_model()`` as scenario 9
runs it: when it spawns the prefetch child, when it reaches the join (torch and the model
classes imported) and leaves it, and when the model is ready.

Does what ``hubloader.prefetch``'s child does (``from hubloader.hub.inflight import
_child_main``, then ``hubloader.hub.download(NAME)``), with timestamps taken around the steps
of the cold path: hubloader's functions are wrapped here (the library is not changed) and
botocore's event hooks mark each request's send and its answer (the headers, for a GET).
Timestamps are CLOCK_MONOTONIC, which the parent shares, so they count from the spawn.
"""

import time

T_MAIN = time.monotonic()  # the interpreter is up: nothing imported but the site

import contextlib  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402

marks: dict[str, float] = {"main": T_MAIN}
requests: list[dict] = []  # {op, key, range, sent, answered}
files: dict[str, dict] = defaultdict(dict)
_lock = threading.Lock()


def _now() -> float:
    return time.monotonic()


def _instrument() -> None:
    from hubloader.hub import cache, digests, snapshot
    from hubloader.hub.sources import s3

    real_make_client = s3.make_client

    def make_client(*args, **kwargs):
        marks["client_asked"] = _now()
        # botocore, as make_client imports it (with the collector paused, where it pauses it);
        # a make_client that also imports boto3 does so in the next phase
        with getattr(s3, "gc_paused", contextlib.nullcontext)():
            import botocore.config  # noqa: F401
            import botocore.session  # noqa: F401

        marks["boto3_imported"] = _now()
        client = real_make_client(*args, **kwargs)
        marks["client_made"] = _now()
        events = client.meta.events
        events.register("before-send.s3", _sent)
        events.register("after-call.s3", _answered)
        return client

    s3.make_client = make_client

    real_fetch_file = snapshot.fetch_file

    def fetch_file(source, file, **kwargs):
        rec = files[file.path]
        rec.update(size=file.size, fetch_start=_now())
        received = kwargs.get("received") or (lambda: None)

        def on_received():
            rec["last_byte"] = _now()
            received()

        kwargs["received"] = on_received
        try:
            return real_fetch_file(source, file, **kwargs)
        finally:
            rec["fetch_end"] = _now()

    snapshot.fetch_file = fetch_file

    real_update = digests.Digests.update

    def update(self, data):
        t0 = time.thread_time()
        real_update(self, data)
        took = time.thread_time() - t0
        rec = files[self.file.path]
        with _lock:
            rec["hash_s"] = rec.get("hash_s", 0.0) + took
            rec["hash_end"] = _now()

    digests.Digests.update = update

    real_store = snapshot._store

    def store(paths, verified, sha256, path, **kwargs):
        t0 = _now()
        try:
            return real_store(paths, verified, sha256, path, **kwargs)
        finally:
            files[path]["store_s"] = _now() - t0

    snapshot._store = store

    real_manifest = cache.update_manifest

    def update_manifest(*args, **kwargs):
        t0 = _now()
        try:
            return real_manifest(*args, **kwargs)
        finally:
            with _lock:
                marks["manifest_s"] = marks.get("manifest_s", 0.0) + _now() - t0

    cache.update_manifest = update_manifest


def _sent(request, event_name, **_):
    with _lock:
        requests.append({"op": event_name.rsplit(".", 1)[1], "url": request.url,
                         "range": str(request.headers.get("Range") or ""), "sent": _now(),
                         "thread": threading.get_ident()})


def _answered(event_name, **_):
    op, thread = event_name.rsplit(".", 1)[1], threading.get_ident()
    with _lock:
        for req in reversed(requests):
            if req["op"] == op and req["thread"] == thread and "answered" not in req:
                req["answered"] = _now()
                return


def autoloader(name: str) -> None:
    from hubloader.hub import inflight

    spawn, result = inflight.Prefetch.__init__, inflight.Prefetch.result
    landed = getattr(inflight.Prefetch, "landed", None)  # the shards read as they land

    def spawned(self, *args, **kwargs):
        marks["child_spawned"] = _now()
        spawn(self, *args, **kwargs)

    def joined(self):
        marks.setdefault("join_start", _now())
        try:
            return result(self)
        finally:
            marks["join_end"] = _now()

    def following(self):
        marks.setdefault("join_start", _now())
        yield from landed(self)

    inflight.Prefetch.__init__, inflight.Prefetch.result = spawned, joined
    if landed is not None:
        inflight.Prefetch.landed = following
    from hubloader import AutoLoader

    AutoLoader("base", name).get_model()
    marks["ready"] = _now()
    import hubloader

    print(json.dumps({"marks": marks, "hubloader": hubloader.__file__}))


def main() -> None:
    if sys.argv[1] == "--autoloader":
        return autoloader(sys.argv[2])
    try:  # the child's one import
        import hubloader.hub._prefetch_child as child
    except ImportError:  # an older checkout (--baseline): the child's entry sat in inflight
        from hubloader.hub import inflight as child

    marks["hubloader_imported"] = _now()
    # imported inside download() anyway; imported here to be wrapped, and timed on their own
    import hubloader.hub.distributed  # noqa: F401
    import hubloader.hub.locate  # noqa: F401
    import hubloader.hub.locking  # noqa: F401
    import hubloader.hub.request  # noqa: F401
    import hubloader.hub.snapshot  # noqa: F401
    import hubloader.hub.sources.s3  # noqa: F401

    marks["fetch_modules_imported"] = _now()
    _instrument()
    from hubloader.hub import download, flush, snapshot

    if hasattr(child, "_Reporter"):  # the child reports each file as it lands
        snapshot.arrivals.set(child._Reporter())

    marks["download_start"] = _now()
    path = download(sys.argv[1])
    marks["answer"] = _now()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    marks["cpu_user"], marks["cpu_sys"] = usage.ru_utime, usage.ru_stime
    flush()  # what the interpreter's exit waits for (atexit), timed here
    marks["flushed"] = _now()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    marks["cpu_flushed"] = usage.ru_utime + usage.ru_stime
    import hubloader

    print(json.dumps({"path": str(path), "marks": marks, "hubloader": hubloader.__file__,
                      "requests": requests, "files": files}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
