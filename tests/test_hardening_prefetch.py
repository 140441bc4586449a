"""The prefetch child's lifecycle against hostile surroundings: a module in the working
directory is never imported by the child, progress never fills the pipe while nobody joins,
every child is reaped and its pipe closed, a joined failure is not replayed, a stopped child
does not hang the join, and wrong argument types are refused before a child starts."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import hubloader
from hubloader.errors import ConfigError, InputError, PrefetchError, PrefetchTimeoutError
from hubloader.hub import inflight
from hub_helpers import write_card


def _child_states() -> dict[int, str]:
    """pid -> state letter of this process's child processes."""
    me, found = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            found[int(entry)] = fields[0]
    return found


#: children alive before these tests ran (servers that session-scoped fixtures of earlier
#: test files keep for the whole run) are not the prefetches' doing
_SERVERS: set[int] = set()


@pytest.fixture(autouse=True)
def _servers_before():
    _SERVERS.update(pid for pid, state in _child_states().items() if state != "Z")
    yield
    _SERVERS.clear()


def _children() -> tuple[int, int]:
    """(zombies, live) among this process's child processes, the servers left out."""
    states = [s for pid, s in _child_states().items() if pid not in _SERVERS]
    return sum(s == "Z" for s in states), sum(s != "Z" for s in states)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled(check, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    return folder


def _start_and_join(model_dir: Path, count: int, batch: int = 16) -> None:
    for start in range(0, count, batch):
        handles = [hubloader.prefetch(str(model_dir), revision=f"r{i}")
                   for i in range(start, min(count, start + batch))]
        for handle in handles:
            assert handle.result(timeout=120) == model_dir


def _no_leaks(model_dir: Path, count: int) -> None:
    fds = _fds()
    _start_and_join(model_dir, 2)  # threads and imports of the first use, outside the count
    assert _settled(lambda: _children() == (0, 0))
    fds = _fds()
    _start_and_join(model_dir, count)
    assert _settled(lambda: _children() == (0, 0)), _children()
    assert _settled(lambda: _fds() <= fds), (_fds(), fds)
    assert not inflight._INFLIGHT and not inflight._STARTED


def test_prefetches_started_and_joined_leave_no_zombie_nor_descriptor(model_dir):
    _no_leaks(model_dir, 16)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_two_thousand_prefetches_leave_no_zombie_nor_descriptor(model_dir):
    _no_leaks(model_dir, 2000)


def test_a_module_in_the_working_directory_is_never_imported(model_dir, tmp_path, monkeypatch):
    trap = tmp_path / "cwd"
    trap.mkdir()
    marker = tmp_path / "ran.txt"
    for name in ("json", "hubloader"):
        (trap / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name} ran\\n')\n")
    monkeypatch.chdir(trap)
    assert hubloader.prefetch(str(model_dir)).result(timeout=120) == model_dir
    assert not marker.exists()


def test_an_unjoined_prefetch_never_blocks_on_its_progress(hub_env):
    """Enough files that their progress lines overflow a pipe nobody reads: the child must
    still finish on its own."""
    src = hub_env / "many"
    src.mkdir()
    # long names: the listing and the landing lines together pass a pipe's 64 KiB
    names = [f"{i:04d}-{'x' * 235}.json" for i in range(300)]
    for name in names:
        (src / name).write_text("{}")
    write_card(hub_env / "cards", "many", source=src.as_uri())
    handle = hubloader.prefetch("many", allow_patterns="*.json", progress=False)
    assert _settled(lambda: handle._proc.poll() is not None, timeout=120), \
        "the child blocked writing its progress"
    path = handle.result(timeout=10)
    assert sorted(p.name for p in path.iterdir()) == names


def test_a_joined_failure_is_not_replayed(hub_env):
    src = hub_env / "later"
    write_card(hub_env / "cards", "later", source=src.as_uri())
    handle = hubloader.prefetch("later", progress=False)
    with pytest.raises(hubloader.HubLoaderError) as first:
        handle.result(timeout=120)
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "bert"}')
    (src / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    # the source is published now: a new download asks it, rather than raising the old error
    path = hubloader.download("later", progress=False)
    assert (path / "config.json").read_text() == '{"model_type": "bert"}', first.value


def test_a_stopped_child_does_not_hang_the_join(model_dir):
    handle = hubloader.prefetch(str(model_dir))
    os.kill(handle._proc.pid, signal.SIGSTOP)
    caught: list[BaseException] = []

    def join() -> None:
        try:
            handle.result()
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            caught.append(err)

    waiter = threading.Thread(target=join, daemon=True)
    waiter.start()
    waiter.join(30)
    stuck = waiter.is_alive()
    if stuck:  # let the old code's thread go before failing
        os.kill(handle._proc.pid, signal.SIGKILL)
    assert not stuck, "the join waited on a stopped child"
    assert len(caught) == 1 and isinstance(caught[0], PrefetchError), caught
    assert isinstance(caught[0], ChildProcessError) and "stopped" in str(caught[0])
    assert _settled(lambda: handle._proc.returncode is not None)


def test_a_join_with_a_timeout_gives_up_typed(model_dir):
    handle = hubloader.prefetch(str(model_dir))
    os.kill(handle._proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(PrefetchTimeoutError) as info:
            handle.result(timeout=0.01)
        assert isinstance(info.value, TimeoutError)
    finally:
        os.kill(handle._proc.pid, signal.SIGCONT)
    assert handle.result(timeout=120) == model_dir


@pytest.mark.parametrize("kwargs", [
    {"model_name": b"bert-base-en"},
    {"model_name": "bert-base-en", "revision": 1},
    {"model_name": "bert-base-en", "allow_patterns": [Path("config.json")]},
    {"model_name": "bert-base-en", "allow_patterns": 3},
    {"model_name": "bert-base-en", "offline": "yes"},
    {"model_name": "bert-base-en", "download_path": 5},
])
@pytest.mark.parametrize("call", [hubloader.prefetch, hubloader.download])
def test_wrong_argument_types_are_typed_before_any_child(hub_env, call, kwargs):
    assert _settled(lambda: _children() == (0, 0))  # earlier tests' children are gone
    with pytest.raises((InputError, ConfigError, hubloader.InvalidModelNameError)) as info:
        call(**kwargs)
    assert isinstance(info.value, (TypeError, ValueError))
    assert _children() == (0, 0)
