"""Thresholds (with history and conflict detection), reviews and predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import audit, validate
from db.auth import Actor, Permission, require
from db.errors import NotFoundError, StaleEditError
from db.models import REVIEW_OUTCOMES, Prediction, Review, Run, Threshold

AUTO = "auto"


def active_threshold(session: Session, run_id: int) -> Threshold | None:
    return session.scalar(
        select(Threshold).where(Threshold.run_id == run_id).order_by(Threshold.id.desc()).limit(1)
    )


def threshold_history(session: Session, run_id: int) -> list[Threshold]:
    return list(session.scalars(
        select(Threshold).where(Threshold.run_id == run_id).order_by(Threshold.id.desc())
    ))


def save_threshold(
    session: Session, run_id: int, *, actor: Actor, base_id: int | None, image_threshold: float,
    pixel_threshold: float | None = None, review_band: tuple[float, float] | None = None,
    rule: str | None = None, note: str | None = None,
    evaluation_id: int | None = None, check_base: bool = True,
) -> Threshold:
    """Add a threshold row that becomes the active one, set by `actor` (engineer or admin).

    `base_id` is the active threshold the user was looking at; if another save happened since,
    StaleEditError (the later save sees the conflict instead of silently overwriting).
    Values are checked first (ValidationError): finite numbers, lo <= threshold <= hi, a note
    of at most validate.NOTE_MAX characters. The run's row is locked while the active threshold
    is compared, so two concurrent saves from the same base cannot both succeed.
    """
    require(actor, Permission.THRESHOLDS, f"change the threshold of run {run_id}")
    image_threshold = validate.finite(image_threshold, "image threshold")
    pixel_threshold = validate.optional_finite(pixel_threshold, "pixel threshold")
    review_band = validate.band(review_band, image_threshold)
    rule = validate.label(rule, "threshold rule", validate.RULE_MAX)
    note = validate.text(note, "note")
    validate.name(actor.name, "user name")
    _lock_run(session, run_id)
    current = active_threshold(session, run_id)
    current_id = current.id if current else None
    if check_base and current_id != base_id:
        raise StaleEditError(
            f"the threshold of run {run_id} was changed by {current.set_by if current else '?'}"
            f" since this edit began; reload to see it"
        )
    row = Threshold(
        run_id=run_id, evaluation_id=evaluation_id, parent_id=current_id,
        image_threshold=image_threshold, pixel_threshold=pixel_threshold,
        review_low=review_band[0] if review_band else None,
        review_high=review_band[1] if review_band else None,
        rule=rule, set_by=actor.name, note=note,
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, audit.THRESHOLD_SAVED, f"run {run_id}", {
        "threshold_id": row.id, "image": row.image_threshold, "pixel": row.pixel_threshold,
        "review_band": list(review_band) if review_band else None, "rule": rule, "note": note,
        "replaces": current_id})
    return row


def _lock_run(session: Session, run_id: int) -> None:
    """Serialise threshold saves of one run (PostgreSQL row lock; SQLite's IMMEDIATE transaction
    already holds the write lock)."""
    stmt = select(Run.id).where(Run.id == run_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    if session.scalar(stmt) is None:
        raise NotFoundError(f"no run {run_id}")


def threshold_dict(t: Threshold | None) -> dict[str, Any] | None:
    """The `threshold` object of `prefilter-qa runs ID --json`."""
    if t is None:
        return None
    band = [t.review_low, t.review_high] if t.review_low is not None else None
    return {
        "id": t.id, "image": t.image_threshold, "pixel": t.pixel_threshold, "review_band": band,
        "set_by": t.set_by, "at": t.created_at.isoformat(), "note": t.note, "rule": t.rule,
    }


def add_review(
    session: Session, *, actor: Actor, image_id: int, outcome: str, run_id: int | None = None,
    evaluation_id: int | None = None, moved_to_train: bool = False, note: str | None = None,
) -> Review:
    """Store a review decision by `actor` (annotator or above)."""
    require(actor, Permission.ANNOTATE, f"record a review decision on image {image_id}")
    validate.choice(outcome, "review outcome", REVIEW_OUTCOMES)
    note = validate.text(note, "note")
    validate.name(actor.name, "user name")
    review = Review(image_id=image_id, outcome=outcome, reviewer=actor.name, run_id=run_id,
                    evaluation_id=evaluation_id, moved_to_train=moved_to_train, note=note)
    session.add(review)
    session.flush()
    audit.record(session, actor, audit.REVIEW_DECISION, f"image {image_id}", {
        "outcome": outcome, "run_id": run_id, "evaluation_id": evaluation_id,
        "moved_to_train": moved_to_train, "note": note})
    return review


def reviews_for_run(session: Session, run_id: int) -> list[Review]:
    return list(session.scalars(select(Review).where(Review.run_id == run_id).order_by(Review.id.desc())))


def latest_reviews(session: Session, image_ids: Sequence[int]) -> dict[int, Review]:
    """The newest review of each image (any run)."""
    if not image_ids:
        return {}
    rows = session.scalars(select(Review).where(Review.image_id.in_(image_ids)).order_by(Review.id))
    return {r.image_id: r for r in rows}


def add_predictions(session: Session, run_id: int, threshold_id: int | None,
                    rows: Sequence[dict[str, Any]]) -> list[Prediction]:
    preds = [Prediction(run_id=run_id, threshold_id=threshold_id, **row) for row in rows]
    session.add_all(preds)
    session.flush()
    return preds
