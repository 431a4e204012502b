"""The job queue: enqueue, claim exactly once, progress + heartbeat, finish, cancel, reap."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.errors import NotFoundError
from db.models import ACTIVE, FINAL, Dataset, Job, JobStatus, Run, utcnow


def enqueue_job(
    session: Session, kind: str, payload: dict[str, Any], *, run_id: int | None = None,
    evaluation_id: int | None = None, created_by: str = "system", retry_of: int | None = None,
) -> Job:
    job = Job(kind=kind, payload=payload, run_id=run_id, evaluation_id=evaluation_id,
              created_by=created_by, retry_of=retry_of, status=JobStatus.QUEUED)
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def claim_next_job(session: Session, worker: str) -> Job | None:
    """Mark the oldest queued job running for `worker`, atomically.

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
    session.flush()
    return job


def report_progress(
    session: Session, job_id: int, progress: float | None = None, message: str | None = None,
    eta_s: float | None = None,
) -> bool:
    """Write progress and a heartbeat; returns whether the job was asked to cancel."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, float(progress)))
    if message is not None:
        values["message"] = message
    values["eta_s"] = eta_s
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(**values))
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def heartbeat(session: Session, job_id: int) -> bool:
    """Mark the job alive; returns whether it was asked to cancel."""
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                    .values(heartbeat_at=utcnow()))
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def set_child(session: Session, job_id: int, pid: int | None, log_path: str | None) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(child_pid=pid, log_path=log_path))


def finish_job(session: Session, job_id: int, status: str, error: str | None = None) -> bool:
    """End a running job; returns False if it had already ended (e.g. cancelled meanwhile)."""
    if status not in FINAL:
        raise ValueError(f"not a final status: {status}")
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(), "eta_s": None}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    result = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(**values)
    )
    return result.rowcount == 1


def request_cancel(session: Session, job_id: int) -> Job:
    """A queued job ends cancelled at once; a running one is flagged for its worker to kill."""
    job = get_job(session, job_id)
    if job.status == JobStatus.QUEUED:
        job.status, job.finished_at, job.error = JobStatus.CANCELLED, utcnow(), "cancelled before it started"
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
