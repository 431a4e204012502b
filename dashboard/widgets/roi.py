"""Region-of-interest editor (used on the Datasets page): draw once which pixels count.

Pixels outside the region are ignored in scores, heatmaps and pixel metrics (the engine reads
the stored ROI). Drawn on one representative image of the dataset, saved as a new ROI version
(engine.services.masks.save_roi), which a concurrent save turns into a visible conflict.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import cv2
import numpy as np
import streamlit as st

from dashboard.state import actor, sessions, workspace
from dashboard.widgets import canvas
from dashboard.widgets.annotate_tools import tool_ui
from dashboard.widgets.annotate_view import background, canvas_size, geometry, load_mask
from db import datasets as dq
from db import masks as mq
from db.errors import PermissionDenied
from engine.annotation.rasterise import rasterise
from engine.errors import ConflictError, UserError
from engine.services.masks import save_roi

MAX_CANVAS = (640, 480)  # fits the Datasets page's expander
INCLUDE = ("rgba(40, 200, 90, 0.85)", "rgba(40, 200, 90, 0.35)")  # strokes that add to the region
ROI_RGB = (40, 200, 90)
LABELS = {"eraser": ":material/ink_eraser: Exclude"}  # brush, polygon, rectangle include


@dataclass
class RoiEdit:
    """This session's edit of a dataset's ROI: where it started and what is drawn so far."""

    image_id: int
    hw: tuple[int, int]
    base_version: int | None
    draft: bytes  # np.packbits of the region before the canvas' strokes
    token: str
    generation: int = 0
    objects: tuple[dict, ...] = ()  # strokes on the canvas (last run)
    geometry: object | None = None
    message: tuple[str, str] | None = None  # (kind, text) shown once

    def base(self) -> np.ndarray:
        n = self.hw[0] * self.hw[1]
        return np.unpackbits(np.frombuffer(self.draft, np.uint8), count=n).reshape(self.hw).astype(bool)

    def set_base(self, mask: np.ndarray) -> None:
        self.draft = np.packbits(mask.astype(bool)).tobytes()
        self.token, self.objects = uuid.uuid4().hex[:12], ()
        self.generation += 1

    def region(self) -> np.ndarray:
        return rasterise(self.objects, self.base(), self.geometry) if self.objects else self.base()  # type: ignore[arg-type]


def _key(dataset_id: int) -> str:
    return f"_roi_edit_{dataset_id}"


def _stored(dataset_id: int, hw: tuple[int, int]) -> tuple[int | None, np.ndarray, str]:
    """(version, region at hw, description) of the dataset's current ROI."""
    with sessions()() as s:
        version = mq.roi_version(s, dataset_id)
        roi = mq.current_roi(s, dataset_id)
        if roi is None:
            return version, np.zeros(hw, bool), "No region of interest: every pixel counts."
        info = f"v{roi.version} by {roi.author}, {roi.created_at.astimezone():%Y-%m-%d %H:%M}"
        path, size = roi.path, (roi.height or hw[0], roi.width or hw[1])
    mask = load_mask(path, size)
    if mask.shape != hw:  # drawn on an image of another size: shown stretched to this one
        mask = cv2.resize(mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return version, mask, f"Current region {info} — {mask.mean():.0%} of the image counts."


def _start(dataset_id: int, image_id: int, hw: tuple[int, int]) -> RoiEdit:
    version, mask, _ = _stored(dataset_id, hw)
    e = RoiEdit(image_id, hw, version, b"", "")
    e.set_base(mask)
    return e


def _reset(dataset_id: int, image_id: int, hw: tuple[int, int], message: tuple[str, str] | None = None) -> None:
    e = _start(dataset_id, image_id, hw)
    old = st.session_state.get(_key(dataset_id))
    e.generation = (old.generation + 1) if old else 0
    e.message = message
    st.session_state[_key(dataset_id)] = e


def _fill(dataset_id: int, value: bool) -> None:
    e: RoiEdit = st.session_state[_key(dataset_id)]
    e.set_base(np.full(e.hw, value))


def _save(dataset_id: int, remove: bool = False) -> None:
    e: RoiEdit = st.session_state[_key(dataset_id)]
    region = None if remove else e.region()
    if region is not None and not region.any():
        e.message = ("error", "The region is empty: it would ignore every pixel. Draw the part to inspect, "
                              "or use “Remove” to count every pixel.")
        return
    try:
        with sessions().begin() as s:
            version = save_roi(s, workspace().masks_dir, dataset_id, region, base_version=e.base_version,
                               actor=actor())
    except ConflictError:
        with sessions()() as s:
            roi = mq.current_roi(s, dataset_id)
            who = f"{roi.author} at {roi.created_at.astimezone():%Y-%m-%d %H:%M:%S}" if roi else "someone"
        e.message = ("error", f"Not saved: the region was changed by {who} after you started "
                              f"(from version {e.base_version}). Use “Discard changes” to load theirs, then redraw.")
        return
    except (UserError, PermissionDenied, ValueError, OSError) as exc:
        e.message = ("error", f"Region not saved: {exc}")
        return
    text = f"Region removed (version {version}): every pixel counts." if remove else \
        f"Saved region version {version} ({region.mean():.0%} of the image counts)."  # type: ignore[union-attr]
    _reset(dataset_id, e.image_id, e.hw, ("success", text))


def roi_editor_ui(dataset_id: int) -> None:
    """Draw, save or remove the dataset's region of interest on a representative image."""
    with sessions()() as s:
        imgs = dq.list_images(s, dataset_id, split="train", label="ok", limit=30) or dq.list_images(s, dataset_id, limit=30)
        choices = {i.id: i for i in imgs}
        s.expunge_all()
    if not choices:
        st.caption("The dataset has no images yet.")
        return
    pick_key = f"roi_image_{dataset_id}"
    image_id = st.selectbox("Draw on", list(choices), key=pick_key, format_func=lambda i: choices[i].rel_path,
                            help="A typical image of the dataset (training OK images first).")
    img = choices[image_id]
    hw = (img.height, img.width)
    e: RoiEdit | None = st.session_state.get(_key(dataset_id))
    if e is None or e.image_id != image_id:
        _reset(dataset_id, image_id, hw)
        e = st.session_state[_key(dataset_id)]
    if f"roi_{dataset_id}_tool" not in st.session_state and e.objects:  # page re-entered: canvas is empty
        e.set_base(e.region())
    version, _, info = _stored(dataset_id, hw)
    st.caption(info + " Green = counted: brush, polygon and rectangle add to the region, Exclude removes.")
    if e.message:
        getattr(st, e.message[0])(e.message[1])
        e.message = None
    if version != e.base_version:
        st.warning(f"Someone saved region version {version} after you started; saving will be refused. "
                   "“Discard” loads it.")
    tool = tool_ui(f"roi_{dataset_id}", labels=LABELS, paint=INCLUDE, compact=True)
    box = (0, 0, hw[1], hw[0])
    size = canvas_size(box, MAX_CANVAS)
    geo = geometry(box, size)
    raw = f"{dataset_id}|{image_id}|{e.token}|{e.generation}"
    key = "roi_canvas_" + hashlib.md5(raw.encode()).hexdigest()[:16]
    try:
        bg = _background(img.path, img.sha256, e, box, size)
    except UserError as exc:
        st.error(f"Cannot show {img.path}: {exc}")
        return
    objects = canvas.canvas_ui(bg, width=size[0], height=size[1], drawing_mode=tool.drawing_mode,
                               stroke_width=tool.stroke_width, stroke_color=tool.stroke_color,
                               fill_color=tool.fill_color, key=key)
    e.objects, e.geometry = tuple(objects), geo
    c = st.columns(4)
    c[0].button("Save", type="primary", icon=":material/save:", key=f"roi_save_{dataset_id}",
                on_click=_save, args=(dataset_id,), width="stretch")
    c[1].button("Whole image", icon=":material/select_all:", key=f"roi_all_{dataset_id}", width="stretch",
                on_click=_fill, args=(dataset_id, True), help="Start from the whole image, then exclude parts.")
    c[2].button("Discard", icon=":material/undo:", key=f"roi_discard_{dataset_id}", width="stretch",
                on_click=_reset, args=(dataset_id, image_id, hw, ("info", "Changes discarded.")))
    c[3].button("Remove", icon=":material/delete:", key=f"roi_remove_{dataset_id}", width="stretch",
                on_click=_save, args=(dataset_id, True), disabled=version is None,
                help="Count every pixel again (saved as a new version; the history is kept).")


def _background(path: str, sha256: str, e: RoiEdit, box: tuple[int, int, int, int], size: tuple[int, int]) -> bytes:
    return background(path, sha256, f"roi:{e.token}", box, size, 0.35, e.base, rgb=ROI_RGB)
