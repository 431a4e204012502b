"""Releases (a run + threshold exported as a line bundle) and the line's results brought back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import audit, validate
from db.auth import Actor, Permission, require
from db.errors import NotFoundError
from db.models import FINAL, Job, JobStatus, LineResult, Release, utcnow


def create_release(session: Session, run_id: int, threshold_id: int | None, *, actor: Actor,
                   note: str | None = None) -> Release:
    """Record a release by `actor` (who must be allowed to release), audited."""
    require(actor, Permission.RELEASES, f"release run {run_id}")
    note = validate.text(note, "release note")
    release = Release(run_id=run_id, threshold_id=threshold_id, created_by=actor.name, note=note,
                      status=JobStatus.QUEUED)
    session.add(release)
    session.flush()
    audit.record(session, actor, audit.RELEASE, f"release {release.id}",
                 {"run_id": run_id, "threshold_id": threshold_id, "note": note})
    return release


def get_release(session: Session, release_id: int) -> Release:
    release = session.get(Release, release_id)
    if release is None:
        raise NotFoundError(f"no release {release_id}")
    return release


def finish_release(session: Session, release_id: int, status: str, *, path: str | None = None,
                   bundle_sha256: str | None = None, info: dict[str, Any] | None = None,
                   error: str | None = None) -> Release:
    if status not in FINAL:
        raise ValueError(f"not a final status: {status!r}")
    release = get_release(session, release_id)
    release.status, release.path, release.bundle_sha256 = status, path, bundle_sha256
    release.info, release.error, release.finished_at = dict(info or {}), error, utcnow()
    return release


def end_release_of_job(session: Session, job: Job, status: str, reason: str | None = None) -> None:
    """A release job that ended without finishing its release (killed, cancelled) ends the release too."""
    if job.kind != "release" or "release_id" not in (job.payload or {}):
        return
    release = session.get(Release, int(job.payload["release_id"]))
    if release is not None and release.status not in FINAL:
        finish_release(session, release.id, status, error=reason or f"its job {job.id} ended {status}")


def list_releases(session: Session, run_id: int | None = None, limit: int = 100) -> list[Release]:
    stmt = select(Release).order_by(Release.id.desc()).limit(limit)
    if run_id is not None:
        stmt = stmt.where(Release.run_id == run_id)
    return list(session.scalars(stmt))


def release_by_sha(session: Session, bundle_sha256: str) -> Release | None:
    return session.scalars(select(Release).where(Release.bundle_sha256 == bundle_sha256)
                           .order_by(Release.id.desc()).limit(1)).first()


def add_line_results(session: Session, run_id: int, rows: Iterable[dict[str, Any]], *, actor: Actor) -> int:
    """Store line verdicts; a row already stored (same bundle, path and time) is skipped.
    Rows: bundle_sha256, threshold_id, path, verdict, score, error, ms, scored_at (datetime), image_id,
    release_id. Returns how many were new."""
    require(actor, Permission.IMPORT, f"bring line results of run {run_id} in")
    rows = list(rows)
    if not rows:
        return 0
    shas = {r["bundle_sha256"] for r in rows}
    seen = set(session.execute(
        select(LineResult.bundle_sha256, LineResult.path, LineResult.scored_at)
        .where(LineResult.bundle_sha256.in_(shas))).all())
    new = 0
    for r in rows:
        key = (r["bundle_sha256"], r["path"], r["scored_at"])
        if key in seen:
            continue
        seen.add(key)
        session.add(LineResult(run_id=run_id, imported_by=actor.name, **r))
        new += 1
    session.flush()
    return new


def line_results(session: Session, run_id: int, verdicts: Sequence[str] | None = None,
                 since: datetime | None = None) -> list[LineResult]:
    stmt = select(LineResult).where(LineResult.run_id == run_id).order_by(LineResult.scored_at)
    if verdicts:
        stmt = stmt.where(LineResult.verdict.in_(list(verdicts)))
    if since is not None:
        stmt = stmt.where(LineResult.scored_at >= since)
    return list(session.scalars(stmt))


def runs_with_line_results(session: Session) -> dict[int, int]:
    """run id -> number of line results."""
    rows = session.execute(select(LineResult.run_id, func.count()).group_by(LineResult.run_id)).all()
    return {int(r): int(n) for r, n in rows}
