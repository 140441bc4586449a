"""The child process of :func:`hubloader.hub.prefetch`: one :func:`hubloader.hub.download`,
reported as it goes and answered with one JSON line on standard output.

Run as ``python -P -m hubloader.hub._prefetch_child '<request as JSON>'`` (see
:mod:`.inflight`); a module of its own, so the parent's registry never imports the
``download`` it starts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import HubLoaderError
from . import download
from .snapshot import arrivals
from .sources.base import RemoteFile


class _Reporter:
    """Tells the parent, one JSON line each, what the fetch lists and each file that lands."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two transfer threads report

    def say(self, message: dict[str, Any]) -> None:
        with self._lock:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def listed(self, snapshot_dir: Path, files: Sequence[RemoteFile], revision: str) -> None:
        self.say({"listed": [f.path for f in files], "dir": str(snapshot_dir)})

    def landed(self, path: str, entry: Mapping[str, Any]) -> None:
        self.say({"landed": path})


def main(argv: Sequence[str]) -> int:
    request = json.loads(argv[0])
    reporter = _Reporter()
    arrivals.set(reporter)
    try:
        path = download(request.pop("model_name"), **request)
        answer: dict[str, Any] = {"path": str(path)}
    except HubLoaderError as err:
        fields = {k: v for k, v in vars(err).items()
                  if isinstance(v, (str, int, float, bool, type(None)))}
        answer = {"error": type(err).__name__, "message": str(err), "fields": fields}
    except KeyboardInterrupt:
        return 130
    reporter.say(answer)  # the parent goes on now; this process still flushes the blobs at exit
    return 0


def _exit(code: int) -> None:
    """Flush the blobs (what ``atexit`` would do), then leave without the interpreter's
    teardown: the parent is loading the model on the same cores, and tearing down botocore's
    and the process's modules is work nobody needs."""
    from .durability import flush

    try:
        flush()
    except BaseException:  # reported as atexit would, without changing the exit status
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
        status = 1
    _exit(status)
