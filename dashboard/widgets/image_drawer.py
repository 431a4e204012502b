"""The Datasets page's image drawer: the open image (from this session or ?image=), previous/next,
picture + mask, relabelling, move to training, annotate."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.state import ANNOTATE_IMAGE, SELECTED_IMAGE, actor, can, role_note, sessions
from dashboard.ui import flash, query_int
from dashboard.widgets.filters import ImageFilter
from dashboard.widgets.gallery import PAGE_SIZE
from dashboard.widgets.image_detail import image_edit_ui, image_view_ui
from db import datasets as dq
from db import masks as mq
from db.auth import Permission
from db.errors import NotFoundError, ValidationError
from db.models import Image, Mask

LABEL_TEXT = {"ok": "OK", "nok": "NOK", "unknown": "?"}


def open_image(image_id: int) -> None:
    st.session_state[SELECTED_IMAGE] = image_id


def close_image() -> None:
    st.session_state.pop(SELECTED_IMAGE, None)
    st.query_params.pop("image", None)


def selected_image(dataset_id: int, flt: ImageFilter, page_key: str) -> tuple[Image | None, Mask | None]:
    """The open image of this dataset and its current mask: chosen in this session, else ?image=
    (whose grid page is then shown); an image of another dataset or a deleted one closes the drawer."""
    chosen = st.session_state.get(SELECTED_IMAGE)
    if chosen is None and (from_url := query_int("image")) is not None:
        st.session_state[SELECTED_IMAGE] = chosen = from_url
        with sessions().begin() as s:
            pos = dq.image_position(s, dataset_id, from_url, **flt.as_kwargs())
        if pos is not None:
            st.session_state[page_key] = pos // PAGE_SIZE
    img = mask = None
    if chosen is not None:
        with sessions().begin() as s:
            try:
                img = dq.get_image(s, chosen)
            except NotFoundError:
                img = None
            if img is not None and img.dataset_id != dataset_id:
                img = None
            mask = mq.current_mask(s, img.id) if img else None
    if img is None:
        close_image()
    else:
        st.query_params["image"] = str(img.id)
    return img, mask


def image_drawer_ui(img: Image, mask: Mask | None, neighbours: list[int], defect_types: list[str]) -> None:
    """The drawer's content (shown in a dialog): previous/next among `neighbours`, picture + mask,
    metadata, relabel form, move to training, annotate."""
    pos = neighbours.index(img.id) if img.id in neighbours else -1
    nav = st.columns(2)
    for col, step, label, icon, keys in ((nav[0], -1, "Previous", ":material/chevron_left:", "Left"),
                                         (nav[1], 1, "Next", ":material/chevron_right:", "Right")):
        target = neighbours[pos + step] if pos >= 0 and 0 <= pos + step < len(neighbours) else None
        if col.button(label, icon=icon, width="stretch", disabled=target is None, key=f"detail_{label}",
                      icon_position="left" if step < 0 else "right", shortcut=keys):  # the arrow keys
            st.session_state[SELECTED_IMAGE] = target
            st.rerun()
    image_view_ui(img, mask, key="detail")
    st.divider()
    may = can(Permission.ANNOTATE)
    edit = image_edit_ui(img, defect_types, key="detail", disabled=not may)
    role_note(Permission.ANNOTATE, "change labels or masks (annotator, engineer or admin)")
    b1, b2 = st.columns(2)
    move = b1.button("Move to training", icon=":material/school:", width="stretch",
                     disabled=not may or img.label == "nok" or (img.split, img.label) == ("train", "ok"),
                     help="Label it OK and put it in the train split (used by the next training).")
    if b2.button("Annotate", icon=":material/brush:", width="stretch", help="Draw or correct its mask."):
        close_image()
        st.session_state[ANNOTATE_IMAGE] = img.id
        st.switch_page("dashboard/pages/annotate.py")
    if edit or move:
        try:
            with sessions().begin() as s:
                if move:
                    img = dq.update_image(s, img.id, actor=actor(), label="ok", split="train")
                else:
                    img = dq.update_image(
                        s, img.id, actor=actor(), label=edit.label, split=edit.split,
                        defect_type=edit.defect_type if edit.label != "ok" else None,
                        clear_defect_type=edit.defect_type is None or edit.label == "ok")
        except ValidationError as e:  # e.g. a typed defect type of 200 characters
            st.error(f"Not saved: {e}", icon=":material/error:")
            return
        flash(f"Saved {Path(img.rel_path).name}: {LABEL_TEXT[img.label]}, {img.split or 'unassigned'}"
              + (f", {img.defect_type}" if img.defect_type else ""))
        st.rerun()  # counts, filters and the grid all change; the drawer reopens on this image
