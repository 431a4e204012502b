"""In a real browser: draw a stroke with the mouse on Annotate, save, find the new mask version
with the right pixels in the database; erase across it, save again, and see fewer pixels there."""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from engine.intake.images import read_mask
from tests.browser.conftest import (
    ANNOTATOR,
    APP_IDLE,
    AppServer,
    assert_no_exception,
    run_and_wait,
    screenshot,
    sign_in,
    wait_for_app,
)


def _first_nok(app_server: AppServer) -> tuple[int, int, int]:
    con = sqlite3.connect(app_server.home / "prefilter-qa.db")
    try:
        return con.execute("SELECT id, width, height FROM images WHERE label = 'nok' ORDER BY id LIMIT 1").fetchone()
    finally:
        con.close()


def _latest_mask(app_server: AppServer, image_id: int, hw: tuple[int, int]) -> tuple[int, str, str, np.ndarray]:
    con = sqlite3.connect(app_server.home / "prefilter-qa.db")
    try:
        version, author, source, path = con.execute(
            "SELECT version, author, source, path FROM masks WHERE image_id = ? ORDER BY version DESC LIMIT 1",
            (image_id,)).fetchone()
    finally:
        con.close()
    from pathlib import Path

    mask = read_mask(Path(path), expected_hw=hw) if path else np.zeros(hw, bool)
    return version, author, source, mask


def _drag(page: Any, canvas: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse stroke between two points given as fractions of the canvas; waits for its rerun."""
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0 = box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"]
    x1, y1 = box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"]

    def stroke() -> None:
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=12)
        page.mouse.up()

    run_and_wait(page, stroke)


def _save(page: Any) -> None:
    run_and_wait(page, page.get_by_role("button", name="Save mask").click)
    wait_for_app(page)


@pytest.mark.browser
def test_draw_save_then_erase_and_save_again(app_page: Any, app_server: AppServer) -> None:
    page = app_page
    image_id, width, height = _first_nok(app_server)
    hw = (height, width)
    page.goto(f"{app_server.url}/annotate?image={image_id}")  # a link to the image (new session)
    page.wait_for_function(f"window.__stRuns >= 1 && document.querySelector('{APP_IDLE}')")
    sign_in(page, ANNOTATOR)  # a link opens a new session: sign in again; masks record who saved them
    expect(page.get_by_role("button", name="Save mask")).to_be_visible()
    v0, _, _, before = _latest_mask(app_server, image_id, hw)

    canvas = page.locator("canvas.upper-canvas")
    expect(canvas).to_be_visible()
    _drag(page, canvas, (0.15, 0.3), (0.85, 0.3))  # a horizontal brush stroke at 30% height
    expect(page.get_by_text("unsaved draft")).to_be_visible()
    _save(page)
    v1, author, source, drawn = _latest_mask(app_server, image_id, hw)
    assert (v1, author, source) == (v0 + 1, ANNOTATOR, "drawn")
    row = int(0.3 * height)  # the stroke's centre line, in image pixels
    cols = slice(int(0.2 * width), int(0.8 * width))
    assert drawn[row, cols].all(), "the stroke's pixels are in the saved mask"
    assert (drawn | before).sum() == drawn.sum() and drawn.sum() > before.sum(), "nothing else was removed"
    screenshot(page, "annotate-drawn")

    expect(page.get_by_text("unsaved draft")).to_have_count(0)  # saved: no draft left
    run_and_wait(page, page.get_by_role("radio", name="Eraser").click)
    _drag(page, page.locator("canvas.upper-canvas"), (0.5, 0.1), (0.5, 0.5))  # across the stroke
    expect(page.get_by_text("unsaved draft")).to_be_visible()  # the erase reached the app before saving
    _save(page)
    v2, _, _, erased = _latest_mask(app_server, image_id, hw)
    assert v2 == v1 + 1
    region = (slice(row - 3, row + 4), slice(width // 2 - 3, width // 2 + 3))
    assert erased[region].sum() < drawn[region].sum(), "the eraser removed pixels where it crossed"
    assert not erased[row, width // 2 - 1: width // 2 + 1].any()
    left = slice(int(0.2 * width), width // 2 - 4)
    assert erased[row, left].all(), "pixels away from the eraser stroke stay"
    screenshot(page, "annotate-erased")
    assert_no_exception(page)
