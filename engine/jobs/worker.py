"""`prefilter-qa worker`: claim queued jobs one at a time and run each in a child process.

The child (clean CUDA context, hard cancel, crash isolation) writes progress and heartbeats its
attempt; the worker heartbeats too, kills the child on cancel, and turns a child's death into a
`failed` job. Its reaper fails the jobs of dead workers — killing their child's process group
first when it runs on this host — and removes the feature caches no running job uses.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db import jobs as jq
from db import releases as relq
from db import workers as wq
from db.errors import SupersededError
from db.models import Job, JobStatus
from engine.jobs.procs import KILL_GRACE_S, kill_group, kill_job_group, pid_alive
from engine.workspace import DATABASE_URL_ENV, FEATURE_CACHE_NAME, HOME_ENV, Workspace

log = logging.getLogger(__name__)

STALE_ENV = "PREFILTER_QA_STALE_SECONDS"
HEARTBEAT_S = 2.0


def stale_after() -> timedelta:
    """How long without a heartbeat before a running job's worker is presumed dead."""
    return timedelta(seconds=float(os.environ.get(STALE_ENV, "60")))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def exit_reason(returncode: int, log_path: Path | None) -> str:
    """A human sentence for a child that ended without finishing its job."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the job's process was killed by {name}"
    tail = ""
    if log_path and log_path.exists():
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        tail = f": {lines[-1][-300:]}" if lines else ""
    return f"the job's process exited with status {returncode}{tail}"


def fail_job(session: Session, job_id: int, reason: str, attempt: int | None = None) -> bool:
    """End a job failed, with its unfinished evaluation and, for a training, its run (db.jobs.end_job);
    with `attempt`, only if that attempt is still the current one. False if it had already ended."""
    job = jq.end_job(session, job_id, JobStatus.FAILED, reason, attempt=attempt)
    if job is None:
        return False
    relq.end_release_of_job(session, job, JobStatus.FAILED, reason)
    return True


class Worker:
    def __init__(self, ws: Workspace, sessions: sessionmaker[Session], *, poll_s: float = 1.0,
                 idle_exit_s: float | None = None) -> None:
        self.ws, self.sessions, self.poll_s, self.idle_exit_s = ws, sessions, poll_s, idle_exit_s
        self.name = worker_name()
        self.host = socket.gethostname()
        self._stop = False

    def reap(self) -> list[int]:
        """Fail running jobs whose worker died (stale heartbeat, or a dead worker pid on this host).
        A child still running on this host is killed with its process group first, so nothing
        of a failed job keeps running; its feature cache is removed after."""
        doomed: list[tuple[Job, str]] = []
        with self.sessions.begin() as s:
            stale = {job.id for job in jq.stale_running_jobs(s, stale_after())}
            for job in jq.active_jobs(s):
                host, _, pid = (job.worker or "").rpartition(":")
                if job.id in stale:
                    reason = (f"its worker {job.worker} stopped responding "
                              f"(no heartbeat for {stale_after().total_seconds():.0f} s)")
                    doomed.append((job, reason))
                elif job.status == JobStatus.RUNNING and host == self.host and pid.isdigit() \
                        and job.worker != self.name and not pid_alive(int(pid)) and job.executor != "ray":
                    # (a Ray job outlives its worker: the next Ray worker follows it, see ray_worker.adopt)
                    doomed.append((job, f"its worker (pid {pid}) is gone"))
        failed = []
        for job, reason in doomed:
            if job.child_host == self.host and job.child_pgid and kill_job_group(job.child_pgid, job.id):
                reason += f"; its process group {job.child_pgid} was killed"
            with self.sessions.begin() as s:
                if fail_job(s, job.id, reason, attempt=job.attempt):
                    failed.append(job.id)
                    log.warning("job %s (attempt %s) failed: %s", job.id, job.attempt, reason)
        if failed:
            self.sweep_caches()
        return failed

    def sweep_caches(self) -> list[Path]:
        """Remove the DFR feature cache (hundreds of MB) of every run no running job works on:
        a killed training cannot remove its own. A cache still open elsewhere keeps working
        (the file lives on until closed); only its name goes."""
        caches = [c for c in self.ws.runs_dir.glob(f"*/{FEATURE_CACHE_NAME}") if c.parent.name.isdigit()]
        if not caches:
            return []
        with self.sessions.begin() as s:
            busy = jq.running_run_ids(s)
        removed = [c for c in caches if int(c.parent.name) not in busy]
        for cache in removed:
            cache.unlink(missing_ok=True)
            log.info("removed the feature cache of run %s (no running job uses it)", cache.parent.name)
        return removed

    def serve(self, once: bool = False) -> int:
        """Run jobs until stopped (or one job / an empty queue with `once`); returns jobs run."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        with self.sessions.begin() as s:
            wq.register_worker(s, self.name, self.host, os.getpid(), None)
        self.sweep_caches()
        done, idle_since = 0, time.monotonic()
        try:
            while not self._stop:
                self.reap()
                with self.sessions.begin() as s:
                    job = jq.claim_next_job(s, self.name)
                    attempt = jq.Attempt(job.id, job.attempt) if job else None
                    wq.worker_heartbeat(s, self.name, job.id if job else None)
                if attempt is not None:
                    self.run_job(attempt)
                    done += 1
                    idle_since = time.monotonic()
                    if once:
                        break
                    continue
                if once or (self.idle_exit_s is not None
                            and time.monotonic() - idle_since > self.idle_exit_s):
                    break
                time.sleep(self.poll_s)
        finally:
            with self.sessions.begin() as s:
                wq.unregister_worker(s, self.name)
        return done

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("worker %s: %s received, stopping", self.name, signal.Signals(signum).name)
        self._stop = True

    def _log_path(self, job: Job) -> Path:
        folder = self.ws.run_dir(job.run_id) if job.run_id is not None else self.ws.home / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"job-{job.id}.log"

    def run_job(self, attempt: jq.Attempt) -> None:
        job_id = attempt.job_id
        with self.sessions.begin() as s:
            job = jq.get_job(s, job_id)
            log_path = self._log_path(job)
        env = os.environ | {HOME_ENV: str(self.ws.home), DATABASE_URL_ENV: self.ws.database_url}
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine.jobs.child", str(job_id), str(attempt.number)],
                stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        log.info("%s (%s) started in pid %s, log %s", attempt, job.kind, proc.pid, log_path)
        ended_by = None
        try:
            with self.sessions.begin() as s:
                jq.start_attempt(s, attempt, pid=proc.pid, pgid=proc.pid, host=self.host, log_path=str(log_path))
        except SupersededError as exc:
            kill_group(proc)
            ended_by = str(exc)
        ended_by = ended_by or self._watch(attempt, proc)
        kill_job_group(proc.pid, job_id)  # DataLoader workers a killed child left behind
        with self.sessions.begin() as s:
            job = jq.get_job(s, job_id)
            if job.status == JobStatus.RUNNING and job.attempt == attempt.number:
                reason = ended_by or exit_reason(proc.returncode, log_path)
                if job.cancel_requested:
                    ended = jq.end_job(s, job_id, JobStatus.CANCELLED, "cancelled by user", attempt=attempt.number)
                    if ended is not None:
                        relq.end_release_of_job(s, ended, JobStatus.CANCELLED)
                else:
                    fail_job(s, job_id, reason, attempt=attempt.number)
            log.info("job %s ended %s", job_id, jq.get_job(s, job_id).status)
        if job.kind == "train" and job.run_id is not None:  # a killed training leaves its cache behind
            (self.ws.run_dir(job.run_id) / FEATURE_CACHE_NAME).unlink(missing_ok=True)

    def _watch(self, attempt: jq.Attempt, proc: subprocess.Popen[bytes]) -> str | None:
        """Heartbeat until the child exits; kill it on cancel, when the worker is stopped, or when
        its attempt was superseded and it does not stop by itself."""
        last_beat = 0.0
        while proc.poll() is None:
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                with self.sessions.begin() as s:
                    wq.worker_heartbeat(s, self.name, attempt.job_id)
                try:
                    with self.sessions.begin() as s:
                        cancel = jq.heartbeat(s, attempt)
                except SupersededError as exc:  # ended by the child itself, or failed by a reaper
                    try:
                        proc.wait(timeout=KILL_GRACE_S)
                    except subprocess.TimeoutExpired:
                        kill_group(proc)
                    return str(exc)
                last_beat = time.monotonic()
                if cancel:
                    kill_group(proc)
                    return "cancelled by user"
            if self._stop:
                kill_group(proc)
                return f"worker {self.name} was stopped while the job ran"
            time.sleep(0.2)
        return None
