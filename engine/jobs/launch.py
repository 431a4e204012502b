"""Start a background worker when none serves the database (dashboard, `train --wait`)."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy.orm import Session, sessionmaker

from db import workers as wq
from engine.jobs.worker import stale_after
from engine.workspace import DATABASE_URL_ENV, HOME_ENV, Workspace


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


def ensure_worker(ws: Workspace, sessions: sessionmaker[Session], idle_exit_s: float | None = None) -> bool:
    """Start a worker unless one is alive; returns whether one was started."""
    if worker_alive(sessions):
        return False
    start_worker(ws, idle_exit_s)
    return True
