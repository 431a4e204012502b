"""Starting a worker when none runs, for real: concurrent callers start exactly one worker process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db import workers as wq
from engine.jobs.launch import START_LOCK_NAME, ensure_worker
from engine.jobs.procs import pid_alive
from engine.jobs.worker import stale_after
from engine.services.store import open_workspace
from engine.workspace import DATABASE_URL_ENV, HOME_ENV, Workspace
from tests.conftest import REPO, wait_for

# One caller of ensure_worker: ready file, then wait for the go file, then print whether it started one.
CALLER = """
import sys, time
from pathlib import Path
from engine.jobs.launch import ensure_worker
from engine.services.store import open_workspace
ws, sessions = open_workspace()
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
print(ensure_worker(ws, sessions, idle_exit_s=60))
"""


def _worker_pids(home: Path) -> list[int]:
    """Live `engine.cli worker` processes serving workspace `home` (found in /proc by argv and env).
    Waits a moment first: a process spawned a millisecond ago may not show its argv yet."""
    time.sleep(0.5)
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"engine.cli" in argv and b"worker" in argv and f"{HOME_ENV}={home}".encode() in env \
                and pid_alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _stop(pids: list[int]) -> None:
    """SIGTERM the workers these tests started (they unregister and exit) and wait for them."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)


def _live_workers(sessions) -> list[int]:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        return [w.pid for w in wq.live_workers(s, stale_after())]


@pytest.fixture
def ws(home: Path):  # type: ignore[no-untyped-def]
    """A fresh workspace with its database created and no worker; workers started in it are stopped after."""
    workspace, sessions = open_workspace()
    yield workspace, sessions
    _stop(_worker_pids(workspace.home))


def _mark(ws: Workspace, pid: int, started: float) -> None:
    (ws.home / START_LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                       "started": started}))


def test_two_concurrent_callers_start_exactly_one_worker(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace, sessions = ws
    env = os.environ | {HOME_ENV: str(workspace.home)}
    env.pop(DATABASE_URL_ENV, None)
    callers = []
    for i in range(2):
        ready, go = tmp_path / f"ready-{i}", tmp_path / "go"
        callers.append((ready, subprocess.Popen([sys.executable, "-c", CALLER, str(ready), str(go)], cwd=REPO,
                                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True)))
    wait_for(lambda: all(ready.exists() for ready, _ in callers), 60, "the callers to get ready")
    (tmp_path / "go").touch()
    results = []
    for _, proc in callers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(out.strip())
    assert sorted(results) == ["False", "True"]
    pids = _worker_pids(workspace.home)  # every worker spawned exists now (none exits before 60 s idle)
    assert len(pids) == 1, pids
    assert wait_for(lambda: _live_workers(sessions), 60, "the started worker to register") == pids
    assert ensure_worker(workspace, sessions) is False  # registered now: nothing to start


def test_a_second_call_while_the_first_worker_starts_starts_none(ws) -> None:  # type: ignore[no-untyped-def]
    workspace, sessions = ws
    assert ensure_worker(workspace, sessions, idle_exit_s=60) is True
    assert ensure_worker(workspace, sessions, idle_exit_s=60) is False
    assert len(_worker_pids(workspace.home)) == 1
    mark = json.loads((workspace.home / START_LOCK_NAME).read_text())
    assert mark["pid"] == _worker_pids(workspace.home)[0]


def test_a_starting_mark_holds_only_while_its_process_lives_and_is_young(ws) -> None:  # type: ignore[no-untyped-def]
    workspace, sessions = ws
    sleeper = subprocess.Popen(["sleep", "60"])  # stands for a worker that has not registered yet
    try:
        _mark(workspace, sleeper.pid, time.time() - 5)
        assert ensure_worker(workspace, sessions, idle_exit_s=60) is False
        assert _worker_pids(workspace.home) == []

        _mark(workspace, sleeper.pid, time.time() - 600)  # alive but never registered: start another
        assert ensure_worker(workspace, sessions, idle_exit_s=60) is True
        assert len(_worker_pids(workspace.home)) == 1
    finally:
        sleeper.kill()
        sleeper.wait()
    _stop(_worker_pids(workspace.home))

    _mark(workspace, sleeper.pid, time.time() - 1)  # young but its process is gone (the worker crashed)
    assert ensure_worker(workspace, sessions, idle_exit_s=60) is True
    assert len(_worker_pids(workspace.home)) == 1
