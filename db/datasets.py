"""Query functions for datasets and images. They take the session first and never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from db import audit, validate
from db.auth import Actor, Permission, require
from db.errors import NotFoundError
from db.models import FILE_STATUSES, LABELS, SPLITS, Dataset, Image, Mask

PRESENT = "present"


@dataclass(frozen=True)
class DatasetCounts:
    id: int
    name: str
    train_ok: int
    test_ok: int
    test_nok: int
    masks: int
    unlabelled: int
    total: int  # images whose file is present (the ones training and evaluation use)
    missing: int = 0  # images whose file is gone or changed since import (counted nowhere else)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "train_ok": self.train_ok, "test_ok": self.test_ok,
            "test_nok": self.test_nok, "masks": self.masks, "unlabelled": self.unlabelled,
            "total": self.total, "missing": self.missing,
        }


def get_or_create_dataset(session: Session, name: str, root: str | None, layout: str | None) -> Dataset:
    name = validate.name(name, "dataset name", validate.DATASET_NAME_MAX)
    ds = session.scalar(select(Dataset).where(Dataset.name == name))
    if ds is None:
        ds = Dataset(name=name, root=root, layout=layout)
        session.add(ds)
        session.flush()
    else:
        ds.root, ds.layout = root or ds.root, layout or ds.layout
    return ds


def get_dataset(session: Session, name_or_id: str | int) -> Dataset:
    col = Dataset.id if isinstance(name_or_id, int) else Dataset.name
    ds = session.scalar(select(Dataset).where(col == name_or_id))
    if ds is None:
        raise NotFoundError(f"no dataset {name_or_id!r}")
    return ds


def _has_mask_subquery() -> Any:
    """Whether the latest mask version of the image has drawn pixels."""
    latest = (
        select(Mask.pixels)
        .where(Mask.image_id == Image.id)
        .order_by(Mask.version.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(latest, 0) > 0


def dataset_counts(session: Session) -> list[DatasetCounts]:
    def n(cond: Any) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    has_mask = _has_mask_subquery()
    here = Image.file_status == PRESENT  # a missing file counts only as missing
    stmt = (
        select(
            Dataset.id, Dataset.name,
            n(here & (Image.split == "train") & (Image.label == "ok")),
            n(here & (Image.split == "test") & (Image.label == "ok")),
            n(here & (Image.split == "test") & (Image.label == "nok")),
            n(here & has_mask),
            n(here & (Image.label == "unknown")),
            n(here),
            n(Image.id.is_not(None) & (Image.file_status != PRESENT)),
        )
        .outerjoin(Image, Image.dataset_id == Dataset.id)
        .group_by(Dataset.id, Dataset.name)
        .order_by(Dataset.name)
    )
    return [DatasetCounts(*row) for row in session.execute(stmt)]


def find_image(session: Session, dataset_id: int, path: str) -> Image | None:
    return session.scalar(select(Image).where(Image.dataset_id == dataset_id, Image.path == path))


def image_by_sha(session: Session, dataset_id: int, sha256: str) -> Image | None:
    return session.scalar(
        select(Image).where(Image.dataset_id == dataset_id, Image.sha256 == sha256).limit(1)
    )


def get_image(session: Session, image_id: int) -> Image:
    img = session.get(Image, image_id)
    if img is None:
        raise NotFoundError(f"no image {image_id}")
    return img


def _filtered(stmt: Select[Any], dataset_id: int, split: str | None, label: str | None,
              defect_type: str | None, has_mask: bool | None, present: bool | None = None) -> Select[Any]:
    stmt = stmt.where(Image.dataset_id == dataset_id)
    if present is not None:
        stmt = stmt.where((Image.file_status == PRESENT) if present else (Image.file_status != PRESENT))
    if split is not None:
        stmt = stmt.where(Image.split.is_(None) if split == "none" else Image.split == split)
    if label is not None:
        stmt = stmt.where(Image.label == label)
    if defect_type is not None:
        stmt = stmt.where(Image.defect_type == defect_type)
    if has_mask is not None:
        cond = _has_mask_subquery()
        stmt = stmt.where(cond if has_mask else ~cond)
    return stmt


def list_images(
    session: Session, dataset_id: int, *, split: str | None = None, label: str | None = None,
    defect_type: str | None = None, has_mask: bool | None = None, present: bool | None = None,
    offset: int = 0, limit: int | None = None,
) -> list[Image]:
    """Images in a stable order (id); `split="none"` selects unassigned ones; `present=True` only
    those whose file is there (training, evaluation), False only missing/changed ones."""
    stmt = _filtered(select(Image), dataset_id, split, label, defect_type, has_mask, present).order_by(Image.id)
    stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def count_images(
    session: Session, dataset_id: int, *, split: str | None = None, label: str | None = None,
    defect_type: str | None = None, has_mask: bool | None = None, present: bool | None = None,
) -> int:
    stmt = _filtered(select(func.count(Image.id)), dataset_id, split, label, defect_type, has_mask, present)
    return int(session.scalar(stmt) or 0)


def defect_types(session: Session, dataset_id: int) -> list[str]:
    stmt = (
        select(Image.defect_type).where(Image.dataset_id == dataset_id, Image.defect_type.is_not(None))
        .distinct().order_by(Image.defect_type)
    )
    return [t for t in session.scalars(stmt)]


def update_image(
    session: Session, image_id: int, *, actor: Actor, label: str | None = None, split: str | None = None,
    defect_type: str | None = None, clear_defect_type: bool = False, tags: Sequence[str] | None = None,
) -> Image:
    """Relabel an image (annotator or above). `split="none"` unassigns it; a label of "ok" drops
    the defect type. A change is recorded in the audit trail with its before and after."""
    require(actor, Permission.ANNOTATE, f"change the label or split of image {image_id}")
    img = get_image(session, image_id)
    before = {"label": img.label, "split": img.split, "defect_type": img.defect_type, "tags": list(img.tags or [])}
    if label is not None:
        img.label = validate.choice(label, "label", LABELS)
        if label == "ok":
            img.defect_type = None
    if split is not None:
        validate.choice(split, "split", (*SPLITS, "none"))
        img.split = None if split == "none" else split
    if defect_type is not None:
        img.defect_type = validate.label(defect_type, "defect type")
    if clear_defect_type:
        img.defect_type = None
    if tags is not None:
        img.tags = sorted({t for t in (validate.label(tag, "tag") for tag in tags) if t})
    after = {"label": img.label, "split": img.split, "defect_type": img.defect_type, "tags": list(img.tags or [])}
    changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if changed:
        audit.record(session, actor, audit.IMAGE_CHANGED, f"image {image_id} ({img.rel_path})", changed)
    return img


def images_by_ids(session: Session, ids: Sequence[int]) -> list[Image]:
    if not ids:
        return []
    found = {img.id: img for img in session.scalars(select(Image).where(Image.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def set_file_status(session: Session, images: Sequence[Image], status: str) -> None:
    """Record whether each image's file is present, missing or changed (a re-import decides)."""
    validate.choice(status, "file status", FILE_STATUSES)
    for img in images:
        img.file_status = status


def mark_source(session: Session, dataset_id: int, paths: Sequence[str], source: str) -> int:
    """Record where images came from (e.g. "upload" for files saved from the browser)."""
    if not paths:
        return 0
    imgs = session.scalars(select(Image).where(Image.dataset_id == dataset_id, Image.path.in_(list(paths))))
    n = 0
    for img in imgs:
        img.source = source
        n += 1
    return n


def image_position(
    session: Session, dataset_id: int, image_id: int, *, split: str | None = None,
    label: str | None = None, defect_type: str | None = None, has_mask: bool | None = None,
) -> int | None:
    """Index of the image in list_images order under these filters (None if filtered out)."""
    stmt = _filtered(select(func.count(Image.id)), dataset_id, split, label, defect_type, has_mask)
    member = _filtered(select(Image.id), dataset_id, split, label, defect_type, has_mask)
    if session.scalar(member.where(Image.id == image_id)) is None:
        return None
    return int(session.scalar(stmt.where(Image.id < image_id)) or 0)
