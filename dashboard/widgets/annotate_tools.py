"""Drawing tools for the mask and ROI editors: brush, polygon, rectangle, eraser."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from engine.annotate import ERASER_FILL, ERASER_STROKE, PAINT_FILL, PAINT_STROKE

TOOLS = {
    "brush": ":material/brush: Brush",
    "polygon": ":material/pentagon: Polygon",
    "rect": ":material/crop_square: Rectangle",
    "eraser": ":material/ink_eraser: Eraser",
}
ERASER_SHAPES = {"freedraw": "Brush", "polygon": "Polygon", "rect": "Rectangle"}
HELP = {
    "brush": "Paint defect pixels freehand.",
    "polygon": "Click the corners; click the first corner again to close the polygon.",
    "rect": "Drag a rectangle.",
    "eraser": "Remove pixels from the mask (drawn in cyan until saved).",
}


@dataclass(frozen=True)
class Tool:
    """What the canvas draws with (canvas px) and whether it erases."""

    drawing_mode: str  # freedraw | polygon | rect
    stroke_width: int
    erase: bool

    @property
    def stroke_color(self) -> str:
        return ERASER_STROKE if self.erase else PAINT_STROKE

    @property
    def fill_color(self) -> str:
        return ERASER_FILL if self.erase else PAINT_FILL


def tool_ui(key: str, *, image_px_per_screen_px: float = 1.0, labels: dict[str, str] | None = None) -> Tool:
    """Tool picker + brush width. `key` prefixes widget keys (the tool key is also what pages
    check to see whether they were just (re)entered: it is not kept across page switches)."""
    names = {**TOOLS, **(labels or {})}
    cols = st.columns([5, 3, 3], vertical_alignment="bottom")
    with cols[0]:
        choice = st.segmented_control("Tool", list(names), format_func=names.__getitem__, default="brush",
                                      required=True, key=f"{key}_tool")
    choice = choice or "brush"
    mode = {"brush": "freedraw", "polygon": "polygon", "rect": "rect"}.get(choice, "freedraw")
    with cols[1]:
        if choice == "eraser":
            mode = st.selectbox("Eraser shape", list(ERASER_SHAPES), format_func=ERASER_SHAPES.__getitem__,
                                key=f"{key}_eraser_shape", persist_state="session")
        else:
            st.caption(HELP[choice])
    freehand = mode == "freedraw"
    with cols[2]:
        width = st.slider("Brush width (screen px)", 1, 60, 12, key=f"{key}_width", persist_state="session",
                          disabled=not freehand,
                          help="Width of brush and eraser strokes on screen. Zoom in for finer strokes: "
                               "the mask is always drawn at the image's full resolution.")
    with cols[1]:
        if choice == "eraser" or freehand:
            st.caption(f"Brush ≈ {max(1.0, width * image_px_per_screen_px):.1f} image px at this zoom.")
    return Tool(drawing_mode=mode, stroke_width=int(width) if freehand else 1, erase=choice == "eraser")


def tool_key(key: str) -> str:
    """Session-state key of the tool picker (absent right after the page was entered)."""
    return f"{key}_tool"
