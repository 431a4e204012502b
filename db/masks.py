"""Versioned masks and regions of interest: a save adds a version; a stale base is a conflict."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import audit, validate
from db.auth import Actor, Permission, require
from db.errors import StaleEditError
from db.models import Evaluation, EvaluationScore, Image, JobStatus, Mask, RegionOfInterest, Threshold


def current_mask(session: Session, image_id: int) -> Mask | None:
    return session.scalar(
        select(Mask).where(Mask.image_id == image_id).order_by(Mask.version.desc()).limit(1)
    )


def current_masks(session: Session, image_ids: Sequence[int]) -> dict[int, Mask]:
    """Latest mask version of each image that has one."""
    if not image_ids:
        return {}
    latest = (
        select(Mask.image_id, func.max(Mask.version).label("v"))
        .where(Mask.image_id.in_(image_ids)).group_by(Mask.image_id).subquery()
    )
    stmt = select(Mask).join(latest, (Mask.image_id == latest.c.image_id) & (Mask.version == latest.c.v))
    return {m.image_id: m for m in session.scalars(stmt)}


def mask_history(session: Session, image_id: int) -> list[Mask]:
    return list(session.scalars(select(Mask).where(Mask.image_id == image_id).order_by(Mask.version.desc())))


def add_mask_version(
    session: Session, image_id: int, *, actor: Actor, base_version: int | None, source: str,
    path: str | None, sha256: str | None, pixels: int,
) -> Mask:
    """Add a version by `actor` (annotator or above) on top of `base_version` (None: the image
    had no mask when the edit began). Imported versions are covered by the import's audit event.

    Raises StaleEditError if another version was saved since; the unique (image, version)
    constraint catches the race the check cannot see on databases without IMMEDIATE locks.
    """
    require(actor, Permission.ANNOTATE, f"save the mask of image {image_id}")
    validate.name(actor.name, "user name")
    cur = current_mask(session, image_id)
    cur_version = cur.version if cur else None
    if cur_version != base_version:
        who = f" by {cur.author} at {cur.created_at:%Y-%m-%d %H:%M:%S}" if cur else ""
        raise StaleEditError(
            f"mask of image {image_id} changed since this edit began: it is at version "
            f"{cur_version}{who}, the edit started from version {base_version}"
        )
    mask = Mask(
        image_id=image_id, version=(cur_version or 0) + 1, parent_version=base_version,
        source=source, author=actor.name, path=path, sha256=sha256, pixels=pixels,
    )
    session.add(mask)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise StaleEditError(f"mask of image {image_id} was saved concurrently") from exc
    if source != "imported":
        action = {"restored": audit.MASK_RESTORED, "cleared": audit.MASK_CLEARED}.get(source, audit.MASK_SAVED)
        audit.record(session, actor, action, f"image {image_id}",
                     {"version": mask.version, "from_version": base_version, "pixels": pixels, "source": source})
    return mask


def image_with_mask_sha(session: Session, image: Image, sha256: str) -> bool:
    """Whether any version of the image's mask already has this content (re-import adds nothing)."""
    return session.scalar(
        select(func.count(Mask.id)).where(Mask.image_id == image.id, Mask.sha256 == sha256)
    ) > 0


def current_roi(session: Session, dataset_id: int) -> RegionOfInterest | None:
    roi = session.scalar(
        select(RegionOfInterest).where(RegionOfInterest.dataset_id == dataset_id)
        .order_by(RegionOfInterest.version.desc()).limit(1)
    )
    return roi if roi is not None and roi.path else None


def add_roi_version(
    session: Session, dataset_id: int, *, actor: Actor, base_version: int | None,
    path: str | None, sha256: str | None, width: int | None, height: int | None,
) -> RegionOfInterest:
    """Save a new ROI by `actor` (engineer or above; path None removes it); a stale base version
    is a conflict."""
    require(actor, Permission.ROI, f"change the region of interest of dataset {dataset_id}")
    validate.name(actor.name, "user name")
    last = session.scalar(
        select(func.max(RegionOfInterest.version)).where(RegionOfInterest.dataset_id == dataset_id)
    )
    if last != base_version:
        raise StaleEditError(
            f"region of interest of dataset {dataset_id} changed since this edit began "
            f"(now version {last}, edit started from {base_version})"
        )
    roi = RegionOfInterest(
        dataset_id=dataset_id, version=(last or 0) + 1, author=actor.name, path=path,
        sha256=sha256, width=width, height=height,
    )
    session.add(roi)
    session.flush()
    audit.record(session, actor, audit.ROI_SAVED if path else audit.ROI_REMOVED, f"dataset {dataset_id}",
                 {"version": roi.version, "from_version": base_version})
    return roi


def roi_version(session: Session, dataset_id: int) -> int | None:
    return session.scalar(
        select(func.max(RegionOfInterest.version)).where(RegionOfInterest.dataset_id == dataset_id)
    )


def mask_version(session: Session, image_id: int, version: int) -> Mask | None:
    """One stored version of an image's mask (history, restore)."""
    return session.scalar(select(Mask).where(Mask.image_id == image_id, Mask.version == version))


# Annotation queues: which images the Annotate page steps through with prev/next.
QUEUES = {
    "nok_unmasked": "NOK without mask",
    "nok": "All NOK images",
    "false_negatives": "False negatives of a run",
    "all": "All images",
}


def false_negative_ids(session: Session, run_id: int) -> list[int]:
    """Images labelled NOK now that scored below the run's active image threshold.

    Scores come from the run's latest succeeded evaluation; lowest score (worst miss) first.
    Empty when the run has no evaluation or no threshold yet.
    """
    ev_id = session.scalar(
        select(Evaluation.id).where(Evaluation.run_id == run_id, Evaluation.status == JobStatus.SUCCEEDED)
        .order_by(Evaluation.id.desc()).limit(1)
    )
    threshold = session.scalar(
        select(Threshold.image_threshold).where(Threshold.run_id == run_id)
        .order_by(Threshold.id.desc()).limit(1)
    )
    if ev_id is None or threshold is None:
        return []
    stmt = (
        select(EvaluationScore.image_id).join(Image, Image.id == EvaluationScore.image_id)
        .where(EvaluationScore.evaluation_id == ev_id, Image.label == "nok",
               EvaluationScore.score < threshold)
        .order_by(EvaluationScore.score, EvaluationScore.image_id)
    )
    return list(session.scalars(stmt))


def annotation_queue(session: Session, dataset_id: int, kind: str, run_id: int | None = None) -> list[int]:
    """Image ids of a queue (see QUEUES) in the order prev/next walks them."""
    if kind == "false_negatives":
        return false_negative_ids(session, run_id) if run_id is not None else []
    stmt = select(Image.id).where(Image.dataset_id == dataset_id).order_by(Image.id)
    if kind in ("nok", "nok_unmasked"):
        stmt = stmt.where(Image.label == "nok")
    if kind == "nok_unmasked":
        latest = (select(Mask.pixels).where(Mask.image_id == Image.id)
                  .order_by(Mask.version.desc()).limit(1).scalar_subquery())
        stmt = stmt.where(func.coalesce(latest, 0) == 0)
    elif kind not in ("nok", "all"):
        raise ValueError(f"unknown annotation queue {kind!r}; one of {sorted(QUEUES)}")
    return list(session.scalars(stmt))
