"""AppTest of the Annotate page on a tiny imported workspace, with our canvas wrapper patched.

The fake canvas returns whatever Fabric objects the test puts in `Canvas.objects`, in canvas
pixels of the view it was shown (the test maps image rectangles through the same geometry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.state import ANNOTATE_IMAGE, ANNOTATE_QUEUE
from dashboard.widgets import canvas as canvas_module
from dashboard.widgets.annotate_view import MAX_CANVAS, canvas_size, geometry
from db import datasets as dq
from db import masks as mq
from db.auth import system_actor
from engine.annotation.rasterise import (
    ERASER_FILL,
    ERASER_STROKE,
    PAINT_FILL,
    PAINT_STROKE,
)
from engine.intake.maskfiles import load_mask_file
from engine.services.masks import save_mask
from engine.services.store import open_workspace
from tests.conftest import REPO, cli
from tests.dashboard.page_helpers import signed_in

PAGE = "dashboard/pages/annotate.py"


@dataclass
class Canvas:
    """Stands in for the drawing canvas: records calls, returns `objects`."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, background: bytes, **kw: Any) -> list[dict[str, Any]]:
        assert background[:4] == b"\x89PNG"
        self.calls.append(kw)
        return list(self.objects)

    def rect(self, x0: int, y0: int, x1: int, y1: int, *, erase: bool = False, hw: tuple[int, int] = (64, 64),
             box: tuple[int, int, int, int] | None = None, max_wh: tuple[int, int] = MAX_CANVAS) -> dict[str, Any]:
        """A Rect covering image pixels [x0, x1) x [y0, y1) in the view `box` (default: all)."""
        box = box or (0, 0, hw[1], hw[0])
        g = geometry(box, canvas_size(box, max_wh))
        left, top = g.offset_x + (x0 - g.crop_x) * g.scale_x, g.offset_y + (y0 - g.crop_y) * g.scale_y
        return {"type": "Rect", "originX": "left", "originY": "top", "left": left, "top": top,
                "width": (x1 - x0) * g.scale_x, "height": (y1 - y0) * g.scale_y, "strokeWidth": 0,
                "stroke": ERASER_STROKE if erase else PAINT_STROKE, "fill": ERASER_FILL if erase else PAINT_FILL}


@pytest.fixture
def workspace(home: Path, tiny_demo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cli("import", str(tiny_demo), "--name", "tiny", home=home)
    monkeypatch.setenv("PREFILTER_QA_AUTOSTART_WORKER", "0")
    return home


@pytest.fixture
def fake_canvas(monkeypatch: pytest.MonkeyPatch) -> Canvas:
    fake = Canvas()
    monkeypatch.setattr(canvas_module, "canvas_ui", fake)
    return fake


def nok_ids(home: Path) -> list[int]:
    _, sessions = open_workspace(str(home))
    with sessions() as s:
        ds = dq.get_dataset(s, "tiny")
        return [i.id for i in dq.list_images(s, ds.id, label="nok")]


def versions(home: Path, image_id: int) -> list[tuple[int, str, str, int]]:
    _, sessions = open_workspace(str(home))
    with sessions() as s:
        return [(m.version, m.author, m.source, m.pixels) for m in reversed(mq.mask_history(s, image_id))]


def stored(home: Path, image_id: int) -> np.ndarray:
    _, sessions = open_workspace(str(home))
    with sessions() as s:
        m = mq.current_mask(s, image_id)
        img = dq.get_image(s, image_id)
        return load_mask_file(m.path if m else None, (img.height, img.width))


def signed_in_app(name: str = "alice") -> AppTest:
    """The router with `name` signed in as an annotator (who may save masks and labels)."""
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=60)
    for k, v in signed_in("annotator", name).items():
        at.session_state[k] = v
    return at


def open_page(image_id: int, *, queue: list[int] | None = None, name: str = "alice") -> AppTest:
    at = signed_in_app(name)
    at.session_state[ANNOTATE_IMAGE] = image_id
    if queue is not None:
        at.session_state[ANNOTATE_QUEUE] = queue
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((64, 64), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_draw_then_save_adds_a_version_with_the_drawn_pixels(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[0]
    before = stored(workspace, image)
    at = open_page(image)
    assert fake_canvas.calls[-1]["width"] == canvas_size((0, 0, 64, 64))[0]
    fake_canvas.objects = [fake_canvas.rect(10, 20, 30, 25), fake_canvas.rect(12, 20, 14, 25, erase=True)]
    at.run()
    assert any("unsaved draft" in m.value for m in at.markdown)
    click(at, "annotate_save")
    v = versions(workspace, image)[-1]
    assert v[1:3] == ("alice", "drawn")
    expected = before | box(20, 25, 10, 30)
    expected[20:25, 12:14] = False
    np.testing.assert_array_equal(stored(workspace, image), expected)
    assert v[3] == expected.sum()


def test_conflicting_save_is_shown_and_not_written(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[1]
    at = open_page(image)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 8, 8)]
    at.run()
    ws, sessions = open_workspace(str(workspace))
    with sessions.begin() as s:  # someone else saves meanwhile
        base = mq.current_mask(s, image)
        save_mask(s, ws.masks_dir, image, box(40, 50, 40, 50), base_version=base.version if base else None,
                  actor=system_actor("bob"))
    n = len(versions(workspace, image))
    click(at, "annotate_save")
    assert len(versions(workspace, image)) == n  # nothing written
    assert any("Not saved" in e.value and "bob" in e.value for e in at.error)
    np.testing.assert_array_equal(stored(workspace, image), box(40, 50, 40, 50))
    click(at, f"annotate_overwrite_{image}")  # deliberately on top of bob's
    assert versions(workspace, image)[-1][:3] == (n + 1, "alice", "drawn")
    assert stored(workspace, image)[0:8, 0:8].all() and not at.error


def test_load_theirs_discards_my_strokes(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[1]
    at = open_page(image)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 8, 8)]
    at.run()
    ws, sessions = open_workspace(str(workspace))
    with sessions.begin() as s:
        base = mq.current_mask(s, image)
        save_mask(s, ws.masks_dir, image, box(1, 2, 1, 2), base_version=base.version if base else None, actor=system_actor("bob"))
    click(at, "annotate_save")
    fake_canvas.objects = []  # the canvas remounts empty
    click(at, f"annotate_theirs_{image}")
    assert not at.error and not any("unsaved draft" in m.value for m in at.markdown)
    assert versions(workspace, image)[-1][1] == "bob"


def test_restore_from_history(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[2]
    original = stored(workspace, image)
    first = versions(workspace, image)[-1][0]
    at = open_page(image)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 64, 64)]
    at.run()
    click(at, "annotate_save")
    fake_canvas.objects = []
    at.run()
    at.selectbox(key=f"annotate_restore_pick_{image}").set_value(first).run()
    click(at, f"annotate_restore_{image}")
    last = versions(workspace, image)[-1]
    assert last[1:3] == ("alice", "restored") and last[0] == first + 2
    np.testing.assert_array_equal(stored(workspace, image), original)
    history = next(d.value for d in at.dataframe if "from" in d.value.columns)
    assert "None" not in set(map(str, history["from"])) and history["from"].iloc[-1] == "new"
    assert all(str(u).startswith("data:image/png;base64,") for u in history["mask"])  # a thumbnail per version


def test_draft_survives_navigation_to_the_next_image_and_back(workspace: Path, fake_canvas: Canvas) -> None:
    ids = nok_ids(workspace)
    at = open_page(ids[0], queue=ids)
    before = stored(workspace, ids[0])
    fake_canvas.objects = [fake_canvas.rect(50, 50, 60, 60)]
    at.run()
    fake_canvas.objects = []  # the next image's canvas is empty
    click(at, "annotate_next")
    assert at.session_state["_annotate_current"] == ids[1]
    assert not any("unsaved draft" in m.value for m in at.markdown)
    click(at, "annotate_prev")
    assert any("unsaved draft" in m.value for m in at.markdown)
    n = len(versions(workspace, ids[0]))
    click(at, "annotate_save")
    assert len(versions(workspace, ids[0])) == n + 1
    np.testing.assert_array_equal(stored(workspace, ids[0]), before | box(50, 60, 50, 60))


def test_zoomed_strokes_land_at_full_resolution_and_zooming_keeps_the_draft(workspace: Path,
                                                                          fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[3]
    before = stored(workspace, image)
    at = open_page(image)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 4, 4)]
    at.run()
    fake_canvas.objects = []
    at.segmented_control(key="annotate_zoom").set_value(4).run()  # view 16x16 around the centre
    zbox = (24, 24, 40, 40)
    assert fake_canvas.calls[-1]["width"] == canvas_size(zbox)[0]
    fake_canvas.objects = [fake_canvas.rect(30, 31, 32, 33, box=zbox)]  # a 2x2 px defect
    at.run()
    click(at, "annotate_save")
    np.testing.assert_array_equal(stored(workspace, image), before | box(0, 4, 0, 4) | box(31, 33, 30, 32))


def test_no_defect_clears_the_mask_and_labels_ok(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[4]
    at = open_page(image)
    click(at, "annotate_no_defect")
    v = versions(workspace, image)[-1]
    assert v[1:] == ("alice", "cleared", 0)
    assert not stored(workspace, image).any()
    _, sessions = open_workspace(str(workspace))
    with sessions() as s:
        assert dq.get_image(s, image).label == "ok"


def test_query_param_opens_an_image_and_unknown_ids_are_reported(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[5]
    at = signed_in_app()
    at.query_params["image"] = str(image)
    at.switch_page(PAGE).run()
    assert not at.exception and at.session_state["_annotate_current"] == image
    at.session_state[ANNOTATE_IMAGE] = 999999
    at.run()
    assert not at.exception and any("999999" in t.value for t in at.toast)


def test_a_newer_version_saved_while_open_is_offered_not_forced(workspace: Path, fake_canvas: Canvas) -> None:
    image = nok_ids(workspace)[2]
    at = open_page(image)
    keys = {c["key"] for c in fake_canvas.calls}
    ws, sessions = open_workspace(str(workspace))
    with sessions.begin() as s:
        base = mq.current_mask(s, image)
        save_mask(s, ws.masks_dir, image, box(0, 3, 0, 3), base_version=base.version if base else None, actor=system_actor("bob"))
    at.run()
    assert fake_canvas.calls[-1]["key"] in keys  # same canvas: a stroke being drawn is not thrown away
    assert any("newer mask" in i.value and "bob" in i.value for i in at.info)
    click(at, f"annotate_show_latest_{image}")
    assert fake_canvas.calls[-1]["key"] not in keys and not at.info
    fake_canvas.objects = [fake_canvas.rect(60, 60, 64, 64)]
    at.run()
    click(at, "annotate_save")  # on top of bob's version: no conflict
    np.testing.assert_array_equal(stored(workspace, image), box(0, 3, 0, 3) | box(60, 64, 60, 64))


def test_save_and_next(workspace: Path, fake_canvas: Canvas) -> None:
    ids = nok_ids(workspace)
    at = open_page(ids[0], queue=ids)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 2, 2)]
    at.run()
    fake_canvas.objects = []
    click(at, "annotate_save_next")
    assert at.session_state["_annotate_current"] == ids[1]
    assert stored(workspace, ids[0])[0:2, 0:2].all()


def test_false_negative_queue_of_a_run(tmp_path: Path, trained_workspace: Any, fake_canvas: Canvas,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """NOK images scored below the run's active threshold (latest evaluation), worst miss first."""
    from db import decisions as dd
    from db import runs as rq
    from engine.workspace import HOME_ENV
    from tests.conftest import copy_workspace

    home = copy_workspace(trained_workspace.home, tmp_path / "workspace")
    monkeypatch.setenv(HOME_ENV, str(home))
    monkeypatch.setenv("PREFILTER_QA_AUTOSTART_WORKER", "0")
    run = trained_workspace.dfr_run
    _, sessions = open_workspace(str(home))
    with sessions.begin() as s:
        ev = rq.latest_evaluation(s, run)
        nok = {r.image_id: r.score for r in rq.evaluation_scores(s, ev.id) if r.label == "nok"}
        threshold = float(np.median(list(nok.values())))  # half the NOK images become misses
        dd.save_threshold(s, run, base_id=dd.active_threshold(s, run).id, image_threshold=threshold, actor=system_actor("test"))
        dataset_id = rq.get_run(s, run).dataset_id
    expected = sorted((i for i, v in nok.items() if v < threshold), key=lambda i: (nok[i], i))
    assert expected
    with sessions() as s:
        assert mq.annotation_queue(s, dataset_id, "false_negatives", run) == expected
        assert mq.annotation_queue(s, dataset_id, "false_negatives", None) == []
    at = signed_in_app()
    at.query_params["queue"] = "false_negatives"
    at.query_params["run"] = str(run)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.session_state["_annotate_current"] == expected[0]
    assert any(m.value == f"**1 / {len(expected)}**" for m in at.markdown)


def test_drafts_on_other_images_are_listed_with_a_way_back(workspace: Path, fake_canvas: Canvas) -> None:
    ids = nok_ids(workspace)
    at = open_page(ids[0], queue=ids)
    fake_canvas.objects = [fake_canvas.rect(0, 0, 5, 5)]
    at.run()
    fake_canvas.objects = []
    click(at, "annotate_next")
    assert any("Unsaved drafts on 1 other" in c.value for c in at.sidebar.caption)
    click(at, f"annotate_draft_{ids[0]}")
    assert at.session_state["_annotate_current"] == ids[0]
    assert any("unsaved draft" in m.value for m in at.markdown)
