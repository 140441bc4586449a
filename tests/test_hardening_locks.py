"""The lock-wait budget (``HUBLOADER_LOCK_TIMEOUT``) bounds the time a download waits for
locks, never the time it spends on its own transfers: a download far longer than the budget
whose two transfer threads take turns at the manifest's lock still finishes."""

from __future__ import annotations

import time

import hubloader
from hub_helpers import write_card


def test_own_transfer_time_does_not_use_up_the_lock_budget(hub_env, monkeypatch):
    src = hub_env / "many"
    src.mkdir()
    names = [f"f{i:03d}.json" for i in range(300)]
    for name in names:
        (src / name).write_text('{"x": %d}' % len(name))
    write_card(hub_env / "cards", "many", source=src.as_uri())
    monkeypatch.setenv("HUBLOADER_LOCK_TIMEOUT", "0.2")
    start = time.monotonic()
    path = hubloader.download("many", allow_patterns="*.json", progress=False)
    took = time.monotonic() - start
    assert sorted(p.name for p in path.iterdir()) == names
    assert took > 0.2, "the download was too quick to use up the budget; use more files"
