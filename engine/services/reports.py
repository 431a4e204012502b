"""Evaluation reports (CSV per test image, PDF for change control) from the database's records.

`prefilter-qa report` and the Results page's downloads both call `report_bytes`; the rendering
is in the core (`engine.evaluation.report`, `report_pdf`), which sees no database.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db import datasets as dq
from db import decisions as tq
from db import masks as mq
from db import runs as rq
from db.errors import NotFoundError
from db.models import JobStatus, Threshold
from engine.config import score_rule
from engine.errors import UserError
from engine.evaluation.heatmaps import score_map_rel
from engine.evaluation.report import ReportImage, ReportInput, ThresholdRow, csv_bytes
from engine.fsutil import atomic_write_bytes

FORMATS = ("csv", "pdf")


def _when(dt: object) -> str:
    return f"{dt.astimezone():%Y-%m-%d %H:%M:%S}" if dt is not None else "–"


def _threshold_row(t: Threshold) -> ThresholdRow:
    band = (t.review_low, t.review_high) if t.review_low is not None else None
    return ThresholdRow(t.id, t.image_threshold, t.pixel_threshold, band, t.rule, t.set_by,
                        _when(t.created_at), t.note)


def _mask_paths(session: Session, snapshot: dict, image_ids: list[int]) -> dict[int, str | None]:
    """The mask each image was evaluated with: the run's frozen version, else today's mask."""
    frozen = snapshot.get("masks") or {}
    current = mq.current_masks(session, image_ids)
    out: dict[int, str | None] = {}
    for i in image_ids:
        m = mq.mask_version(session, i, int(frozen[str(i)])) if str(i) in frozen else current.get(i)
        out[i] = m.path if m is not None else None
    return out


def report_input(session: Session, run_id: int, evaluation_id: int | None = None) -> ReportInput:
    """Gather a run's evaluation (default: its latest succeeded one), active threshold and history."""
    try:
        run = rq.get_run(session, run_id)
    except NotFoundError:
        raise UserError(f"no run {run_id}; see `prefilter-qa runs`") from None
    if evaluation_id is None:
        ev = rq.latest_evaluation(session, run_id)
        if ev is None:
            raise UserError(f"run {run_id} has no finished evaluation to report on")
    else:
        try:
            ev = rq.get_evaluation(session, evaluation_id)
        except NotFoundError:
            raise UserError(f"no evaluation {evaluation_id}") from None
        if ev.run_id != run_id:
            raise UserError(f"evaluation {evaluation_id} belongs to run {ev.run_id}, not run {run_id}")
        if ev.status != JobStatus.SUCCEEDED:
            raise UserError(f"evaluation {evaluation_id} has not succeeded (status {ev.status})")
    metrics = dict(ev.metrics or {})
    active = tq.active_threshold(session, run_id)
    if active is not None:
        threshold = _threshold_row(active)
    else:
        auto = metrics.get("auto_threshold") or {}
        if auto.get("image") is None:
            raise UserError(f"run {run_id} has no threshold yet: set one on the Thresholds page")
        threshold = ThresholdRow(None, float(auto["image"]), auto.get("pixel"), None, auto.get("rule"),
                                 "evaluation (not saved)", _when(ev.finished_at), None)
    rows = rq.evaluation_images(session, ev.id)
    root = Path(ev.directory or "")
    snapshot = dict(run.snapshot or {})
    masks = _mask_paths(session, snapshot if ev.dataset_id == run.dataset_id else {},
                        [sc.image_id for sc, _ in rows])
    has_score_maps = bool(metrics.get("score_maps"))
    images = [ReportImage(
        image_id=sc.image_id, path=img.path, name=img.rel_path, label=sc.label, defect_type=sc.defect_type,
        score=float(sc.score), width=img.width, height=img.height,
        heatmap=str(root / sc.heatmap) if sc.heatmap else None,
        score_map=str(root / score_map_rel(sc.heatmap)) if sc.heatmap and has_score_maps else None,
        mask=masks.get(sc.image_id) if sc.label == "nok" else None) for sc, img in rows]
    ds = dq.get_dataset(session, ev.dataset_id)
    same = ev.dataset_id == run.dataset_id
    dataset = {"name": ds.name, "root": ds.root, "train": len(snapshot.get("train", [])),
               "holdout": len(snapshot.get("holdout", [])),
               "test": len(snapshot.get("test", [])) if same else len(rows),
               "masks": len(snapshot.get("masks", {})) if same else sum(1 for m in masks.values() if m),
               "roi": snapshot.get("roi")}
    return ReportInput(
        run={"id": run.id, "model": run.model, "preset": run.preset, "status": run.status,
             "created_by": run.created_by, "created_at": _when(run.created_at), "checkpoint": run.checkpoint,
             "parent_run_id": run.parent_run_id},
        dataset=dataset, evaluation_id=ev.id, evaluated_at=_when(ev.finished_at), metrics=metrics,
        threshold=threshold, history=[_threshold_row(t) for t in tq.threshold_history(session, run_id)],
        images=images, score_rule=score_rule(run.config) or "", config=dict(run.config or {}),
        border_margin=int((run.config or {}).get("border_margin") or 0))


def report_bytes(sessions: sessionmaker[Session], run_id: int, evaluation_id: int | None, fmt: str) -> bytes:
    """The report file's content ("csv" or "pdf")."""
    if fmt not in FORMATS:
        raise UserError(f"report format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    with sessions.begin() as s:
        inp = report_input(s, run_id, evaluation_id)
    if fmt == "csv":
        return csv_bytes(inp)
    from engine.evaluation.report_pdf import pdf_bytes  # matplotlib: only when a PDF is asked for

    return pdf_bytes(inp)


def write_report(sessions: sessionmaker[Session], run_id: int, evaluation_id: int | None, fmt: str,
                 out: Path) -> Path:
    """Write the report to `out` (temp file + rename)."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder: give the report's file name")
    return atomic_write_bytes(out, report_bytes(sessions, run_id, evaluation_id, fmt))


def report_name(run_id: int, evaluation_id: int, fmt: str) -> str:
    return f"prefilter-qa-run{run_id}-evaluation{evaluation_id}.{fmt}"
