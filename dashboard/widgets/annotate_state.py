"""Session state of the Annotate page: per-image edits (base version + unsaved draft) and the
strokes still on the canvas.

The canvas forgets its strokes whenever it remounts (other image, zoom, page switch, saved
mask shown). So the strokes the canvas returned in the last run are kept as `Pending`; before a
canvas with another key is shown they are rasterised into that image's draft mask. Drafts live
per image in session_state, so they survive prev/next, zooming and visits to other pages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from dashboard.widgets.annotate_view import load_mask
from engine.annotation.rasterise import CanvasGeometry, rasterise

EDITS = "_annotate_edits"  # {image_id: Edit}
PENDING = "_annotate_pending"  # Pending | None: strokes on the canvas in the last run
CURRENT = "_annotate_current"  # image id open in the editor
SHOWN = "_annotate_shown"  # image id the editor showed in the last run
VIEWS = "_annotate_views"  # {image_id: View}
FLASH = "_annotate_flash"  # [(kind, message)] shown once on the next run
CONFLICT = "_annotate_conflict"  # {image_id: Conflict} a save that found a newer version
FLASH_ICONS = {"success": ":material/check_circle:", "info": ":material/info:",
               "warning": ":material/warning:", "error": ":material/error:"}


@dataclass
class Edit:
    """Where an image's edit started (base version) and its unsaved draft, if any."""

    image_id: int
    hw: tuple[int, int]
    base_version: int | None  # mask version shown when the edit began (None: no mask yet)
    base_path: str | None  # its file (None: empty)
    draft: bytes | None = None  # np.packbits of the unsaved mask; None: nothing unsaved
    token: str = ""  # changes with each draft (background cache key)
    generation: int = 0  # bumped to remount an empty canvas

    @property
    def has_draft(self) -> bool:
        return self.draft is not None

    @property
    def mask_token(self) -> str:
        return f"draft:{self.token}" if self.draft is not None else f"v{self.base_version}"

    def base_mask(self) -> np.ndarray:
        """The mask before the canvas' strokes: the draft, else the base version's file."""
        if self.draft is not None:
            n = self.hw[0] * self.hw[1]
            return np.unpackbits(np.frombuffer(self.draft, np.uint8), count=n).reshape(self.hw).astype(bool)
        return load_mask(self.base_path, self.hw)

    def set_draft(self, mask: np.ndarray | None) -> None:
        self.draft = None if mask is None else np.packbits(mask.astype(bool)).tobytes()
        self.token = uuid.uuid4().hex[:12]
        self.generation += 1

    def reset(self, version: int | None, path: str | None) -> None:
        """Start over from a stored version: no draft, empty canvas."""
        self.base_version, self.base_path, self.draft = version, path, None
        self.generation += 1


@dataclass(frozen=True)
class Pending:
    image_id: int
    canvas_key: str
    geometry: CanvasGeometry
    objects: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Conflict:
    their_version: int | None
    author: str
    at: str
    base_version: int | None


def views() -> dict[int, Any]:
    """The zoom/centre (annotate_view.View) last used on each image."""
    return st.session_state.setdefault(VIEWS, {})


def edits() -> dict[int, Edit]:
    return st.session_state.setdefault(EDITS, {})


def edit_for(image_id: int, hw: tuple[int, int], version: int | None, path: str | None, *,
             follow_latest: bool) -> Edit:
    """This session's edit of the image, started from the given (current) version if new.

    With `follow_latest` (the image was just opened), an edit without unsaved work moves to
    the latest version. Never while the image stays open: a stroke being drawn on the shown
    version would be lost when the canvas remounts; the page offers the newer version instead.
    """
    e = edits().get(image_id)
    if e is None or e.hw != hw:
        e = edits()[image_id] = Edit(image_id, hw, version, path)
    elif follow_latest and not e.has_draft and not pending_objects(image_id) and e.base_version != version:
        e.reset(version, path)
    return e


def pending() -> Pending | None:
    return st.session_state.get(PENDING)


def pending_objects(image_id: int) -> tuple[dict[str, Any], ...]:
    p = pending()
    return p.objects if p is not None and p.image_id == image_id else ()


def remember_canvas(image_id: int, canvas_key: str, geometry: CanvasGeometry,
                    objects: list[dict[str, Any]]) -> None:
    st.session_state[PENDING] = Pending(image_id, canvas_key, geometry, tuple(objects))


def commit_pending(*, unless_key: str | None = None) -> None:
    """Rasterise the last canvas' strokes into their image's draft, unless that canvas is
    `unless_key` (the one about to be shown, which still holds them)."""
    p = pending()
    if p is None or p.canvas_key == unless_key:
        return
    st.session_state[PENDING] = None
    e = edits().get(p.image_id)
    if e is None or not p.objects:
        return
    e.set_draft(rasterise(p.objects, e.base_mask(), p.geometry))


def working_mask(image_id: int) -> np.ndarray:
    """What a save would store: base (draft or version) with the canvas' strokes applied."""
    e = edits()[image_id]
    p = pending()
    base = e.base_mask()
    if p is None or p.image_id != image_id or not p.objects:
        return base
    return rasterise(p.objects, base, p.geometry)


def drop_pending(image_id: int) -> None:
    if (p := pending()) is not None and p.image_id == image_id:
        st.session_state[PENDING] = None


def unsaved(image_id: int) -> bool:
    e = edits().get(image_id)
    return bool((e is not None and e.has_draft) or pending_objects(image_id))


def drafts() -> list[int]:
    """Images with unsaved work in this session."""
    return [i for i in edits() if unsaved(i)]


def flash(kind: str, message: str) -> None:
    """Queue a message (success / info / warning / error) for the next run of the page."""
    st.session_state.setdefault(FLASH, []).append((kind, message))


def take_flashes() -> list[tuple[str, str]]:
    return st.session_state.pop(FLASH, [])


def conflicts() -> dict[int, Conflict]:
    return st.session_state.setdefault(CONFLICT, {})
