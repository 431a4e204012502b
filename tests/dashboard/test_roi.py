"""AppTest of the region-of-interest editor widget (canvas wrapper patched)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.widgets.roi import MAX_CANVAS as ROI_CANVAS
from db import datasets as dq
from db import masks as mq
from db.auth import system_actor
from engine.intake.maskfiles import load_mask_file
from engine.services.masks import save_roi
from engine.services.store import open_workspace
from tests.conftest import cli
from tests.dashboard.test_page_annotate import Canvas


def _script(dataset_id: int) -> None:
    import streamlit as st

    from dashboard.state import ACTOR
    from dashboard.widgets.roi import roi_editor_ui
    from db.auth import Actor, Role

    st.session_state.setdefault(ACTOR, Actor("carol", Role.ENGINEER, 1))  # what the router signs in
    roi_editor_ui(dataset_id)


@pytest.fixture
def dataset(home: Path, tiny_demo: Path) -> int:
    cli("import", str(tiny_demo), "--name", "tiny", home=home)
    _, sessions = open_workspace(str(home))
    with sessions() as s:
        return dq.get_dataset(s, "tiny").id


@pytest.fixture
def fake_canvas(monkeypatch: pytest.MonkeyPatch) -> Canvas:
    from dashboard.widgets import canvas as canvas_module

    fake = Canvas()
    monkeypatch.setattr(canvas_module, "canvas_ui", fake)
    return fake


def app(dataset_id: int) -> AppTest:
    at = AppTest.from_function(_script, args=(dataset_id,), default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def roi(home: Path, dataset_id: int) -> tuple[int | None, np.ndarray | None, str | None]:
    _, sessions = open_workspace(str(home))
    with sessions() as s:
        cur = mq.current_roi(s, dataset_id)
        version = mq.roi_version(s, dataset_id)
        if cur is None:
            return version, None, None
        return version, load_mask_file(cur.path, (cur.height, cur.width)), cur.author


def click(at: AppTest, key: str) -> None:
    at.button(key=key).click().run()
    assert not at.exception, at.exception


def expected(*boxes: tuple[int, int, int, int], base: bool = False) -> np.ndarray:
    m = np.full((64, 64), base)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


def test_draw_include_then_exclude_and_remove(home: Path, dataset: int, fake_canvas: Canvas) -> None:
    at = app(dataset)
    fake_canvas.objects = [fake_canvas.rect(8, 8, 56, 56, max_wh=ROI_CANVAS)]
    at.run()
    click(at, f"roi_save_{dataset}")
    version, mask, author = roi(home, dataset)
    assert version == 1 and author == "carol"
    np.testing.assert_array_equal(mask, expected((8, 56, 8, 56)))
    fake_canvas.objects = [fake_canvas.rect(20, 20, 30, 30, erase=True, max_wh=ROI_CANVAS)]  # exclude a hole
    at.run()
    click(at, f"roi_save_{dataset}")
    version, mask, _ = roi(home, dataset)
    hole = expected((8, 56, 8, 56))
    hole[20:30, 20:30] = False
    assert version == 2
    np.testing.assert_array_equal(mask, hole)
    fake_canvas.objects = []
    at.run()
    click(at, f"roi_remove_{dataset}")
    assert roi(home, dataset)[:2] == (3, None)


def test_whole_image_minus_an_exclusion(home: Path, dataset: int, fake_canvas: Canvas) -> None:
    at = app(dataset)
    click(at, f"roi_all_{dataset}")
    fake_canvas.objects = [fake_canvas.rect(0, 0, 64, 10, erase=True, max_wh=ROI_CANVAS)]
    at.run()
    click(at, f"roi_save_{dataset}")
    np.testing.assert_array_equal(roi(home, dataset)[1], ~expected((0, 10, 0, 64)))


def test_empty_region_is_refused(home: Path, dataset: int, fake_canvas: Canvas) -> None:
    at = app(dataset)
    click(at, f"roi_save_{dataset}")
    assert roi(home, dataset)[0] is None
    assert any("empty" in e.value for e in at.error)


def test_concurrent_save_is_a_conflict(home: Path, dataset: int, fake_canvas: Canvas) -> None:
    at = app(dataset)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 32, 32, max_wh=ROI_CANVAS)]
    at.run()
    ws, sessions = open_workspace(str(home))
    with sessions.begin() as s:
        save_roi(s, ws.masks_dir, dataset, expected((0, 64, 0, 64)), base_version=None, actor=system_actor("dave"))
    click(at, f"roi_save_{dataset}")
    version, mask, author = roi(home, dataset)
    assert (version, author) == (1, "dave") and mask.all()
    assert any("Not saved" in e.value and "dave" in e.value for e in at.error)
