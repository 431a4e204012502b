"""Review outcomes and "retrain with corrections": the writes of the Review page.

Outcomes (db.models.REVIEW_OUTCOMES), each stored with reviewer and time (add_review):
- FP (OK image the run rejected): "confirmed_ok" (optionally moved to training: split train,
  label ok) or "defective" (label nok; the reviewer then draws its mask on Annotate).
- FN (NOK image the run passed): "confirmed_defect" (label stays nok; Annotate to check the
  mask) or "not_defect" (label ok; optionally moved to training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db import datasets as dq
from db import decisions as tq
from db import runs as rq
from db.auth import Actor
from db.models import Run
from engine.config import config_to_dict, make_config
from engine.jobs.queue import submit_train

OUTCOME_TEXT = {"confirmed_ok": "confirmed OK", "defective": "actually defective",
                "confirmed_defect": "confirmed defect", "not_defect": "not a defect"}
OPENS_ANNOTATE = ("defective", "confirmed_defect")
NOT_CONFIG = ("model", "preset", "image_rule")  # set by submit_train itself


@dataclass(frozen=True)
class Mark:
    """The latest review of an image, as shown on its gallery tile."""

    outcome: str
    reviewer: str
    at: str
    moved_to_train: bool

    def text(self) -> str:
        return f"✓ {OUTCOME_TEXT.get(self.outcome, self.outcome)}" + (" → train" if self.moved_to_train else "")


def record_outcome(session: Session, *, run_id: int, evaluation_id: int, image_id: int, outcome: str,
                   actor: Actor, move_to_train: bool = False, note: str | None = None) -> str:
    """Apply an outcome to the image's label/split and store the review by `actor` (refused
    below unless the role may annotate); returns a summary."""
    if outcome == "confirmed_ok":
        if move_to_train:
            dq.update_image(session, image_id, actor=actor, label="ok", split="train")
    elif outcome == "defective":
        dq.update_image(session, image_id, actor=actor, label="nok")
        move_to_train = False
    elif outcome == "not_defect":
        dq.update_image(session, image_id, actor=actor, label="ok", split="train" if move_to_train else None)
    elif outcome == "confirmed_defect":
        move_to_train = False
    tq.add_review(session, actor=actor, image_id=image_id, outcome=outcome, run_id=run_id,
                  evaluation_id=evaluation_id, moved_to_train=move_to_train, note=note)
    img = dq.get_image(session, image_id)
    return (f"{img.rel_path}: {OUTCOME_TEXT[outcome]} — now {img.label.upper()}, split {img.split or 'none'}"
            f" (recorded for {actor.name})")


def marks(session: Session, image_ids: list[int]) -> dict[int, Mark]:
    return {i: Mark(r.outcome, r.reviewer, f"{r.created_at.astimezone():%Y-%m-%d %H:%M}", r.moved_to_train)
            for i, r in tq.latest_reviews(session, image_ids).items()}


def current_images(session: Session, image_ids: list[int]) -> dict[int, tuple[str, str | None]]:
    """Today's (label, split) of each image (reviews change them; the evaluation keeps its own)."""
    return {img.id: (img.label, img.split) for img in dq.images_by_ids(session, image_ids)}


def same_config_overrides(run: Run) -> dict[str, Any]:
    """`--set` overrides that rebuild the run's config from its preset (JSON values)."""
    base = config_to_dict(make_config(run.model, run.preset))
    return {k: v for k, v in run.config.items() if k not in NOT_CONFIG and base.get(k) != v}


def retrain(session: Session, run_id: int, actor: Actor, extra: dict[str, Any] | None = None) -> tuple[int, int]:
    """Queue a new run with the same model, preset and config on the dataset as it is now
    (corrected labels, moved images, new masks), linked to its parent; (job id, run id).
    `extra`: overrides on top (the threshold policy carried from the review, a new target FRR)."""
    parent = rq.get_run(session, run_id)
    n = len(tq.reviews_for_run(session, run_id))
    job, run = submit_train(
        session, dataset=parent.dataset_id, model=parent.model, preset=parent.preset,
        overrides=same_config_overrides(parent) | (extra or {}), actor=actor, parent_run_id=parent.id,
        note=f"retrain of run #{parent.id} with {n} review outcome(s)")
    return job.id, run.id


@dataclass(frozen=True)
class Child:
    id: int
    status: str
    evaluated: bool


def children(session: Session, run_id: int) -> list[Child]:
    return [Child(r.id, r.status, rq.latest_evaluation(session, r.id) is not None)
            for r in rq.child_runs(session, run_id)]
