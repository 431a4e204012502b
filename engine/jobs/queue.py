"""Submitting work: a training run (+ its evaluation) or a new evaluation, as queued jobs."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy.orm import Session

from db import audit
from db import datasets as dq
from db import jobs as jq
from db import masks as mq
from db import releases as relq
from db import runs as rq
from db.auth import Actor, Permission, require
from db.errors import NotFoundError
from db.models import Job, JobStatus, Run
from engine.config import config_to_dict, make_config
from engine.errors import UserError
from engine.intake.images import IMAGE_RULE
from engine.services.runs import trained_run


def dataset_snapshot(session: Session, dataset_id: int, holdout_share: float, seed: int) -> dict[str, Any]:
    """Which images a run trains and is tested on, frozen at submission (labels may change later).

    A deterministic share of the OK training images is held out for the OK-only threshold.
    Images whose file went missing or changed (a re-import marks them) are left out.
    """
    train = [img.id for img in dq.list_images(session, dataset_id, split="train", label="ok", present=True)]
    if not train:
        ds = dq.get_dataset(session, dataset_id)
        raise UserError(f"dataset {ds.name!r} has no OK training images: label some images OK "
                        "with split 'train' (Datasets page) or import a folder with train/ok/")
    test = [img.id for img in dq.list_images(session, dataset_id, split="test", present=True)
            if img.label != "unknown"]
    holdout: list[int] = []
    n_hold = int(round(len(train) * holdout_share))
    if n_hold and len(train) - n_hold >= 2:
        holdout = sorted(random.Random(seed).sample(train, n_hold))
        train = [i for i in train if i not in set(holdout)]
    masks = {str(i): m.version for i, m in mq.current_masks(session, test).items()}
    return {"train": train, "holdout": holdout, "test": test, "masks": masks,
            "roi": mq.roi_version(session, dataset_id)}


def submit_train(
    session: Session, *, dataset: str | int, model: str, preset: str | None = None,
    overrides: dict[str, str] | None = None, actor: Actor,
    parent_run_id: int | None = None, note: str | None = None,
) -> tuple[Job, Run]:
    """Create a run and its training job (which evaluates on the test split when done);
    `actor` (engineer or above) is recorded as its author."""
    require(actor, Permission.JOBS, "launch a training")
    try:
        ds = dq.get_dataset(session, dataset)
    except NotFoundError:
        raise UserError(f"no dataset named {dataset!r}; see `prefilter-qa datasets`") from None
    cfg = make_config(model, preset, overrides)
    config = config_to_dict(cfg) | {"image_rule": IMAGE_RULE}
    snapshot = dataset_snapshot(session, ds.id, cfg.holdout_share, cfg.seed)
    run = rq.create_run(session, dataset_id=ds.id, model=cfg.model, preset=cfg.preset,
                        config=config, created_by=actor.name, parent_run_id=parent_run_id, note=note)
    run.snapshot = snapshot
    evaluation = rq.create_evaluation(session, run.id, ds.id)
    job = jq.enqueue_job(session, "train", {"run_id": run.id, "evaluation_id": evaluation.id},
                         run_id=run.id, evaluation_id=evaluation.id, created_by=actor.name)
    audit.record(session, actor, audit.JOB_LAUNCHED, f"job {job.id}", {
        "kind": "train", "run_id": run.id, "dataset": ds.name, "model": cfg.model, "preset": cfg.preset,
        "overrides": dict(overrides or {}), "parent_run_id": parent_run_id})
    return job, run


def submit_evaluate(
    session: Session, *, run_id: int, dataset: str | int | None = None, actor: Actor,
) -> tuple[Job, int]:
    """A new evaluation record of a trained run on a dataset's current test split."""
    require(actor, Permission.JOBS, f"evaluate run {run_id}")
    run = trained_run(session, run_id)
    try:
        ds = dq.get_dataset(session, run.dataset_id if dataset is None else dataset)
    except NotFoundError:
        raise UserError(f"no dataset named {dataset!r}") from None
    evaluation = rq.create_evaluation(session, run.id, ds.id)
    job = jq.enqueue_job(session, "evaluate", {"run_id": run.id, "evaluation_id": evaluation.id},
                         run_id=run.id, evaluation_id=evaluation.id, created_by=actor.name)
    audit.record(session, actor, audit.JOB_LAUNCHED, f"job {job.id}",
                 {"kind": "evaluate", "run_id": run.id, "evaluation_id": evaluation.id, "dataset": ds.name})
    return job, evaluation.id


def retry_job(session: Session, job_id: int, actor: Actor) -> Job:
    """Queue a failed or cancelled job again (a new row: the old one keeps its error)."""
    require(actor, Permission.JOBS, f"retry job {job_id}")
    old = jq.get_job(session, job_id)
    if old.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise UserError(f"job {job_id} is {old.status}; only failed or cancelled jobs can be retried")
    if old.run_id is not None:
        run = rq.get_run(session, old.run_id)
        if old.kind == "train":
            run.status = JobStatus.QUEUED
    evaluation_id = old.evaluation_id
    if evaluation_id is not None and old.run_id is not None:
        evaluation_id = rq.create_evaluation(session, old.run_id, rq.get_evaluation(session, evaluation_id).dataset_id).id
    payload = dict(old.payload) | {"evaluation_id": evaluation_id}
    job = jq.enqueue_job(session, old.kind, payload, run_id=old.run_id, evaluation_id=evaluation_id,
                         created_by=actor.name, retry_of=old.id)
    audit.record(session, actor, audit.JOB_RETRIED, f"job {old.id}",
                 {"kind": old.kind, "new_job_id": job.id, "run_id": old.run_id})
    return job


def cancel_job(session: Session, job_id: int, actor: Actor) -> Job:
    """Cancel a queued job or ask the worker to stop a running one (engineer or above)."""
    require(actor, Permission.JOBS, f"cancel job {job_id}")
    try:
        job = jq.request_cancel(session, job_id)
    except NotFoundError:
        raise UserError(f"no job {job_id}; see `prefilter-qa jobs`") from None
    audit.record(session, actor, audit.JOB_CANCELLED, f"job {job_id}", {"kind": job.kind, "status": job.status})
    if job.status == JobStatus.CANCELLED and job.run_id is not None:
        run = rq.get_run(session, job.run_id)
        if job.kind == "train":
            run.status = JobStatus.CANCELLED
    if job.status == JobStatus.CANCELLED:
        relq.end_release_of_job(session, job, JobStatus.CANCELLED)
    return job


def submit_release(session: Session, *, run_id: int, actor: Actor, threshold_id: int | None = None,
                   note: str | None = None) -> tuple[Job, int]:
    """Queue the export of a run + threshold as a line bundle; returns the job and the release id."""
    from engine.services.releases import new_release

    release = new_release(session, run_id, threshold_id, actor=actor, note=note)
    job = jq.enqueue_job(session, "release", {"release_id": release.id}, run_id=run_id, created_by=actor.name)
    return job, release.id

