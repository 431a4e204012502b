"""Mask history (restore a version) and the conflict notice of the Annotate page."""

from __future__ import annotations

import base64

import cv2
import streamlit as st

from dashboard.state import can, sessions
from dashboard.widgets import annotate_actions as A
from dashboard.widgets import annotate_state as S
from dashboard.widgets.annotate_view import load_image, load_mask, tinted
from db import masks as mq
from db.auth import Permission
from db.models import Image, Mask
from engine.errors import UserError

SOURCES = {"imported": "imported", "drawn": "drawn", "cleared": "cleared (no defect / empty)",
           "restored": "restored"}


THUMB = 96  # longest side of a version's thumbnail in the history


def _when(m: Mask) -> str:
    return f"{m.created_at.astimezone():%Y-%m-%d %H:%M:%S}"


@st.cache_data(max_entries=256, show_spinner=False)
def _thumb(image_path: str, sha256: str, mask_path: str | None, hw: tuple[int, int]) -> str | None:
    """A small PNG (data URI) of the image with that version's mask tinted; None if unreadable."""
    try:
        pic = load_image(image_path, sha256)
    except UserError:
        return None
    s = THUMB / max(hw)
    size = (max(1, round(hw[1] * s)), max(1, round(hw[0] * s)))
    view = tinted(pic, load_mask(mask_path, hw), (0, 0, hw[1], hw[0]), size, 0.6)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(view, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def history_ui(image_id: int) -> None:
    """Every saved version (with a thumbnail), newest first; restoring one saves its content as a
    new version."""
    with sessions()() as s:
        versions = mq.mask_history(s, image_id)
        image = s.get(Image, image_id)
        pic = (image.path, image.sha256, (image.height, image.width)) if image else None
    if not versions:
        st.caption("No mask saved yet.")
        return
    rows = [{"mask": _thumb(pic[0], pic[1], m.path, pic[2]) if pic else None, "version": m.version,
             "author": m.author, "time": _when(m), "source": SOURCES.get(m.source, m.source), "pixels": m.pixels,
             "from": f"v{m.parent_version}" if m.parent_version is not None else "new"} for m in versions]
    st.dataframe(rows, hide_index=True, width="stretch", row_height=THUMB // 2 + 8,
                 column_config={"mask": st.column_config.ImageColumn("mask", width="small"),
                                "version": st.column_config.NumberColumn("v", width="small"),
                                "from": st.column_config.TextColumn(
                                    "from", help="the version the edit started from; new: drawn on an image "
                                    "without a mask")})
    older = [m.version for m in versions[1:]]
    if not older:
        return
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    pick = c1.selectbox("Restore version", older, key=f"annotate_restore_pick_{image_id}",
                        format_func=lambda v: f"v{v}")
    c2.button("Restore", key=f"annotate_restore_{image_id}", on_click=A.restore, args=(image_id, pick),
              help="Saves that version's mask as a new version (nothing is deleted).",
              disabled=S.unsaved(image_id) or not can(Permission.ANNOTATE))


def conflict_ui(image: Image, latest: Mask | None) -> None:
    """Tell the user when the saved mask moved on under their unsaved edit, and let them choose."""
    e = S.edits().get(image.id)
    if e is None:
        return
    conflict = S.conflicts().get(image.id)
    latest_version = latest.version if latest else None
    if conflict is None and latest_version == e.base_version:
        return
    who = f"**{latest.author}** at {_when(latest)}" if latest else "someone"
    if conflict is None and not S.unsaved(image.id):
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.info(f"A newer mask was saved meanwhile: version {latest_version} by {who}.", icon=":material/update:")
        c2.button("Show it", key=f"annotate_show_latest_{image.id}", on_click=A.load_theirs, args=(image.id,))
        return
    text = (f"Version {latest_version} was saved by {who} after you started editing from version "
            f"{e.base_version if e.base_version is not None else '— (no mask)'}.")
    if conflict is not None:
        st.error(f"**Not saved: this mask was changed by someone else.** {text} Your changes are kept "
                 "as an unsaved draft. Compare, then choose:", icon=":material/sync_problem:")
    else:
        st.warning(f"**Someone else saved this mask meanwhile.** {text} Saving yours will ask you first.",
                   icon=":material/sync_problem:")
    hw = (image.height, image.width)
    try:
        pic = load_image(image.path, image.sha256)
    except UserError as exc:
        st.error(f"Cannot show {image.path}: {exc}")
        return
    theirs = load_mask(latest.path if latest else None, hw)
    mine = S.working_mask(image.id)
    s = min(1.0, 300 / max(hw))
    size = (max(1, round(hw[1] * s)), max(1, round(hw[0] * s)))
    c1, c2 = st.columns(2)
    c1.image(tinted(pic, theirs, (0, 0, hw[1], hw[0]), size, 0.5),
             caption=f"Theirs: v{latest_version} · {int(theirs.sum()):,} px")
    c2.image(tinted(pic, mine, (0, 0, hw[1], hw[0]), size, 0.5), caption=f"Yours (unsaved) · {int(mine.sum()):,} px")
    b1, b2 = st.columns(2)
    b1.button("Load theirs (discard mine)", key=f"annotate_theirs_{image.id}", on_click=A.load_theirs,
              args=(image.id,), icon=":material/download:", width="stretch")
    b2.button(f"Overwrite: save mine on top of v{latest_version}", key=f"annotate_overwrite_{image.id}",
              on_click=A.overwrite, args=(image.id,), icon=":material/upload:", width="stretch",
              disabled=not can(Permission.ANNOTATE),
              help="Deliberately replaces their mask with yours (as a new version; theirs stays in the history).")
