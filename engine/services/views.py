"""Plain-dict views of database rows: the CLI's `--json` shapes, reused by the dashboard."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db import decisions as tq
from db import runs as rq
from db.models import Job, Run

HEADLINE = ("image_auroc", "image_auroc_ci95", "pixel_auroc", "aupro", "f1_max", "f1_threshold",
            "fpr_at_full_recall", "ok_only_threshold", "per_defect", "n_ok", "n_nok", "resolution_note")


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "attempt": job.attempt,
        "progress": round(job.progress, 4),
        "error": job.error, "message": job.message, "eta_s": job.eta_s, "run_id": job.run_id,
        "evaluation_id": job.evaluation_id, "worker": job.worker, "device": job.device,
        "executor": job.executor or "local", "external_id": job.external_id, "node": job.node or job.child_host,
        "gpu": job.gpu, "retry_of": job.retry_of,
        "created_at": job.created_at.isoformat(), "log": job.log_path,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def headline_metrics(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    if not metrics:
        return None
    return {k: metrics.get(k) for k in HEADLINE}


def run_dict(session: Session, run: Run, *, full_metrics: bool = False) -> dict[str, Any]:
    """The `prefilter-qa runs ID --json` object."""
    ev = rq.latest_evaluation(session, run.id)
    metrics = (ev.metrics if full_metrics else headline_metrics(ev.metrics)) if ev else None
    return {
        "id": run.id, "model": run.model, "preset": run.preset, "status": run.status,
        "dataset_id": run.dataset_id, "parent_run_id": run.parent_run_id,
        "created_by": run.created_by, "created_at": run.created_at.isoformat(),
        "config": run.config, "info": run.info, "checkpoint": run.checkpoint,
        "evaluation_id": ev.id if ev else None, "metrics": metrics,
        "threshold": tq.threshold_dict(tq.active_threshold(session, run.id)),
    }


def run_row(session: Session, run: Run) -> dict[str, Any]:
    """One line of `prefilter-qa runs` (list)."""
    ev = rq.latest_evaluation(session, run.id)
    m = ev.metrics if ev else {}
    t = tq.active_threshold(session, run.id)
    return {
        "id": run.id, "model": run.model, "preset": run.preset, "status": run.status,
        "dataset_id": run.dataset_id, "created_at": run.created_at.isoformat(),
        "image_auroc": m.get("image_auroc"), "pixel_auroc": m.get("pixel_auroc"),
        "threshold": t.image_threshold if t else None,
    }
