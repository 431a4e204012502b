"""Worker registry: who serves the queue, and whether any worker is alive."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import WorkerRecord, utcnow


def register_worker(session: Session, name: str, host: str, pid: int, device: str | None) -> WorkerRecord:
    session.execute(delete(WorkerRecord).where(WorkerRecord.name == name))
    rec = WorkerRecord(name=name, host=host, pid=pid, device=device)
    session.add(rec)
    session.flush()
    return rec


def worker_heartbeat(session: Session, name: str, current_job_id: int | None) -> None:
    rec = session.scalar(select(WorkerRecord).where(WorkerRecord.name == name))
    if rec is not None:
        rec.heartbeat_at, rec.current_job_id = utcnow(), current_job_id


def unregister_worker(session: Session, name: str) -> None:
    session.execute(delete(WorkerRecord).where(WorkerRecord.name == name))


def live_workers(session: Session, max_age: timedelta) -> list[WorkerRecord]:
    cutoff = utcnow() - max_age
    return list(session.scalars(select(WorkerRecord).where(WorkerRecord.heartbeat_at >= cutoff)))
