"""The mask editor: the image (or a zoomed part of it) with its mask on the canvas, tools,
zoom, save / discard / no defect, history."""

from __future__ import annotations

import hashlib

import streamlit as st

from dashboard.state import can, role_note, sessions
from dashboard.widgets import annotate_actions as A
from dashboard.widgets import annotate_state as S
from dashboard.widgets import canvas
from dashboard.widgets.annotate_history import conflict_ui, history_ui
from dashboard.widgets.annotate_tools import describe, tool_key, tool_ui
from dashboard.widgets.annotate_view import (
    ZOOMS,
    View,
    background,
    canvas_size,
    full_view,
    geometry,
    load_image,
    minimap,
    view_of_mask,
)
from db import datasets as dq
from db import masks as mq
from db.auth import Permission
from db.models import Image, Mask
from engine.errors import UserError

TOOLS_KEY = "annotate"
ZOOM_KEY = "annotate_zoom"
ALPHA_KEY = "annotate_alpha"
LABEL_COLORS = {"ok": "green", "nok": "red", "unknown": "gray"}


def _view(image_id: int, hw: tuple[int, int]) -> View:
    return S.views().get(image_id) or full_view(hw)


def _set_view(image_id: int, view: View) -> None:
    S.views()[image_id] = view


def _zoom_changed(image_id: int, hw: tuple[int, int]) -> None:
    z = st.session_state.get(ZOOM_KEY) or 1
    _set_view(image_id, _view(image_id, hw).zoomed(hw, int(z)))


def _pan(image_id: int, hw: tuple[int, int], dx: float, dy: float) -> None:
    _set_view(image_id, _view(image_id, hw).panned(hw, dx, dy))


def _zoom_to_mask(image_id: int, hw: tuple[int, int]) -> None:
    view = view_of_mask(S.working_mask(image_id), hw)
    if view is None:
        S.flash("info", "The mask is empty: nothing to zoom to.")
    else:
        _set_view(image_id, view)


def _save_and_next(image_id: int, next_id: int | None) -> None:
    A.save(image_id)
    if next_id is not None and not S.unsaved(image_id):
        st.session_state[S.CURRENT] = next_id


def header_ui(image: Image, latest: Mask | None) -> None:
    saved = (f"mask v{latest.version} · {latest.pixels:,} px · {latest.author}, "
             f"{latest.created_at.astimezone():%Y-%m-%d %H:%M}" if latest else "no mask saved yet")
    badges = [f":{LABEL_COLORS.get(image.label, 'gray')}-badge[{image.label.upper()}]",
              f":gray-badge[{image.split or 'no split'}]"]
    if image.defect_type:
        badges.append(f":violet-badge[{image.defect_type}]")
    if S.unsaved(image.id):
        badges.append(":orange-badge[:material/edit: unsaved draft]")
    st.markdown(f"#### {image.rel_path}\n{' '.join(badges)} &nbsp; {image.width}×{image.height} px · {saved}")


def editor_ui(image_id: int, next_id: int | None) -> None:
    """Everything about one image. `next_id` is where "Save & next" goes."""
    with sessions()() as s:
        image = dq.get_image(s, image_id)
        latest = mq.current_mask(s, image_id)
        s.expunge_all()
    hw = (image.height, image.width)
    entered = tool_key(TOOLS_KEY) not in st.session_state  # page (re)entered: the canvas starts empty
    if entered:
        S.commit_pending()
    opened = entered or st.session_state.get(S.SHOWN) != image.id
    st.session_state[S.SHOWN] = image.id
    edit = S.edit_for(image.id, hw, latest.version if latest else None, latest.path if latest else None,
                      follow_latest=opened)
    view = _view(image.id, hw)
    box = view.box(hw)
    size = canvas_size(box)
    geo = geometry(box, size)
    head = st.container()  # filled after the canvas: it says whether there are unsaved strokes
    tool = tool_ui(TOOLS_KEY, shortcuts=True)
    alpha = float(st.session_state.get(ALPHA_KEY, 0.45))

    def key() -> str:
        raw = f"{image.id}|{box}|{size}|{alpha}|{edit.mask_token}|{edit.generation}"
        return "annotate_canvas_" + hashlib.md5(raw.encode()).hexdigest()[:16]

    S.commit_pending(unless_key=key())  # strokes of a canvas no longer shown become the draft
    left, right = st.columns([7, 3], gap="medium")
    with left:
        try:
            bg = background(image.path, image.sha256, edit.mask_token, box, size, alpha, edit.base_mask)
        except UserError as exc:
            st.error(f"Cannot show {image.path}: {exc}")
            return
        st.caption(f"{describe(tool, 1 / geo.px_per_image_px)} Red: defect mask · cyan: eraser strokes, "
                   "applied when you save. Hover over the canvas for its toolbar (below it): ↶ ↷ undo/redo "
                   "strokes since the last zoom or save, the pencil selects and moves them, the bin clears them. "
                   "Keys (click beside the canvas first): D / F previous / next image, B P G E tools, "
                   "Q / W brush thinner / wider, Ctrl+S save.")
        k = key()
        objects = canvas.canvas_ui(bg, width=size[0], height=size[1], drawing_mode=tool.drawing_mode,
                                   stroke_width=tool.stroke_width, stroke_color=tool.stroke_color,
                                   fill_color=tool.fill_color, key=k)
        S.remember_canvas(image.id, k, geo, objects)
        st.space("medium")  # the canvas toolbar sits below the canvas: nothing of ours under it
        with st.expander("Mask history", icon=":material/history:"):
            history_ui(image.id)
    with head:
        header_ui(image, latest)
        conflict_ui(image, latest)
    with right:
        _actions_ui(image, next_id)
        _view_ui(image, view, box)


def _view_ui(image: Image, view: View, box: tuple[int, int, int, int]) -> None:
    hw = (image.height, image.width)
    st.session_state[ZOOM_KEY] = view.zoom
    st.segmented_control("Zoom", list(ZOOMS), format_func=lambda z: f"{z}×", key=ZOOM_KEY, required=True,
                         on_change=_zoom_changed, args=(image.id, hw),
                         help="Annotate fine defects at full resolution. Unsaved strokes are kept.")
    moves = [(":material/arrow_back:", -0.5, 0.0, "Left"), (":material/arrow_upward:", 0.0, -0.5, "Up"),
             (":material/arrow_downward:", 0.0, 0.5, "Down"), (":material/arrow_forward:", 0.5, 0.0, "Right")]
    cols = st.columns(5)
    for col, (icon, dx, dy, name) in zip(cols, moves):
        col.button(icon, key=f"annotate_pan_{name}", help=f"Move the view {name.lower()} by half its size",
                   on_click=_pan, args=(image.id, hw, dx, dy), disabled=view.zoom == 1)
    cols[4].button(":material/center_focus_strong:", key="annotate_zoom_mask", help="Zoom to the mask",
                   on_click=_zoom_to_mask, args=(image.id, hw))
    try:
        st.image(minimap(load_image(image.path, image.sha256), S.edits()[image.id].base_mask(), box),
                 caption=f"View {box[0]}–{box[2]} × {box[1]}–{box[3]} px (yellow frame)")
    except UserError:
        pass
    st.slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key=ALPHA_KEY, persist_state="session")


def _actions_ui(image: Image, next_id: int | None) -> None:
    unsaved, may = S.unsaved(image.id), can(Permission.ANNOTATE)
    role_note(Permission.ANNOTATE, "save masks or labels (annotator, engineer or admin)")
    st.button("Save mask", type="primary", icon=":material/save:", key="annotate_save", width="stretch",
              on_click=A.save, args=(image.id,), shortcut="Mod+S", disabled=not may,
              help="Store the mask as a new version (author and time recorded).")
    st.button("Save & next", icon=":material/skip_next:", key="annotate_save_next", width="stretch",
              on_click=_save_and_next, args=(image.id, next_id), disabled=next_id is None or not may)
    c1, c2 = st.columns(2)
    c1.button("Discard", icon=":material/undo:", key="annotate_discard", width="stretch", disabled=not unsaved,
              on_click=A.discard, args=(image.id,), help="Throw away unsaved changes to this image.")
    c2.button("No defect", icon=":material/check_circle:", key="annotate_no_defect", width="stretch",
              on_click=A.no_defect, args=(image.id,), disabled=not may,
              help="The part is fine: clears the mask (saved as a new version) and labels the image OK.")
