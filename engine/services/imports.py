"""Importing a dataset: a folder (`prefilter-qa import`, the Datasets page) or browser uploads.

Every path scans with engine.intake.importer.scan_folder and registers with
engine.services.datasets.register_plan, so the dashboard and the command line accept and reject
exactly the same files and names. The result
is the `import --json` report dict: counts, unchanged, updated and every skipped file with its
reason (upload-level rejections, e.g. zip-slip members, are listed by their name in the upload).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import audit
from db import datasets as dq
from db.auth import Actor, Permission, require
from engine.errors import UserError
from engine.intake.importer import ImportPlan, Skipped, ensure_allowed_root, scan_folder
from engine.intake.uploads import extract_zip, find_dataset_root, sanitize_name, save_uploaded_files
from engine.services.datasets import ImportReport, register_plan
from engine.workspace import Workspace

_NAME = re.compile(r"^[\w][\w .+-]{0,99}$")


class NoUsableImages(UserError):
    """Nothing to import; carries the skipped files so the page can list them."""

    def __init__(self, where: str, layout: str, skipped: list[Skipped]) -> None:
        self.skipped = skipped
        self.layout = layout
        super().__init__(f"{where}: no usable images ({layout} layout, {len(skipped)} files skipped)")


def check_dataset_name(name: str) -> str:
    """Dataset names: letters, digits, space . _ + -, up to 100 characters."""
    name = name.strip()
    if not _NAME.match(name):
        raise UserError(f"dataset name {name!r}: use 1–100 letters, digits, spaces or . _ + - "
                        "(starting with a letter or digit)")
    return name


def import_folder(ws: Workspace, sessions: sessionmaker[Session], folder: str, name: str,
                  layout: str = "auto", roots: list[Path] | None = None, *, actor: Actor) -> dict[str, Any]:
    """Scan and register a folder (only under `roots` when given: the dashboard passes
    ws.import_roots) for `actor` (engineer or above). Raises UserError; NoUsableImages when
    nothing in it can be imported; PermissionDenied before anything is read."""
    require(actor, Permission.IMPORT, f"import into dataset {name.strip()!r}")
    if not folder.strip():
        raise UserError("enter the folder to import")
    root = Path(folder.strip()).expanduser()
    root = ensure_allowed_root(root, roots) if roots is not None else root.resolve()
    name = check_dataset_name(name)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    plan = scan_folder(root, layout)
    if not plan.images:
        raise NoUsableImages(str(root), plan.layout, plan.skipped)
    with sessions.begin() as s:
        report = register_plan(s, ws.masks_dir, plan, name, actor)
        result = report.as_dict()
        audit.record(s, actor, audit.IMPORT, f"dataset {name}", _audit_details(result, folder=str(root)))
    return result


def _audit_details(report: dict[str, Any], **extra: str) -> dict[str, Any]:
    return extra | {"layout": report["layout"], "imported": report["imported"], "unchanged": report["unchanged"],
                    "updated": len(report["updated"]), "skipped": len(report["skipped"])}


def _batch_dir(ws: Workspace, name: str) -> Path:
    """A fresh folder per upload, so a scan only probes what was just uploaded."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return ws.uploads_dir / sanitize_name(name) / f"{stamp}-{uuid.uuid4().hex[:6]}"


def _relabel(plan: ImportPlan, split: str | None, label: str) -> ImportPlan:
    """Loose uploaded images carry no split/label: apply the ones chosen in the form."""
    if plan.layout != "flat":
        return plan
    images = [dataclasses.replace(i, split=split, label=label) for i in plan.images]
    return ImportPlan(root=plan.root, layout=plan.layout, images=images, skipped=plan.skipped)


def _prefixed(skipped: list[Skipped], prefix: str) -> list[Skipped]:
    return [Skipped(f"{prefix}{s.path}", s.reason) for s in skipped]


def import_uploads(ws: Workspace, sessions: sessionmaker[Session], name: str,
                   files: list[tuple[str, bytes]], split: str | None = None,
                   label: str = "unknown", *, actor: Actor) -> dict[str, Any]:
    """Save browser uploads under uploads/<dataset>/<batch>/ and register them for `actor`
    (engineer or above; refused before anything is written).

    Loose images form one flat folder (given `split`/`label`); each zip is extracted to its own
    folder and scanned with layout auto-detection (a zipped seed/mvtec dataset keeps its labels;
    a zip of loose images gets `split`/`label` too). Raises UserError when nothing is usable.
    """
    require(actor, Permission.IMPORT, f"upload images into dataset {name.strip()!r}")
    name = check_dataset_name(name)
    if not files:
        raise UserError("choose at least one image or zip file to upload")
    batch = _batch_dir(ws, name)
    skipped: list[Skipped] = []
    plans: list[tuple[ImportPlan, str]] = []
    loose = [(n, d) for n, d in files if not n.lower().endswith(".zip")]
    if loose:
        saved, rejected = save_uploaded_files(loose, batch / "images")
        skipped += rejected
        if saved:
            plans.append((scan_folder(batch / "images", "flat"), ""))
    for zname, data in ((n, d) for n, d in files if n.lower().endswith(".zip")):
        dest = batch / sanitize_name(Path(zname).stem + "_zip")
        try:
            saved, rejected = extract_zip(data, dest, name=zname)
        except UserError as e:
            skipped.append(Skipped(zname, str(e).removeprefix(f"{zname}: ")))
            continue
        skipped += _prefixed(rejected, f"{zname}: ")
        if saved:
            root = find_dataset_root(dest)
            plans.append((scan_folder(root, "auto"), f"{zname}: "))
    plans = [(_relabel(p, split, label), prefix) for p, prefix in plans]
    usable = [(p, prefix) for p, prefix in plans if p.images]
    for p, prefix in plans:
        if not p.images:
            skipped += _prefixed(p.skipped, prefix)
    if not usable:
        _remove_empty(batch)
        raise NoUsableImages("upload", "flat", skipped)
    reports: list[ImportReport] = []
    with sessions.begin() as s:
        for plan, prefix in usable:
            report = register_plan(s, ws.masks_dir, plan, name, actor)
            report.skipped = _prefixed(report.skipped, prefix)
            reports.append(report)
            ds = dq.get_dataset(s, name)
            dq.mark_source(s, ds.id, [str(i.path) for i in plan.images], "upload")
        result = _merge(name, reports, skipped)
        audit.record(s, actor, audit.UPLOAD, f"dataset {name}",
                     _audit_details(result, files=", ".join(n for n, _ in files)[:500]))
    return result


def _merge(name: str, reports: list[ImportReport], extra_skipped: list[Skipped]) -> dict[str, Any]:
    merged = ImportReport(dataset=name, layout="+".join(sorted({r.layout for r in reports})),
                          imported=Counter(), skipped=list(extra_skipped))
    for r in reports:
        merged.imported.update(r.imported)
        merged.unchanged += r.unchanged
        merged.updated += r.updated
        merged.skipped += r.skipped
        merged.missing += r.missing
        merged.changed += r.changed
        merged.restored += r.restored
    return merged.as_dict()


def _remove_empty(folder: Path) -> None:
    """Remove empty folders this upload created (the batch and its empty sub-folders)."""
    if not folder.exists():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
