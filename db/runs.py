"""Runs, evaluations (each its own record) and their per-image scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db import validate
from db.errors import NotFoundError
from db.models import FINAL, Evaluation, EvaluationScore, Image, JobStatus, Run, utcnow


def create_run(
    session: Session, *, dataset_id: int, model: str, preset: str, config: dict[str, Any],
    created_by: str = "system", parent_run_id: int | None = None, note: str | None = None,
) -> Run:
    run = Run(dataset_id=dataset_id, model=model, preset=preset, config=config,
              created_by=validate.name(created_by, "user name"), parent_run_id=parent_run_id,
              note=validate.text(note, "note"), status=JobStatus.QUEUED)
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    return run


def list_runs(session: Session, *, dataset_id: int | None = None, limit: int = 200) -> list[Run]:
    stmt = select(Run).order_by(Run.id.desc()).limit(limit)
    if dataset_id is not None:
        stmt = stmt.where(Run.dataset_id == dataset_id)
    return list(session.scalars(stmt))


def set_run_status(session: Session, run_id: int, status: str, **fields: Any) -> Run:
    run = get_run(session, run_id)
    run.status = status
    for key, value in fields.items():
        setattr(run, key, value)
    if status in FINAL:
        run.finished_at = utcnow()
    return run


def create_evaluation(session: Session, run_id: int, dataset_id: int) -> Evaluation:
    ev = Evaluation(run_id=run_id, dataset_id=dataset_id, status=JobStatus.QUEUED)
    session.add(ev)
    session.flush()
    return ev


def get_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    ev = session.get(Evaluation, evaluation_id)
    if ev is None:
        raise NotFoundError(f"no evaluation {evaluation_id}")
    return ev


def finish_evaluation(
    session: Session, evaluation_id: int, *, status: str, metrics: dict[str, Any] | None = None,
    directory: str | None = None, scores: Sequence[dict[str, Any]] = (),
) -> Evaluation:
    """Store the outcome; `scores` rows: image_id, label, defect_type, score, heatmap."""
    ev = get_evaluation(session, evaluation_id)
    ev.status, ev.finished_at = status, utcnow()
    if metrics is not None:
        ev.metrics = metrics
    if directory is not None:
        ev.directory = directory
    session.execute(delete(EvaluationScore).where(EvaluationScore.evaluation_id == evaluation_id))
    session.add_all(EvaluationScore(evaluation_id=evaluation_id, **row) for row in scores)
    session.flush()
    return ev


def latest_evaluation(session: Session, run_id: int, *, succeeded_only: bool = True) -> Evaluation | None:
    stmt = select(Evaluation).where(Evaluation.run_id == run_id)
    if succeeded_only:
        stmt = stmt.where(Evaluation.status == JobStatus.SUCCEEDED)
    return session.scalar(stmt.order_by(Evaluation.id.desc()).limit(1))


def list_evaluations(session: Session, run_id: int) -> list[Evaluation]:
    return list(session.scalars(
        select(Evaluation).where(Evaluation.run_id == run_id).order_by(Evaluation.id.desc())
    ))


def evaluation_scores(session: Session, evaluation_id: int) -> list[EvaluationScore]:
    return list(session.scalars(
        select(EvaluationScore).where(EvaluationScore.evaluation_id == evaluation_id)
        .order_by(EvaluationScore.score.desc())
    ))


def common_image_ids(session: Session, evaluation_ids: Sequence[int]) -> list[int]:
    """Test images that every one of the given evaluations scored (for run comparison)."""
    stmt = (
        select(EvaluationScore.image_id)
        .where(EvaluationScore.evaluation_id.in_(evaluation_ids))
        .group_by(EvaluationScore.image_id)
        .having(func.count(func.distinct(EvaluationScore.evaluation_id)) == len(set(evaluation_ids)))
        .order_by(EvaluationScore.image_id)
    )
    return list(session.scalars(stmt))


def evaluation_images(session: Session, evaluation_id: int) -> list[tuple[EvaluationScore, Image]]:
    """Scores of an evaluation with their image rows (highest score first): one query for a
    page's gallery and arrays instead of one per image."""
    stmt = (
        select(EvaluationScore, Image).join(Image, Image.id == EvaluationScore.image_id)
        .where(EvaluationScore.evaluation_id == evaluation_id)
        .order_by(EvaluationScore.score.desc(), EvaluationScore.image_id)
    )
    return [(sc, img) for sc, img in session.execute(stmt)]


def child_runs(session: Session, run_id: int) -> list[Run]:
    """Runs retrained from this one (newest first), for "compare with parent/child"."""
    return list(session.scalars(select(Run).where(Run.parent_run_id == run_id).order_by(Run.id.desc())))
