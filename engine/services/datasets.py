"""Register scanned folders, uploads and edited masks in the database (engine <-> db bridge)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db import datasets as dq
from db import masks as mq
from db.auth import Actor
from db.models import Image
from engine.intake.images import read_mask, sha256_file
from engine.intake.importer import ImportPlan, ScannedImage, Skipped
from engine.intake.maskfiles import image_mask_dir, write_mask_file

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    dataset: str
    layout: str
    imported: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0
    updated: list[dict[str, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)  # recorded, file gone
    changed: list[dict[str, str]] = field(default_factory=list)  # recorded, file there but not usable as imported
    restored: list[dict[str, str]] = field(default_factory=list)  # missing/changed before, back as imported

    @property
    def usable(self) -> int:
        return sum(v for k, v in self.imported.items() if k != "masks") + self.unchanged + len(self.updated)

    def as_dict(self) -> dict[str, Any]:
        counts = {k: self.imported.get(k, 0) for k in ("train_ok", "test_ok", "test_nok", "masks")}
        for extra in ("train_nok", "unlabelled"):
            if self.imported.get(extra):
                counts[extra] = self.imported[extra]
        return {
            "dataset": self.dataset, "layout": self.layout, "imported": counts,
            "unchanged": self.unchanged, "updated": self.updated,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "missing": self.missing, "changed": self.changed, "restored": self.restored,
        }


def _bucket(img: ScannedImage) -> str:
    if img.label == "unknown" or img.split is None:
        return "unlabelled"
    return f"{img.split}_{img.label}"


def _add_imported_mask(session: Session, masks_root: Path, image: Image, scanned: ScannedImage,
                       actor: Actor) -> bool:
    """Store the folder's mask as a new version unless that content is already a version."""
    if scanned.mask_path is None or scanned.mask_sha256 is None:
        return False
    mask = read_mask(scanned.mask_path, expected_hw=(image.height, image.width))
    path, sha, pixels = write_mask_file(image_mask_dir(masks_root, image.id), mask)
    if mq.image_with_mask_sha(session, image, sha):
        path.unlink(missing_ok=True)
        return False
    current = mq.current_mask(session, image.id)
    mq.add_mask_version(
        session, image.id, base_version=current.version if current else None, source="imported",
        actor=actor, path=str(path), sha256=sha, pixels=pixels,
    )
    return True


def register_plan(session: Session, masks_root: Path, plan: ImportPlan, name: str, actor: Actor) -> ImportReport:
    """Add the plan's images to dataset `name` for `actor` (who must be allowed to import, checked
    by the callers in engine.services.imports); re-importing the same files adds nothing.

    A file already registered under another path with the same content is a duplicate, unless
    the old path is gone (the folder moved): then the record follows the file. Records under the
    folder whose file is gone, or is there but no longer importable with its recorded content,
    are marked missing / changed (left out of counts, training and evaluation) and reported;
    they are present again once the file is back with the same content.
    """
    ds = dq.get_or_create_dataset(session, name, str(plan.root), plan.layout)
    report = ImportReport(dataset=name, layout=plan.layout, skipped=list(plan.skipped))
    for scanned in plan.images:
        path = str(scanned.path)
        existing = dq.find_image(session, ds.id, path)
        if existing is not None and existing.sha256 == scanned.info.sha256:
            report.unchanged += 1
            if existing.file_status != dq.PRESENT:
                report.restored.append({"path": path, "reason": f"back with its imported content "
                                                                f"(was {existing.file_status})"})
        elif existing is not None:
            _refresh(existing, scanned)
            report.updated.append({"path": path, "reason": "content changed since the last import"})
        else:
            same = dq.image_by_sha(session, ds.id, scanned.info.sha256)
            if same is not None and Path(same.path).exists():
                report.skipped.append(Skipped(path=path, reason=f"duplicate of {same.path}"))
                continue
            if same is not None:
                report.updated.append({"path": path, "reason": f"moved from {same.path}"})
                same.path, same.rel_path = path, scanned.rel_path
                existing = same
            else:
                existing = _new_image(ds.id, scanned)
                session.add(existing)
                session.flush()
                report.imported[_bucket(scanned)] += 1
        dq.set_file_status(session, [existing], dq.PRESENT)
        if _add_imported_mask(session, masks_root, existing, scanned, actor):
            report.imported["masks"] += 1
    _mark_gone(session, ds.id, plan, report)
    return report


def _mark_gone(session: Session, dataset_id: int, plan: ImportPlan, report: ImportReport) -> None:
    """Mark and report the records under the scanned folder that the scan did not find usable."""
    seen = {str(i.path) for i in plan.images}
    why_skipped = {str(plan.root / sk.path): sk.reason for sk in plan.skipped}
    prefix = str(plan.root).rstrip("/") + "/"
    missing, changed = [], []
    for img in dq.list_images(session, dataset_id):
        if not img.path.startswith(prefix) or img.path in seen:
            continue
        path = Path(img.path)
        if not path.is_file():
            missing.append(img)
            report.missing.append({"path": img.path, "reason": "file deleted or moved since the last import"})
            continue
        try:
            same = path.stat().st_size == img.size_bytes and sha256_file(path) == img.sha256
        except OSError as exc:
            same, why_skipped[img.path] = False, f"cannot be read: {exc.strerror or exc}"
        if same:
            continue  # the recorded content, only no longer accepted by the scan: left as it was
        changed.append(img)
        reason = why_skipped.get(img.path, "not usable")
        report.changed.append({"path": img.path, "reason": f"content changed since the last import ({reason})"})
    dq.set_file_status(session, missing, "missing")
    dq.set_file_status(session, changed, "changed")


def _new_image(dataset_id: int, s: ScannedImage) -> Image:
    return Image(
        dataset_id=dataset_id, path=str(s.path), rel_path=s.rel_path, sha256=s.info.sha256,
        size_bytes=s.info.size_bytes, width=s.info.width, height=s.info.height, mode=s.info.mode,
        split=s.split, label=s.label, defect_type=s.defect_type, tags=[], source="import",
    )


def _refresh(img: Image, s: ScannedImage) -> None:
    img.sha256, img.size_bytes = s.info.sha256, s.info.size_bytes
    img.width, img.height, img.mode = s.info.width, s.info.height, s.info.mode
