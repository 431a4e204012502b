"""The line's results brought back: `prefilter-qa import-line`, the Line page, the Review queue.

A results file (JSONL, one verdict per line, written by `prefilter-qa-line`) is stored row by row
against the run its bundle was released from; a row seen before is not stored twice. The images
judged REVIEW or NOK are copied into the workspace (the line PC may clean its folder) and
registered, unlabelled, in the run's dataset, so a reviewer can decide what they are and the next
training can learn from them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db import datasets as dq
from db import releases as relq
from db import runs as rq
from db.auth import Actor
from db.models import LineResult
from engine.errors import InputFileError, UserError
from engine.evaluation.decisions import score_drift
from engine.intake.images import probe_image, sha256_file
from engine.intake.importer import ImportPlan, ScannedImage
from engine.intake.uploads import extract_zip, save_uploaded_files
from engine.services.datasets import register_plan
from engine.workspace import Workspace

QUEUED = ("REVIEW", "NOK")  # verdicts whose images come back for review
VERDICTS = ("OK", "REVIEW", "NOK", "ERROR")


@dataclass
class LineImport:
    run_id: int
    stored: int = 0
    already: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"line": n, "reason": ...}
    queued: int = 0  # REVIEW / NOK images registered for review
    missing_images: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "stored": self.stored, "already_stored": self.already,
                "queued_for_review": self.queued, "missing_images": self.missing_images, "skipped": self.skipped}


def _parse(text: str, where: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Well-formed result rows of a JSONL text, and why the others were left out."""
    rows, skipped = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            at = datetime.fromisoformat(str(row["at"]).replace("Z", "+00:00"))
            if row["verdict"] not in VERDICTS or not isinstance(row["path"], str) or not row.get("bundle_sha"):
                raise ValueError("not a line result")
            score = None if row.get("score") is None else float(row["score"])
        except (ValueError, KeyError, TypeError) as exc:
            skipped.append({"line": str(n), "reason": f"{where}:{n}: not a line result ({exc})"})
            continue
        rows.append({"bundle_sha256": str(row["bundle_sha"]), "threshold_id": row.get("threshold_id"),
                     "path": row["path"], "verdict": row["verdict"], "score": score, "error": row.get("error"),
                     "ms": row.get("ms"), "scored_at": at if at.tzinfo else at.replace(tzinfo=timezone.utc)})
    return rows, skipped


def _find(path: str, images_dir: Path | None) -> Path | None:
    """The judged image: where the line saw it, else by name in `images_dir`."""
    for p in (Path(path), images_dir / Path(path).name if images_dir else None):
        if p is not None and p.is_file():
            return p
    return None


def _bring_in(ws: Workspace, session: Session, dataset: str, run_id: int, found: dict[str, Path],
              actor: Actor) -> dict[str, int]:
    """Copy the images into the workspace and register them unlabelled; path on the line -> image id."""
    folder = ws.uploads_dir / "line" / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    scanned, by_sha = [], {}
    for line_path, src in found.items():
        sha = sha256_file(src)
        dest = folder / f"{sha[:12]}-{src.name}"
        if not dest.exists():
            shutil.copyfile(src, dest)
        try:
            info = probe_image(dest)
        except InputFileError:
            continue
        by_sha.setdefault(sha, []).append(line_path)
        scanned.append(ScannedImage(path=dest.resolve(), rel_path=f"line/run-{run_id}/{dest.name}", split=None,
                                    label="unknown", defect_type=None, info=info))
    unique = list({s.info.sha256: s for s in scanned}.values())
    if unique:
        register_plan(session, ws.masks_dir, ImportPlan(root=folder, layout="flat", images=unique, skipped=[]),
                      dataset, actor)
    ds = dq.get_dataset(session, dataset)
    dq.mark_source(session, ds.id, [str(x.path) for x in unique], "line")
    ids: dict[str, int] = {}
    for sha, paths in by_sha.items():
        img = dq.image_by_sha(session, ds.id, sha)
        if img is not None:
            ids.update({p: img.id for p in paths})
    return ids


def import_line_results(ws: Workspace, sessions: sessionmaker[Session], run_id: int, text: str, *,
                        actor: Actor, where: str = "results", images_dir: Path | None = None) -> LineImport:
    """Store a results file's rows for `run_id`; rows of a bundle released from another run are refused."""
    rows, skipped = _parse(text, where)
    report = LineImport(run_id=run_id, skipped=skipped)
    with sessions.begin() as s:
        run = rq.get_run(s, run_id)
        dataset = dq.get_dataset(s, run.dataset_id).name
        releases: dict[str, Any] = {}
        for sha in {r["bundle_sha256"] for r in rows}:
            rel = relq.release_by_sha(s, sha)
            releases[sha] = rel if rel is not None and rel.run_id == run_id else None
    good = []
    for r in rows:
        if releases[r["bundle_sha256"]] is None:
            report.skipped.append({"line": "", "reason": f"{r['path']}: bundle {r['bundle_sha256'][:12]} is not a "
                                                         f"release of run {run_id}"})
            continue
        r["release_id"] = releases[r["bundle_sha256"]].id
        good.append(r)
    found = {}
    for r in good:
        if r["verdict"] in QUEUED:
            src = _find(r["path"], images_dir)
            if src is None:
                report.missing_images.append(r["path"])
            else:
                found[r["path"]] = src
    with sessions.begin() as s:
        ids = _bring_in(ws, s, dataset, run_id, found, actor) if found else {}
        for r in good:
            r["image_id"] = ids.get(r["path"])
        report.stored = relq.add_line_results(s, run_id, good, actor=actor)
        report.already = len(good) - report.stored
        report.queued = len(set(ids.values()))
    if not good and rows:
        raise UserError(f"{where}: none of its results belongs to a release of run {run_id}")
    if not rows and not skipped:
        raise UserError(f"{where}: no line results in it (an empty file?)")
    return report


def save_line_images(ws: Workspace, files: list[tuple[str, bytes]]) -> Path | None:
    """Images (or zips of them) uploaded with a results file, saved flat into a fresh folder of the
    workspace where `import_line_results` finds them by name; None without files."""
    if not files:
        return None
    folder = Path(tempfile.mkdtemp(prefix="line-images-", dir=ws.uploads_dir))
    loose = [(n, d) for n, d in files if not n.lower().endswith(".zip")]
    if loose:
        save_uploaded_files(loose, folder)
    for name, data in files:
        if name.lower().endswith(".zip"):
            extract_zip(data, folder / Path(name).stem, name=name)
    for p in list(folder.rglob("*")):  # matched by name: flatten sub-folders
        if p.is_file() and p.parent != folder and not (folder / p.name).exists():
            p.rename(folder / p.name)
    return folder


@dataclass(frozen=True)
class LineSummary:
    counts: dict[str, dict[str, int]]  # day (YYYY-MM-DD) -> verdict -> count
    scores: np.ndarray  # scores of judged parts
    reference: np.ndarray  # the evaluation's OK scores (held-out OK + OK test images)
    drift: dict[str, Any] | None  # engine.evaluation.decisions.score_drift


def line_summary(session: Session, run_id: int) -> LineSummary:
    rows: list[LineResult] = relq.line_results(session, run_id)
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        day = counts.setdefault(f"{r.scored_at:%Y-%m-%d}", dict.fromkeys(VERDICTS, 0))
        day[r.verdict] += 1
    scores = np.array([r.score for r in rows if r.score is not None], dtype=np.float64)
    ev = rq.latest_evaluation(session, run_id)
    ref: list[float] = []
    if ev is not None:
        ref = list((ev.metrics or {}).get("holdout_scores") or [])
        ref += [x.score for x in rq.evaluation_scores(session, ev.id) if x.label == "ok"]
    reference = np.array(ref, dtype=np.float64)
    return LineSummary(counts, scores, reference, score_drift(reference, scores) if scores.size else None)


@dataclass(frozen=True)
class LineItem:
    """An image the line judged REVIEW or NOK, with its latest line verdict and review (if any)."""

    image_id: int
    path: str  # in the workspace
    sha256: str
    name: str  # as the line saw it
    verdict: str
    score: float | None
    scored_at: datetime
    label: str  # the image's current label in the dataset
    decided: str | None  # the latest review outcome, None while it waits


def line_queue(session: Session, run_id: int) -> list[LineItem]:
    """The run's REVIEW / NOK line images (newest first), each once, with what was decided."""
    from db import decisions as tq

    latest: dict[int, LineResult] = {}
    for r in relq.line_results(session, run_id, verdicts=QUEUED):
        if r.image_id is not None:
            latest[r.image_id] = r  # ordered by time: the last one wins
    images = {i.id: i for i in dq.images_by_ids(session, list(latest))}
    reviews = tq.latest_reviews(session, list(latest))
    items = [LineItem(image_id=i, path=images[i].path, sha256=images[i].sha256, name=Path(r.path).name,
                      verdict=r.verdict, score=r.score, scored_at=r.scored_at, label=images[i].label,
                      decided=reviews[i].outcome if i in reviews else None)
             for i, r in latest.items() if i in images]
    return sorted(items, key=lambda x: x.scored_at, reverse=True)


def decide_line_image(session: Session, *, actor: Actor, run_id: int, image_id: int, defect: bool,
                      defect_type: str | None = None, to_train: bool = True, note: str | None = None) -> str:
    """What a reviewer says a line image is: an OK part (into the train split when `to_train`, so
    the next training learns it) or a defect (NOK, test split: the next evaluation tests on it;
    its mask is drawn on Annotate). Stored as a review by `actor`; returns a summary."""
    from db import decisions as tq

    if defect:
        dq.update_image(session, image_id, actor=actor, label="nok", split="test", defect_type=defect_type or None)
    else:
        dq.update_image(session, image_id, actor=actor, label="ok", split="train" if to_train else "test")
    tq.add_review(session, actor=actor, image_id=image_id, outcome="defective" if defect else "confirmed_ok",
                  run_id=run_id, moved_to_train=not defect and to_train, note=note)
    img = dq.get_image(session, image_id)
    return f"{Path(img.rel_path).name}: now {img.label.upper()}, split {img.split} (recorded for {actor.name})"
