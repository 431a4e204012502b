"""The job queue: enqueue, claim exactly once, progress + heartbeat, finish, cancel, reap.

Each claim of a job starts a new attempt (`jobs.attempt`). Whatever runs the attempt — a local
worker's child process today, a process on another host tomorrow — holds an `Attempt` (job id +
attempt number) and passes it to every write: progress, heartbeat, finish and the task's results
(`fenced`). A write for an attempt that is no longer the job's current running one raises
SupersededError in the same transaction, so a child whose job was failed or cancelled meanwhile
can never store a result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db import validate
from db.errors import NotFoundError, SupersededError
from db.models import ACTIVE, FINAL, Dataset, Evaluation, Job, JobStatus, Run, utcnow


@dataclass(frozen=True)
class Attempt:
    """The fencing token of one start of a job: the child gets it on its command line."""

    job_id: int
    number: int

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.number}"


def enqueue_job(
    session: Session, kind: str, payload: dict[str, Any], *, run_id: int | None = None,
    evaluation_id: int | None = None, created_by: str = "system", retry_of: int | None = None,
) -> Job:
    job = Job(kind=kind, payload=payload, run_id=run_id, evaluation_id=evaluation_id,
              created_by=validate.name(created_by, "user name"), retry_of=retry_of, status=JobStatus.QUEUED)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def claim_next_job(session: Session, worker: str) -> Job | None:
    """Mark the oldest queued job running for `worker` as a new attempt, atomically.

    SQLite: the session's transaction began IMMEDIATE, so no other writer runs between the
    select and the update. PostgreSQL: FOR UPDATE SKIP LOCKED lets workers pass each other.
    """
    stmt = select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.id).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    job = session.scalar(stmt)
    if job is None:
        return None
    now = utcnow()
    job.status, job.worker, job.started_at, job.heartbeat_at = JobStatus.RUNNING, worker, now, now
    job.progress, job.error = 0.0, None
    job.attempt = (job.attempt or 0) + 1
    job.child_pid = job.child_pgid = job.child_host = None
    session.flush()
    return job


def check_attempt(session: Session, attempt: Attempt) -> Job:
    """The job row, locked for this transaction, if `attempt` is still its current running
    attempt; else SupersededError (the caller's write must not happen)."""
    stmt = select(Job).where(Job.id == attempt.job_id).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # SQLite: the IMMEDIATE transaction already holds the write lock
    job = session.scalar(stmt)
    if job is None:
        raise SupersededError(f"{attempt}: the job no longer exists")
    if job.attempt != attempt.number or job.status != JobStatus.RUNNING:
        now = f"attempt {job.attempt} is current" if job.attempt != attempt.number else f"the job is {job.status}"
        raise SupersededError(f"{attempt} was superseded ({now}" + (f": {job.error}" if job.error else "") + ")")
    return job


@contextmanager
def fenced(sessions: sessionmaker[Session], attempt: Attempt) -> Iterator[Session]:
    """A transaction that writes only if `attempt` is current (checked inside it, under the lock)."""
    with sessions.begin() as session:
        check_attempt(session, attempt)
        yield session


def start_attempt(session: Session, attempt: Attempt, *, pid: int, pgid: int | None, host: str,
                  log_path: str | None = None) -> Job:
    """Record where the attempt's process runs (a reaper on `host` kills process group `pgid`)."""
    job = check_attempt(session, attempt)
    job.child_pid, job.child_pgid, job.child_host = pid, pgid, host
    if log_path is not None:
        job.log_path = log_path
    job.heartbeat_at = utcnow()
    return job


def report_progress(
    session: Session, attempt: Attempt, progress: float | None = None, message: str | None = None,
    eta_s: float | None = None,
) -> bool:
    """Write progress and a heartbeat; returns whether the job was asked to cancel."""
    job = check_attempt(session, attempt)
    job.heartbeat_at = utcnow()
    if progress is not None:
        job.progress = max(0.0, min(1.0, float(progress)))
    if message is not None:
        job.message = message
    job.eta_s = eta_s
    return bool(job.cancel_requested)


def heartbeat(session: Session, attempt: Attempt) -> bool:
    """Mark the attempt alive; returns whether the job was asked to cancel."""
    job = check_attempt(session, attempt)
    job.heartbeat_at = utcnow()
    return bool(job.cancel_requested)


def finish_job(session: Session, job_id: int, status: str, error: str | None = None, *,
               attempt: int | None = None) -> bool:
    """End an active job row (only that row; see end_job); returns False if it had already
    ended (e.g. cancelled meanwhile) or, with `attempt`, moved on to another attempt."""
    if status not in FINAL:
        raise ValueError(f"not a final status: {status}")
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(), "eta_s": None}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    cond = [Job.id == job_id, Job.status.in_(ACTIVE)]
    if attempt is not None:
        cond.append(Job.attempt == attempt)
    result = session.execute(update(Job).where(*cond).values(**values))
    return result.rowcount == 1


def end_job(session: Session, job_id: int, status: str, error: str | None = None, *,
            attempt: int | None = None) -> Job | None:
    """End an active job and what it works on, in one transaction: an evaluation it had not
    finished ends with it (failed / cancelled), and a training's run takes the job's status —
    so a run is succeeded only together with its training job. Returns the job, or None if it
    had already ended (or, with `attempt`, moved on to another attempt)."""
    if not finish_job(session, job_id, status, error, attempt=attempt):
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    now = utcnow()
    if job.evaluation_id is not None and status != JobStatus.SUCCEEDED:
        ev = session.get(Evaluation, job.evaluation_id)
        if ev is not None and ev.status in ACTIVE:
            ev.status, ev.finished_at = status, now
    if job.kind == "train" and job.run_id is not None:
        run = session.get(Run, job.run_id)
        if run is not None and run.status in ACTIVE:
            run.status, run.finished_at = status, now
    session.flush()
    return job


def finish_attempt(session: Session, attempt: Attempt, status: str, error: str | None = None) -> Job:
    """End the job from its own attempt (SupersededError if that attempt is no longer current)."""
    check_attempt(session, attempt)
    job = end_job(session, attempt.job_id, status, error, attempt=attempt.number)
    assert job is not None  # the row is locked and was running with this attempt
    return job


def request_cancel(session: Session, job_id: int) -> Job:
    """A queued job ends cancelled at once; a running one is flagged for its worker to kill."""
    job = get_job(session, job_id)
    if job.status == JobStatus.QUEUED:
        end_job(session, job_id, JobStatus.CANCELLED, "cancelled before it started")  # its evaluation too
        session.refresh(job)
    elif job.status == JobStatus.RUNNING:
        job.cancel_requested = True
    session.flush()
    return job


def list_jobs(session: Session, *, status: str | None = None, limit: int = 200) -> list[Job]:
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    return list(session.scalars(stmt))


def active_jobs(session: Session) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.status.in_(ACTIVE)).order_by(Job.id)))


def stale_running_jobs(session: Session, max_age: timedelta, now: datetime | None = None) -> list[Job]:
    """Running jobs whose heartbeat is older than `max_age` (their worker died)."""
    cutoff = (now or utcnow()) - max_age
    stmt = select(Job).where(Job.status == JobStatus.RUNNING, Job.heartbeat_at < cutoff)
    return list(session.scalars(stmt))


def running_run_ids(session: Session) -> set[int]:
    """Runs that a running job works on (their feature cache is in use)."""
    stmt = select(Job.run_id).where(Job.status == JobStatus.RUNNING, Job.run_id.is_not(None))
    return {int(r) for r in session.scalars(stmt)}


def jobs_with_context(session: Session, *, limit: int = 200,
                      active_only: bool = False) -> list[tuple[Job, Run | None, str | None]]:
    """Jobs (newest first) with their run and the run's dataset name, for the Jobs page."""
    stmt = (
        select(Job, Run, Dataset.name)
        .outerjoin(Run, Job.run_id == Run.id)
        .outerjoin(Dataset, Run.dataset_id == Dataset.id)
        .order_by(Job.id.desc()).limit(limit)
    )
    if active_only:
        stmt = stmt.where(Job.status.in_(ACTIVE))
    return [(job, run, name) for job, run, name in session.execute(stmt)]
