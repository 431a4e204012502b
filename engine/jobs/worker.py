"""`prefilter-qa worker`: claim queued jobs one at a time and run each in a child process.

The child (clean CUDA context, hard cancel, crash isolation) writes progress; the worker writes
the heartbeat, kills the child on cancel, and turns a child's death into a `failed` job.
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
from db import runs as rq
from db import workers as wq
from db.models import Job, JobStatus
from engine.workspace import DATABASE_URL_ENV, FEATURE_CACHE_NAME, HOME_ENV, Workspace

log = logging.getLogger(__name__)

STALE_ENV = "PREFILTER_QA_STALE_SECONDS"
HEARTBEAT_S = 2.0
KILL_GRACE_S = 5.0


def stale_after() -> timedelta:
    """How long without a heartbeat before a running job's worker is presumed dead."""
    return timedelta(seconds=float(os.environ.get(STALE_ENV, "60")))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def fail_job(session: Session, job_id: int, reason: str) -> None:
    """End a job failed, and its run too if the job was its training."""
    if jq.finish_job(session, job_id, JobStatus.FAILED, reason):
        job = jq.get_job(session, job_id)
        if job.evaluation_id is not None:
            ev = rq.get_evaluation(session, job.evaluation_id)
            if ev.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                rq.finish_evaluation(session, ev.id, status=JobStatus.FAILED)
        if job.kind == "train" and job.run_id is not None:
            run = rq.get_run(session, job.run_id)
            if run.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                rq.set_run_status(session, run.id, JobStatus.FAILED)


class Worker:
    def __init__(self, ws: Workspace, sessions: sessionmaker[Session], *, poll_s: float = 1.0,
                 idle_exit_s: float | None = None) -> None:
        self.ws, self.sessions, self.poll_s, self.idle_exit_s = ws, sessions, poll_s, idle_exit_s
        self.name = worker_name()
        self.host = socket.gethostname()
        self._stop = False

    def reap(self) -> list[int]:
        """Fail running jobs whose worker died: stale heartbeat, or a dead pid on this host."""
        failed = []
        with self.sessions.begin() as s:
            for job in jq.stale_running_jobs(s, stale_after()):
                fail_job(s, job.id, f"its worker {job.worker} stopped responding "
                                    f"(no heartbeat for {stale_after().total_seconds():.0f} s)")
                failed.append(job.id)
            for job in jq.active_jobs(s):
                host, _, pid = (job.worker or "").rpartition(":")
                if job.status == JobStatus.RUNNING and host == self.host and pid.isdigit() \
                        and job.worker != self.name and not _pid_alive(int(pid)):
                    fail_job(s, job.id, f"its worker (pid {pid}) is gone")
                    failed.append(job.id)
        for job_id in failed:
            log.warning("job %s failed: its worker died", job_id)
        return failed

    def serve(self, once: bool = False) -> int:
        """Run jobs until stopped (or one job / an empty queue with `once`); returns jobs run."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        with self.sessions.begin() as s:
            wq.register_worker(s, self.name, self.host, os.getpid(), None)
        done, idle_since = 0, time.monotonic()
        try:
            while not self._stop:
                self.reap()
                with self.sessions.begin() as s:
                    job = jq.claim_next_job(s, self.name)
                    job_id = job.id if job else None
                    wq.worker_heartbeat(s, self.name, job_id)
                if job_id is not None:
                    self.run_job(job_id)
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

    def run_job(self, job_id: int) -> None:
        with self.sessions.begin() as s:
            job = jq.get_job(s, job_id)
            log_path = self._log_path(job)
        env = os.environ | {HOME_ENV: str(self.ws.home), DATABASE_URL_ENV: self.ws.database_url}
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine.jobs.child", str(job_id)], stdout=log_file,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        log.info("job %s (%s) started in pid %s, log %s", job_id, job.kind, proc.pid, log_path)
        with self.sessions.begin() as s:
            jq.set_child(s, job_id, proc.pid, str(log_path))
        ended_by = self._watch(job_id, proc)
        with self.sessions.begin() as s:
            job = jq.get_job(s, job_id)
            if job.status == JobStatus.RUNNING:
                reason = ended_by or exit_reason(proc.returncode, log_path)
                if job.cancel_requested:
                    jq.finish_job(s, job_id, JobStatus.CANCELLED, "cancelled by user")
                    if job.kind == "train" and job.run_id is not None:
                        rq.set_run_status(s, job.run_id, JobStatus.CANCELLED)
                    if job.evaluation_id is not None:
                        rq.finish_evaluation(s, job.evaluation_id, status=JobStatus.CANCELLED)
                else:
                    fail_job(s, job_id, reason)
            log.info("job %s ended %s", job_id, jq.get_job(s, job_id).status)
        if job.kind == "train" and job.run_id is not None:  # a killed training leaves its cache behind
            (self.ws.run_dir(job.run_id) / FEATURE_CACHE_NAME).unlink(missing_ok=True)

    def _watch(self, job_id: int, proc: subprocess.Popen[bytes]) -> str | None:
        """Heartbeat until the child exits; kill it on cancel or when the worker is stopped."""
        last_beat = 0.0
        while proc.poll() is None:
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                with self.sessions.begin() as s:
                    cancel = jq.heartbeat(s, job_id)
                    wq.worker_heartbeat(s, self.name, job_id)
                last_beat = time.monotonic()
                if cancel:
                    _kill_group(proc)
                    return "cancelled by user"
            if self._stop:
                _kill_group(proc)
                return f"worker {self.name} was stopped while the job ran"
            time.sleep(0.2)
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group (DataLoader workers too), SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
