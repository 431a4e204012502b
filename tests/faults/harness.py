"""What the fault-injection tests share: a workspace served by real worker processes, failpoints
to hold a child at a named point, kill -9, and the invariants checked after every kill.

It reads the database with plain SQL and imports nothing of the product at module level, so the
regression tests also run (and fail) against the code from before the fixes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from db import connect
from engine.workspace import DATABASE_URL_ENV, FEATURE_CACHE_NAME, HOME_ENV
from tests.conftest import REPO, wait_for

FAILPOINT_DIR_ENV = "PREFILTER_QA_FAILPOINT_DIR"  # engine.jobs.failpoints (test_kill_points checks it)

FINAL = ("succeeded", "failed", "cancelled")
COUNTED = ("datasets", "images", "masks", "rois", "runs", "evaluations", "jobs", "thresholds", "reviews")
# A small DFR training with its feature cache and a DataLoader worker process: every point of a
# training is passed in seconds.
DFR_CACHED = ["input_size=64", "epochs=2", "batch_size=4", "num_workers=1", "backbone_weights=random",
              "map_size=16", "pca_samples_per_image=64", "feature_cache_gb=1"]
AE_QUICK = ["input_size=64", "epochs=1", "batch_size=4", "num_workers=0"]
AE_KILLED = ["input_size=64", "epochs=1", "batch_size=4", "num_workers=1"]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@dataclass
class Site:
    """A workspace (SQLite in it, or PostgreSQL) and the environment its processes run with."""

    home: Path
    database_url: str | None = None  # None: the workspace's SQLite file
    failpoints: Path = field(init=False)
    _sessions: sessionmaker[Session] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.failpoints = self.home.parent / f"{self.home.name}-failpoints"
        self.failpoints.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'prefilter-qa.db'}"

    def env(self) -> dict[str, str]:
        env = os.environ | {HOME_ENV: str(self.home), "PREFILTER_QA_THREADS": "1",
                            FAILPOINT_DIR_ENV: str(self.failpoints), "PREFILTER_QA_STALE_SECONDS": "60"}
        env.pop(DATABASE_URL_ENV, None)
        if self.database_url:
            env[DATABASE_URL_ENV] = self.database_url
        return env

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=REPO, env=self.env(), check=False,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"prefilter-qa {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def start_worker(self, *extra: str) -> subprocess.Popen[str]:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        log = open(self.home / "logs" / "test-worker.log", "a")  # noqa: SIM115 - the worker keeps it
        return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker", "--poll", "0.2", *extra],
                                cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT, text=True)

    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:
            self._sessions = connect(self.url)
        return self._sessions

    def train(self, sets: list[str], model: str = "dfr") -> tuple[int, int]:
        """Submit a training of dataset "tiny" in this process (as `prefilter-qa train` does)."""
        from db.auth import system_actor
        from engine.config import parse_overrides
        from engine.jobs.queue import submit_train

        with self.sessions().begin() as s:
            job, run = submit_train(s, dataset="tiny", model=model, overrides=parse_overrides(sets),
                                    actor=system_actor("fault-tests"))
            return job.id, run.id

    def evaluate(self, run_id: int) -> int:
        from db.auth import system_actor
        from engine.jobs.queue import submit_evaluate

        with self.sessions().begin() as s:
            return submit_evaluate(s, run_id=run_id, actor=system_actor("fault-tests"))[0].id

    # failpoints (engine.jobs.failpoints)
    def arm(self, point: str) -> None:
        for stale in self.failpoints.glob(f"{point}.*"):
            stale.unlink()
        (self.failpoints / f"{point}.arm").touch()

    def reached(self, point: str, timeout: float = 240.0) -> int:
        """The pid of the child holding at `point`."""
        flag = self.failpoints / f"{point}.reached"
        wait_for(flag.exists, timeout, f"a child to reach {point}")
        return int(flag.read_text())

    def release(self, point: str) -> None:
        (self.failpoints / f"{point}.release").touch()

    # the database, read with plain SQL (works on the old and the new schema)
    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def job(self, job_id: int) -> dict[str, Any]:
        (row,) = self.rows(f"SELECT status, error, run_id, evaluation_id, child_pid FROM jobs WHERE id = {job_id}")
        return dict(zip(("status", "error", "run_id", "evaluation_id", "child_pid"), row))

    def wait_final(self, job_id: int, timeout: float = 240.0) -> dict[str, Any]:
        return wait_for(lambda: (j := self.job(job_id))["status"] in FINAL and j, timeout, f"job {job_id} to end")

    def counts(self) -> dict[str, int]:
        return {t: self.rows(f"SELECT count(*) FROM {t}")[0][0] for t in COUNTED}


def our_processes(home: Path) -> list[int]:
    """Live processes (not zombies) started for this workspace: workers, children, DataLoader workers."""
    marker = f"{HOME_ENV}={home}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in env and alive(pid):
            found.append(pid)
    return found


def kill9(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def invariant_problems(site: Site, before: dict[str, int], workers: set[int] = frozenset()) -> list[str]:
    """What is wrong with the site after a kill and its recovery (empty list: every invariant
    held); `workers` are the pids of the idle workers still serving it."""
    problems = []
    q = site.rows
    for run_id, status in q("SELECT r.id, r.status FROM runs r WHERE r.status = 'succeeded' AND NOT EXISTS "
                            "(SELECT 1 FROM jobs j WHERE j.run_id = r.id AND j.kind = 'train' "
                            "AND j.status = 'succeeded')"):
        problems.append(f"run {run_id} is {status} but no training job of it succeeded")
    for ev_id, status in q("SELECT e.id, e.status FROM evaluations e WHERE e.status = 'succeeded' AND NOT EXISTS "
                           "(SELECT 1 FROM jobs j WHERE j.evaluation_id = e.id AND j.status = 'succeeded')"):
        problems.append(f"evaluation {ev_id} is {status} but its job did not succeed")
    for t_id, ev_id in q("SELECT t.id, t.evaluation_id FROM thresholds t JOIN evaluations e "
                         "ON e.id = t.evaluation_id WHERE t.set_by = 'auto' AND e.status <> 'succeeded'"):
        problems.append(f"automatic threshold {t_id} comes from evaluation {ev_id}, which did not succeed")
    for table in ("jobs", "runs", "evaluations"):
        for row_id, status in q(f"SELECT id, status FROM {table} WHERE status IN ('queued', 'running')"):
            problems.append(f"{table[:-1]} {row_id} is still {status}")
    after = site.counts()
    for table, n in before.items():
        if after[table] < n:
            problems.append(f"{table}: {n} rows before, {after[table]} after")
    caches = sorted(str(p.relative_to(site.home)) for p in site.home.glob(f"runs/*/{FEATURE_CACHE_NAME}"))
    if caches:
        problems.append(f"feature cache left behind: {caches}")
    left = [pid for pid in our_processes(site.home) if pid not in workers]
    if left:
        problems.append(f"processes left running: {left}")
    if site.database_url is None:
        con = sqlite3.connect(site.home / "prefilter-qa.db")
        try:
            check = con.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            con.close()
        if check != "ok":
            problems.append(f"SQLite integrity_check: {check}")
    return problems
