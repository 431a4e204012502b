"""The one wrapper around streamlit-drawable-canvas: everything else calls `canvas_ui`.

AppTests replace `canvas_ui` (monkeypatch this module's attribute) because the canvas is a
custom component that AppTest cannot drive; call it as `canvas.canvas_ui(...)` so the patch
is seen.
"""

from __future__ import annotations

from typing import Any


def canvas_ui(background: bytes, *, width: int, height: int, drawing_mode: str, stroke_width: int,
              stroke_color: str, fill_color: str, key: str) -> list[dict[str, Any]]:
    """Show `background` (PNG/JPEG bytes, sized width x height) and return the Fabric objects
    drawn on it since this key was mounted, in drawing order.

    The canvas forgets its drawing when it remounts (new key, page change): callers keep what
    they need (engine.annotation.rasterise.rasterise turns the objects into a mask).
    """
    # imported here: the component registers its assets only inside a running server
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        background_image=background, background_image_fit="contain", width=width, height=height,
        drawing_mode=drawing_mode, stroke_width=stroke_width, stroke_color=stroke_color,
        fill_color=fill_color, update_streamlit=True, key=key,
    )
    data = result.json_data or {}
    return [obj for obj in data.get("objects") or [] if isinstance(obj, dict)]
