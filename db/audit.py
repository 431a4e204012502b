"""The audit trail: who did what when. Append-only: this module has no update and no delete,
and the database refuses them (triggers, see migration 0004).

Write functions of the database layer record their own event in the caller's transaction, so
an event exists exactly when the change it describes was committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session

from db.auth import Actor
from db.models import AuditEvent

# Actions (the `action` column); pages filter by them.
THRESHOLD_SAVED = "threshold_saved"
MASK_SAVED = "mask_saved"
MASK_RESTORED = "mask_restored"
MASK_CLEARED = "mask_cleared"
ROI_SAVED = "roi_saved"
ROI_REMOVED = "roi_removed"
IMAGE_CHANGED = "image_changed"  # label / split / defect type
REVIEW_DECISION = "review_decision"
IMPORT = "import"
UPLOAD = "upload"
JOB_LAUNCHED = "job_launched"
JOB_CANCELLED = "job_cancelled"
JOB_RETRIED = "job_retried"
RELEASE = "release"
USER_ADDED = "user_added"
USER_ROLE_CHANGED = "user_role_changed"
USER_DISABLED = "user_disabled"
USER_ENABLED = "user_enabled"
PASSWORD_CHANGED = "password_changed"
SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_OUT = "sign_out"


def record(session: Session, actor: Actor | str, action: str, target: str | None = None,
           details: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event; `actor` is an Actor, or a bare name (a failed sign-in of an unknown name)."""
    if isinstance(actor, Actor):
        name, user_id, role = actor.name, actor.user_id, str(actor.role)
    else:
        name, user_id, role = str(actor), None, None
    event = AuditEvent(actor=name[:100], user_id=user_id, role=role, action=action,
                       target=None if target is None else str(target)[:300], details=details or {})
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class AuditFilter:
    """What the Audit page and `prefilter-qa audit` filter by (None: any)."""

    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    text: str | None = None  # in target or details


def events(session: Session, flt: AuditFilter = AuditFilter(), *, limit: int = 5000) -> list[AuditEvent]:
    """Events matching `flt`, newest first."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if flt.actor:
        stmt = stmt.where(AuditEvent.actor == flt.actor)
    if flt.action:
        stmt = stmt.where(AuditEvent.action == flt.action)
    if flt.since is not None:
        stmt = stmt.where(AuditEvent.at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(AuditEvent.at < flt.until)
    if flt.text and flt.text.strip():
        like = f"%{flt.text.strip().lower()}%"
        stmt = stmt.where(or_(func.lower(func.coalesce(AuditEvent.target, "")).like(like),
                              func.lower(cast(AuditEvent.details, Text)).like(like),
                              func.lower(AuditEvent.actor).like(like)))
    return list(session.scalars(stmt))


def actors(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.actor).distinct().order_by(AuditEvent.actor)))


def actions(session: Session) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))


def event_dict(e: AuditEvent) -> dict[str, Any]:
    """One event as plain values (CSV export, `--json`)."""
    return {"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "role": e.role, "action": e.action,
            "target": e.target, "details": e.details}
