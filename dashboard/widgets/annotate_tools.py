"""Drawing tools for the mask and ROI editors: brush, polygon, rectangle, eraser."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from engine.annotation.rasterise import ERASER_FILL, ERASER_STROKE, PAINT_FILL, PAINT_STROKE

TOOLS = {
    "brush": ":material/brush: Brush",
    "polygon": ":material/pentagon: Polygon",
    "rect": ":material/crop_square: Rectangle",
    "eraser": ":material/ink_eraser: Eraser",
}
ERASER_SHAPES = {"freedraw": "Brush", "polygon": "Polygon", "rect": "Rectangle"}
SHORTCUTS = {"brush": "B", "polygon": "P", "rect": "G", "eraser": "E"}  # Streamlit reserves C and R
WIDTH_KEYS = {-1: "Q", 1: "W"}  # thinner / wider brush
WIDTH_STEP = 4
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
    paint: tuple[str, str] = (PAINT_STROKE, PAINT_FILL)  # (stroke, fill) colours when not erasing

    @property
    def stroke_color(self) -> str:
        return ERASER_STROKE if self.erase else self.paint[0]

    @property
    def fill_color(self) -> str:
        return ERASER_FILL if self.erase else self.paint[1]


def _pick_tool(key: str, name: str) -> None:
    st.session_state[f"{key}_tool"] = name


def _step_width(key: str, step: int) -> None:
    now = int(st.session_state.get(f"{key}_width", 12))
    st.session_state[f"{key}_width"] = max(1, min(60, now + step * WIDTH_STEP))


def shortcuts_ui(key: str, labels: dict[str, str] | None = None) -> None:
    """A row of small buttons with keyboard shortcuts (Streamlit's own `shortcut=`): the tools and
    thinner / wider brush, as in CVAT and Label Studio. Keys act while the canvas is not focused."""
    names = {**TOOLS, **(labels or {})}
    with st.container(horizontal=True, gap="small"):
        for name, k in SHORTCUTS.items():
            st.button(names[name].split(" ", 1)[-1], key=f"{key}_sc_{name}", type="tertiary", shortcut=k,
                      on_click=_pick_tool, args=(key, name), help=f"{names[name].split(' ', 1)[-1]} ({k})")
        for step, k in WIDTH_KEYS.items():
            st.button("Thinner" if step < 0 else "Wider", key=f"{key}_sc_width_{step}", type="tertiary",
                      icon=":material/remove:" if step < 0 else ":material/add:", shortcut=k,
                      on_click=_step_width, args=(key, step), help=f"Brush width {'-' if step < 0 else '+'}"
                      f"{WIDTH_STEP} px ({k})")


def tool_ui(key: str, *, labels: dict[str, str] | None = None,
            paint: tuple[str, str] = (PAINT_STROKE, PAINT_FILL), compact: bool = False,
            shortcuts: bool = False) -> Tool:
    """Tool picker + brush width. `key` prefixes widget keys (the tool key is also what pages
    check to see whether they were just (re)entered: it is not kept across page switches).
    `compact`: tools on their own row (narrow containers). `shortcuts`: a row of keyboard shortcuts."""
    names = {**TOOLS, **(labels or {})}
    if compact:
        top = st.container()
        cols = [top, *st.columns([1, 1], vertical_alignment="bottom")]
    else:
        cols = st.columns([6, 2, 3], vertical_alignment="bottom")
    with cols[0]:
        choice = st.segmented_control("Tool", list(names), format_func=names.__getitem__, default="brush",
                                      required=True, key=f"{key}_tool")
    choice = choice or "brush"
    mode = {"brush": "freedraw", "polygon": "polygon", "rect": "rect"}.get(choice, "freedraw")
    if choice == "eraser":
        with cols[1]:
            mode = st.selectbox("Eraser shape", list(ERASER_SHAPES), format_func=ERASER_SHAPES.__getitem__,
                                key=f"{key}_eraser_shape", persist_state="session")
    freehand = mode == "freedraw"
    with cols[2]:
        width = st.slider("Brush width (screen px)", 1, 60, 12, key=f"{key}_width", persist_state="session",
                          disabled=not freehand,
                          help="Width of brush and eraser strokes on screen. Zoom in for finer strokes: "
                               "the mask is always drawn at the image's full resolution.")
    if shortcuts:
        shortcuts_ui(key, labels)
    return Tool(drawing_mode=mode, stroke_width=int(width) if freehand else 1, erase=choice == "eraser",
                paint=paint)


def describe(tool: Tool, image_px_per_screen_px: float) -> str:
    """One line on what the tool does (and the brush size in image pixels)."""
    if tool.erase:
        how = {"freedraw": "drag to erase", "polygon": "click corners, click the first one again to erase "
               "the inside", "rect": "drag a rectangle to erase"}[tool.drawing_mode]
        text = f"**Eraser**: {how}"
    else:
        key = {"freedraw": "brush", "polygon": "polygon", "rect": "rect"}[tool.drawing_mode]
        text = f"**{TOOLS[key].split(' ', 1)[1]}**: {HELP[key][0].lower()}{HELP[key][1:].rstrip('.')}"
    if tool.drawing_mode == "freedraw":
        text += f" (≈ {max(1.0, tool.stroke_width * image_px_per_screen_px):.1f} image px wide at this zoom)"
    return text + "."


def tool_key(key: str) -> str:
    """Session-state key of the tool picker (absent right after the page was entered)."""
    return f"{key}_tool"
