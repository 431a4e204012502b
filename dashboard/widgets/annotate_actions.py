"""What the Annotate page's buttons do (button callbacks: they run before the page's next run
and leave a message for it). Every save goes through engine.services.masks.save_mask, which
adds a version on top of the edit's base version or raises ConflictError."""

from __future__ import annotations

import logging

import numpy as np

from dashboard.state import actor, sessions, workspace
from dashboard.widgets import annotate_state as S
from db import datasets as dq
from db import masks as mq
from db.errors import PermissionDenied
from engine.errors import ConflictError, UserError
from engine.intake.maskfiles import load_mask_file
from engine.services.masks import save_mask

log = logging.getLogger(__name__)


def _latest(image_id: int) -> tuple[int | None, str | None, str, str]:
    """(version, path, author, time) of the image's current mask."""
    with sessions()() as s:
        m = mq.current_mask(s, image_id)
        if m is None:
            return None, None, "", ""
        return m.version, m.path, m.author, f"{m.created_at.astimezone():%Y-%m-%d %H:%M:%S}"


def _store(image_id: int, mask: np.ndarray | None, *, base: int | None, source: str = "drawn",
           label_ok: bool = False) -> int | None:
    """Save a version (and the label that goes with it); None after a conflict or an error."""
    try:
        with sessions().begin() as s:
            version = save_mask(s, workspace().masks_dir, image_id, mask, base_version=base,
                                actor=actor(), source=source)
            img = dq.get_image(s, image_id)
            target = "ok" if label_ok else ("nok" if mask is not None and mask.any() else None)
            if target and img.label != target:
                dq.update_image(s, image_id, actor=actor(), label=target)
                S.flash("info", f"{img.rel_path} is now labelled {target.upper()} (was {img.label}).")
            path = mq.current_mask(s, image_id).path  # type: ignore[union-attr]
    except ConflictError:
        theirs = _latest(image_id)
        S.conflicts()[image_id] = S.Conflict(theirs[0], theirs[2], theirs[3], base)
        return None
    except (UserError, PermissionDenied, ValueError, OSError) as exc:
        S.flash("error", f"Mask of image {image_id} not saved: {exc}")
        return None
    S.conflicts().pop(image_id, None)
    S.drop_pending(image_id)
    S.edits()[image_id].reset(version, path)
    return version


def save(image_id: int) -> None:
    """Save the draft + canvas strokes as a new version on top of the edit's base version."""
    e = S.edits()[image_id]
    mask = S.working_mask(image_id)
    version = _store(image_id, mask, base=e.base_version)
    if version is not None:
        px = int(mask.sum())
        if px:
            S.flash("success", f"Saved mask version {version} ({px:,} pixels).")
        else:
            S.flash("warning", f"Saved an empty mask (version {version}). If the part has no defect, "
                               "use “No defect” to label the image OK.")


def overwrite(image_id: int) -> None:
    """Save my version deliberately on top of the latest one (after a conflict)."""
    mask = S.working_mask(image_id)
    version = _store(image_id, mask, base=_latest(image_id)[0])
    if version is not None:
        S.flash("success", f"Saved your mask as version {version}, on top of the other save.")


def load_theirs(image_id: int) -> None:
    """Drop my unsaved work and show the latest saved version."""
    version, path, author, _ = _latest(image_id)
    had_work = S.unsaved(image_id)
    S.drop_pending(image_id)
    S.edits()[image_id].reset(version, path)
    S.conflicts().pop(image_id, None)
    shown = f"Showing version {version} by {author}" if version else "Showing the saved state"
    S.flash("info", shown + ("; your unsaved changes were discarded." if had_work else "."))


def discard(image_id: int) -> None:
    version, path, _, _ = _latest(image_id)
    S.drop_pending(image_id)
    S.edits()[image_id].reset(version, path)
    S.conflicts().pop(image_id, None)
    S.flash("info", "Unsaved changes discarded.")


def restore(image_id: int, version: int) -> None:
    """Make an old version current again: a new version with its content, source "restored"."""
    e = S.edits()[image_id]
    if S.unsaved(image_id):
        S.flash("warning", "Save or discard your unsaved changes before restoring a version.")
        return
    with sessions()() as s:
        old = mq.mask_version(s, image_id, version)
        path = old.path if old else None
    try:
        mask = load_mask_file(path, e.hw) if path else None
    except UserError as exc:
        S.flash("error", f"Version {version} cannot be restored: {exc}")
        return
    new = _store(image_id, mask, base=e.base_version, source="restored")
    if new is not None:
        S.flash("success", f"Restored version {version} as version {new}.")


def no_defect(image_id: int) -> None:
    """The part is fine: save an empty mask version and label the image OK (both recorded)."""
    e = S.edits()[image_id]
    new = _store(image_id, None, base=e.base_version, label_ok=True)
    if new is not None:
        S.flash("success", f"Recorded “no defect”: mask cleared (version {new}).")
