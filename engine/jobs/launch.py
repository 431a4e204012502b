"""Start a background worker when none serves the database (dashboard, `train --wait`).

Two callers (two dashboard sessions, the dashboard and `train --wait`) can both find no live
worker; starting is therefore exclusive per workspace: the check and the spawn happen under an
flock on `worker-start.lock`, and the lock file keeps the pid of the worker it started as a
"starting" mark until that worker has registered in the database.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from typing import IO

from sqlalchemy.orm import Session, sessionmaker

from db import workers as wq
from engine.jobs.procs import pid_alive
from engine.jobs.worker import stale_after
from engine.workspace import DATABASE_URL_ENV, HOME_ENV, Workspace

START_LOCK_NAME = "worker-start.lock"  # in the workspace: the flock, and the last started worker's mark
STARTING_S = 60.0  # how long a started worker that has not registered yet keeps others from starting one


def worker_alive(sessions: sessionmaker[Session]) -> bool:
    with sessions.begin() as s:
        return bool(wq.live_workers(s, stale_after()))


def start_worker(ws: Workspace, idle_exit_s: float | None = None) -> int:
    """Spawn `prefilter-qa worker` detached from this process; returns its pid."""
    log_dir = ws.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "engine.cli", "worker"]
    if idle_exit_s is not None:
        cmd += ["--idle-exit", str(idle_exit_s)]
    env = os.environ | {HOME_ENV: str(ws.home), DATABASE_URL_ENV: ws.database_url}
    with open(log_dir / "worker.log", "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def _starting(lock: IO[str]) -> bool:
    """Whether the lock file names a worker started less than STARTING_S ago that still runs
    (on another host: that cannot be checked, so only its age counts)."""
    lock.seek(0)
    try:
        mark = json.loads(lock.read() or "null")
        pid, host, started = int(mark["pid"]), str(mark["host"]), float(mark["started"])
    except (ValueError, TypeError, KeyError):
        return False  # no mark yet, or not one of ours
    if not 0 <= time.time() - started < STARTING_S:
        return False
    return host != socket.gethostname() or pid_alive(pid)


def ensure_worker(ws: Workspace, sessions: sessionmaker[Session], idle_exit_s: float | None = None) -> bool:
    """Start a worker unless one is alive or one started by any caller is still starting;
    returns whether this call started one."""
    ws.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(ws.home / START_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    with os.fdopen(fd, "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if worker_alive(sessions) or _starting(lock):
            return False
        pid = start_worker(ws, idle_exit_s)
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps({"pid": pid, "host": socket.gethostname(), "started": time.time()}))
        lock.flush()
    return True
