"""Releasing a run + threshold to the line: what the bundle says (from the database), the release
record, and the zip the dashboard offers for download."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import datasets as dq
from db import decisions as tq
from db import releases as relq
from db import runs as rq
from db.auth import Actor
from db.models import JobStatus, Release
from engine.config import score_rule
from engine.errors import UserError
from engine.fsutil import atomic_write_bytes
from engine.release.bundle import Candidate, ReleaseSpec
from engine.services.runs import trained_run
from engine.workspace import Workspace

MAX_CANDIDATES = 48  # test images exported graph and torch are compared on (golden ones among them)


def release_spec(session: Session, run_id: int, threshold_id: int | None = None) -> ReleaseSpec:
    """The run's checkpoint, config and threshold (the active one unless `threshold_id`), its latest
    evaluation's map range, and test images of both labels to check the export on."""
    run = trained_run(session, run_id)
    t = tq.active_threshold(session, run_id) if threshold_id is None else \
        next((x for x in tq.threshold_history(session, run_id) if x.id == threshold_id), None)
    if t is None:
        raise UserError(f"run {run_id} has no threshold" + (f" {threshold_id}" if threshold_id else "")
                        + ": evaluate it or set one on the Thresholds page")
    ev = rq.latest_evaluation(session, run_id)
    if ev is None:
        raise UserError(f"run {run_id} has no finished evaluation: its test images check the export")
    rows = rq.evaluation_scores(session, ev.id)  # highest score first
    step = max(1, len(rows) // MAX_CANDIDATES)
    picked = rows[::step][:MAX_CANDIDATES]
    images = {i.id: i for i in dq.images_by_ids(session, [r.image_id for r in picked])}
    candidates = [Candidate(Path(images[r.image_id].path), r.label) for r in picked if r.image_id in images]
    rng = (ev.metrics or {}).get("map_range")
    return ReleaseSpec(run_id=run.id, checkpoint=Path(run.checkpoint), config=dict(run.config),
                       threshold=tq.threshold_dict(t), map_range=(rng["vmin"], rng["vmax"]) if rng else None,
                       score_rule=score_rule(run.config), candidates=candidates)


def bundle_zip(folder: Path) -> bytes:
    """The bundle folder as a zip whose top folder is the bundle's name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                zf.write(p, Path(folder.name) / p.relative_to(folder))
    return buf.getvalue()


def zip_path(ws: Workspace, release_id: int) -> Path:
    return ws.home / "releases" / f"release-{release_id}.zip"


def perform_release(ws: Workspace, sessions: sessionmaker[Session], release_id: int, out: Path | None = None
                    ) -> dict[str, Any]:
    """Write the bundle of a recorded release (to `out`, default workspace/releases/<id>/) and its
    zip; the release ends succeeded or failed with the reason. Returns the bundle.json content."""
    from engine.release.bundle import write_bundle  # torch: only once the request is valid

    with sessions.begin() as s:
        release = relq.get_release(s, release_id)
        release.status = JobStatus.RUNNING
        spec = release_spec(s, release.run_id, release.threshold_id)
    folder = Path(out) if out is not None else ws.home / "releases" / f"release-{release_id}"
    try:
        meta = write_bundle(spec, folder)
        atomic_write_bytes(zip_path(ws, release_id), bundle_zip(folder.resolve()))
    except Exception as exc:
        with sessions.begin() as s:
            relq.finish_release(s, release_id, JobStatus.FAILED, error=str(exc))
        raise
    with sessions.begin() as s:
        relq.finish_release(s, release_id, JobStatus.SUCCEEDED, path=str(folder.resolve()),
                            bundle_sha256=meta["sha256"], info=meta["info"])
    return meta


def new_release(session: Session, run_id: int, threshold_id: int | None, *, actor: Actor,
                note: str | None = None) -> Release:
    """Record a release of the run's active (or given) threshold; checks it can be built."""
    spec = release_spec(session, run_id, threshold_id)
    return relq.create_release(session, run_id, spec.threshold["id"], actor=actor, note=note)


def release_dict(r: Release) -> dict[str, Any]:
    return {"id": r.id, "run_id": r.run_id, "threshold_id": r.threshold_id, "status": r.status,
            "path": r.path, "bundle_sha256": r.bundle_sha256, "info": r.info, "error": r.error, "note": r.note,
            "created_by": r.created_by, "created_at": r.created_at.isoformat(),
            "finished_at": r.finished_at.isoformat() if r.finished_at else None}
