"""Where a job attempt runs when an executor other than the local worker starts it (a Ray cluster).

The queue stays in the database (db.jobs): an executor claims a row as the local worker does,
then records here what it submitted where. Every write names the attempt and goes through
`check_attempt`, so an executor's late write about a superseded attempt is refused like the
child's own.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.jobs import Attempt, check_attempt
from db.models import Job, JobStatus


def record_submission(session: Session, attempt: Attempt, *, executor: str, external_id: str,
                      log_path: str | None) -> Job:
    """The attempt was handed to `executor` under `external_id` (e.g. a Ray submission id)."""
    job = check_attempt(session, attempt)
    job.executor, job.external_id, job.log_path = executor, external_id, log_path
    job.node = job.gpu = None
    return job


def record_node(session: Session, attempt: Attempt, node: str) -> Job:
    """The node the executor placed the attempt on (a name people recognise, with its address)."""
    job = check_attempt(session, attempt)
    job.node = node[:200]
    return job


def record_gpu(session: Session, attempt: Attempt, gpu: str | None) -> Job:
    """The GPU ids the attempt's process was given (CUDA_VISIBLE_DEVICES); None on a CPU."""
    job = check_attempt(session, attempt)
    job.gpu = gpu[:64] if gpu else None
    return job


def release_claim(session: Session, attempt: Attempt, reason: str) -> Job:
    """Give a claimed attempt back to the queue (the executor could not submit it); the next
    claim starts a new attempt, so nothing of this one can ever write."""
    job = check_attempt(session, attempt)
    job.status, job.worker, job.started_at, job.heartbeat_at = JobStatus.QUEUED, None, None, None
    job.message = reason[:500]
    job.executor = job.external_id = job.node = job.gpu = None
    job.child_pid = job.child_pgid = job.child_host = None
    session.flush()
    return job


def oldest_queued(session: Session) -> Job | None:
    """The job the next claim would take (read without a lock: a hint to size the claim)."""
    return session.scalar(select(Job).where(Job.status == JobStatus.QUEUED).order_by(Job.id).limit(1))


def running_on(session: Session, executor: str) -> list[Job]:
    """Running jobs submitted to `executor` (a restarted executor adopts them)."""
    stmt = select(Job).where(Job.status == JobStatus.RUNNING, Job.executor == executor,
                             Job.external_id.is_not(None)).order_by(Job.id)
    return list(session.scalars(stmt))


def adopt(session: Session, attempt: Attempt, worker: str) -> Job:
    """Follow a running attempt from this worker on (its own executor stopped)."""
    job = check_attempt(session, attempt)
    job.worker = worker
    return job
