"""What a job's child process does: gather the run's images from the database, call the engine,
write results back. Training is followed by an evaluation on the test split.

Every write is fenced by the child's attempt (`jq.fenced`): a superseded attempt's write raises
SupersededError and nothing of it is stored. A task's last write stores its results and ends
the job succeeded in one transaction, so a run or an evaluation never succeeds without its job.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import datasets as dq
from db import decisions as tq
from db import jobs as jq
from db import masks as mq
from db import runs as rq
from db.auth import system_actor
from db.models import Image, JobStatus, Mask, RegionOfInterest
from engine.config import AUTO_PRESET, config_from_run
from engine.errors import UserError
from engine.intake.images import read_mask, resize_mask, sha256_file
from engine.jobs.failpoints import (
    EVAL_SCORED,
    EVAL_SCORING,
    TRAIN_CHECKPOINT_RECORDED,
    TRAIN_CHECKPOINT_WRITTEN,
    TRAIN_EPOCHS,
    TRAIN_FEATURES,
    failpoint,
)
from engine.workspace import Workspace

log = logging.getLogger(__name__)
PHASE_TEXT = {"features": "feature pass (backbone over the training images)", "pca": "PCA",
              "train": "training", "statistics": "error statistics of the OK images"}


@dataclass
class Reporter:
    """Throttled progress writer mapping a phase's 0..1 onto [lo, hi] of the job's progress."""

    sessions: sessionmaker[Session]
    attempt: jq.Attempt
    lo: float = 0.0
    hi: float = 1.0
    min_interval_s: float = 1.0
    _last: float = field(default=0.0, repr=False)
    _start: tuple[float, float] | None = field(default=None, repr=False)  # (time, fraction) of the first report

    def __call__(self, fraction: float, message: str, eta_s: float | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        value = self.lo + (self.hi - self.lo) * max(0.0, min(1.0, fraction))
        if self._start is None:
            self._start = (now, fraction)
        t0, f0 = self._start
        if eta_s is None and fraction - f0 >= 0.05 and fraction < 1.0:  # no estimate given: its own pace
            eta_s = (now - t0) / (fraction - f0) * (1.0 - fraction)
        with self.sessions.begin() as s:  # SupersededError once the attempt is no longer current
            jq.report_progress(s, self.attempt, value, message, eta_s)


def verify_files(images: list[Image]) -> tuple[list[Image], list[dict[str, str]]]:
    """Images whose file is still there with the content that was imported; the rest reported."""

    def check(img: Image) -> str | None:
        p = Path(img.path)
        if not p.is_file():
            return "file is missing (moved or deleted since import)"
        if p.stat().st_size != img.size_bytes or sha256_file(p) != img.sha256:
            return "file changed since import (sha256 differs); re-import the folder"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = list(pool.map(check, images))
    ok = [img for img, why in zip(images, problems) if why is None]
    bad = [{"path": img.path, "reason": why} for img, why in zip(images, problems) if why]
    for item in bad:
        log.warning("excluded %s: %s", item["path"], item["reason"])
    return ok, bad


def load_roi(session: Session, dataset_id: int, version: int | None) -> np.ndarray | None:
    """The dataset's ROI at `version` as (H, W) bool, or None."""
    if version is None:
        return None
    roi = session.query(RegionOfInterest).filter_by(dataset_id=dataset_id, version=version).one_or_none()
    if roi is None or not roi.path:
        return None
    return read_mask(Path(roi.path))


def _mask_paths(session: Session, test: list[Image], versions: dict[str, int] | None) -> dict[int, str | None]:
    """Mask file per test image: the snapshot's version, or the current one."""
    if versions is None:
        current = mq.current_masks(session, [i.id for i in test])
        return {i: m.path for i, m in current.items()}
    out: dict[int, str | None] = {}
    for image_id, version in versions.items():
        m = session.query(Mask).filter_by(image_id=int(image_id), version=version).one_or_none()
        out[int(image_id)] = m.path if m else None
    return out


def run_train(ws: Workspace, sessions: sessionmaker[Session], attempt: jq.Attempt) -> None:
    from engine.training.train import TrainProgress, train

    with jq.fenced(sessions, attempt) as s:
        job = jq.get_job(s, attempt.job_id)
        run = rq.set_run_status(s, job.run_id, JobStatus.RUNNING)
        run_id, dataset_id, snapshot, evaluation_id = run.id, run.dataset_id, dict(run.snapshot), job.evaluation_id
        cfg = config_from_run(run.config)
        train_images = dq.images_by_ids(s, snapshot["train"])
        roi = load_roi(s, dataset_id, snapshot.get("roi"))
    if roi is not None:  # drawn on a reference image of any size; the model works at input size
        roi = resize_mask(roi, cfg.input_size)
    train_images, excluded = verify_files(train_images)
    if not train_images:
        raise UserError("no usable OK training image left: every file is missing or changed")
    run_dir = ws.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = Reporter(sessions, attempt, 0.0, 0.85)

    def on_progress(p: TrainProgress) -> None:
        failpoint(TRAIN_FEATURES if p.phase == "features" else TRAIN_EPOCHS if p.phase == "train" else p.phase)
        msg = PHASE_TEXT.get(p.phase, p.phase) + (  # no loss outside the epochs (nan there)
            f": epoch {p.epoch}/{p.epochs}, step {p.step}/{p.steps}, loss {p.loss:.4g}" if p.phase == "train"
            else f": step {p.step}/{p.steps}")
        report(p.fraction, msg, p.eta_s)

    n_hold, n_test = len(snapshot.get("holdout", [])), len(snapshot.get("test", []))
    log.info("run %s: training %s (%s) on %d OK images (%d more held out for the OK-only threshold); "
             "then evaluation on %d test images", run_id, cfg.model, cfg.preset, len(train_images), n_hold, n_test)
    with sessions.begin() as s:  # auto judges its candidates on them; DFR weighs its score's parts on them
        holdout, _ = verify_files(dq.images_by_ids(s, snapshot.get("holdout", [])))
    if cfg.preset == AUTO_PRESET:  # candidates judged on synthetic defects in the held-out OK images
        from engine.training.auto import train_auto

        result = train_auto(cfg, [Path(i.path) for i in train_images], [Path(i.path) for i in holdout], run_dir,
                            progress=on_progress, roi=roi)
    else:
        result = train(cfg, [Path(i.path) for i in train_images], run_dir, progress=on_progress, roi=roi,
                       eval_images=n_hold + n_test, calibration=[Path(i.path) for i in holdout])
    failpoint(TRAIN_CHECKPOINT_WRITTEN)
    info = dict(result.info) | {
        "epochs": result.epochs, "final_loss": result.final_loss, "train_seconds": result.seconds,
        "device": result.device, "n_train": len(train_images), "excluded": excluded,
    }
    with jq.fenced(sessions, attempt) as s:  # the run stays running until its job ends
        run = rq.set_run_status(s, run_id, JobStatus.RUNNING, checkpoint=str(result.checkpoint), info=info)
        if "auto" in info:  # the run is the chosen candidate from now on (score rule, retraining)
            run.config = dict(info["auto"]["config"]) | {"image_rule": run.config.get("image_rule")}
        jq.get_job(s, attempt.job_id).device = result.device
    failpoint(TRAIN_CHECKPOINT_RECORDED)
    if evaluation_id is not None:
        run_evaluation(ws, sessions, attempt, evaluation_id, Reporter(sessions, attempt, 0.85, 1.0),
                       snapshot=snapshot)


def run_evaluate(ws: Workspace, sessions: sessionmaker[Session], attempt: jq.Attempt) -> None:
    with sessions.begin() as s:
        evaluation_id = jq.get_job(s, attempt.job_id).evaluation_id
    run_evaluation(ws, sessions, attempt, evaluation_id, Reporter(sessions, attempt), snapshot=None)


def finish(sessions: sessionmaker[Session], attempt: jq.Attempt) -> None:
    """End the job succeeded unless its task already did so with its results."""
    with sessions.begin() as s:
        job = jq.get_job(s, attempt.job_id)
        if job.attempt == attempt.number and job.status == JobStatus.SUCCEEDED:
            return
        jq.finish_attempt(s, attempt, JobStatus.SUCCEEDED)


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


def _usable_band(auto: dict[str, Any]) -> tuple[float, float] | None:
    """The suggested review band if it can be stored with the automatic threshold, else None."""
    band = auto.get("band")
    if band is None:
        return None
    lo, hi = band
    if _usable(lo) and _usable(hi) and float(lo) <= float(auto["image"]) <= float(hi):
        return float(lo), float(hi)
    log.warning("suggested review band %s does not fit the automatic threshold %s; none stored", band, auto["image"])
    return None


def run_evaluation(ws: Workspace, sessions: sessionmaker[Session], attempt: jq.Attempt, evaluation_id: int,
                   report: Reporter, snapshot: dict[str, Any] | None) -> None:
    """Evaluate on the snapshot's test images (after training) or the dataset's current test split;
    stores the results, the automatic threshold and the job's success in one fenced transaction."""
    from engine.evaluation.evaluate import EvalItem, evaluate_run

    with jq.fenced(sessions, attempt) as s:
        ev = rq.get_evaluation(s, evaluation_id)
        ev.status = JobStatus.RUNNING
        run = rq.get_run(s, ev.run_id)
        run_id, checkpoint, dataset_id = run.id, Path(run.checkpoint or ""), ev.dataset_id
        cfg = config_from_run(run.config)
        if snapshot is not None and dataset_id == run.dataset_id:
            test = dq.images_by_ids(s, snapshot["test"])
            masks = _mask_paths(s, test, snapshot.get("masks", {}))
            roi = load_roi(s, dataset_id, snapshot.get("roi"))
        else:
            test = [i for i in dq.list_images(s, dataset_id, split="test", present=True) if i.label != "unknown"]
            masks = _mask_paths(s, test, None)
            roi = load_roi(s, dataset_id, mq.roi_version(s, dataset_id))
        holdout = dq.images_by_ids(s, run.snapshot.get("holdout", []))
        labels = {i.id: (i.label, i.defect_type) for i in test}
    test, excluded = verify_files(test)
    holdout, _ = verify_files(holdout)
    if not test and not holdout:
        raise UserError("nothing to evaluate on: no usable labelled test images and no held-out OK images")
    if not test:
        log.warning("no labelled test images: only the OK-only threshold (held-out OK images) is set")
    items = [EvalItem(image_id=i.id, path=Path(i.path), label=i.label, defect_type=i.defect_type,
                      mask_path=Path(masks[i.id]) if masks.get(i.id) else None) for i in test]
    out_dir = ws.evaluation_dir(run_id, evaluation_id)
    log.info("evaluation %s of run %s: %d test images", evaluation_id, run_id, len(items))

    def on_progress(fraction: float, msg: str) -> None:
        failpoint(EVAL_SCORING)
        report(fraction, msg)

    result = evaluate_run(
        checkpoint, items, out_dir, holdout=[Path(i.path) for i in holdout], roi=roi,
        progress=on_progress, device=cfg.device,
    )
    failpoint(EVAL_SCORED)
    metrics = dict(result.metrics) | {
        "holdout_scores": list(result.holdout_scores), "excluded": excluded,
        "failed": [{"path": p, "reason": r} for p, r in result.failed], "eval_seconds": result.seconds,
    }
    rows = [{"image_id": sc.image_id, "label": labels[sc.image_id][0],
             "defect_type": labels[sc.image_id][1], "score": float(sc.score), "heatmap": sc.heatmap}
            for sc in result.images]
    report(1.0, "evaluation done", 0.0, force=True)
    with jq.fenced(sessions, attempt) as s:
        rq.finish_evaluation(s, evaluation_id, status=JobStatus.SUCCEEDED, metrics=metrics,
                             directory=str(out_dir), scores=rows)
        current = tq.active_threshold(s, run_id)
        auto = result.auto_threshold
        if not _usable(auto.get("image")):
            log.warning("evaluation %s: no usable automatic threshold (%s); none stored", evaluation_id, auto)
        elif current is None or current.set_by == tq.AUTO:
            tq.save_threshold(
                s, run_id, base_id=None, check_base=False, image_threshold=auto["image"],
                pixel_threshold=auto["pixel"] if _usable(auto.get("pixel")) else None, rule=auto.get("rule"),
                review_band=_usable_band(auto), actor=system_actor(tq.AUTO),
                evaluation_id=evaluation_id, note=f"automatic after evaluation {evaluation_id}",
            )
        jq.finish_attempt(s, attempt, JobStatus.SUCCEEDED)  # a training's run succeeds with it


def run_release(ws: Workspace, sessions: sessionmaker[Session], attempt: jq.Attempt) -> None:
    """Export the release's bundle into the workspace (engine.services.releases)."""
    from engine.services.releases import perform_release

    with sessions.begin() as s:
        release_id = int(jq.get_job(s, attempt.job_id).payload["release_id"])
    Reporter(sessions, attempt)(0.05, "exporting the model and checking it against torch", force=True)
    meta = perform_release(ws, sessions, release_id)
    Reporter(sessions, attempt)(1.0, f"bundle {meta['sha256'][:12]} written", 0.0, force=True)

