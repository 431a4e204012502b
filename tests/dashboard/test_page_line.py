"""Line page and the Review page's line queue, on a workspace whose released run got line results back."""

from __future__ import annotations

from pathlib import Path

import pytest

from db import datasets as dq
from db import decisions as tq
from db.auth import system_actor
from engine.services.line import import_line_results, line_queue
from engine.services.store import open_workspace
from tests.conftest import copy_workspace
from tests.dashboard.page_helpers import assert_ok, open_page, sessions, texts


@pytest.fixture
def with_line(home: Path, released: dict) -> int:
    copy_workspace(released["home"], home)
    ws, factory = open_workspace()
    import_line_results(ws, factory, released["run"], released["results"].read_text(), actor=system_actor("qa"))
    return released["run"]


def test_line_page_shows_verdicts_and_drift(with_line: int) -> None:
    at = open_page("line")
    text = texts(at)
    assert "The line's median score is" in text
    assert {m.label for m in at.metric} >= {"OK", "REVIEW", "NOK", "ERROR"}
    assert sum(int(m.value) for m in at.metric) > 0


def test_line_page_without_releases_points_to_thresholds(home: Path) -> None:
    at = open_page("line")
    assert "No run has been released yet" in texts(at)


def test_review_line_queue_decides_what_a_part_is(with_line: int) -> None:
    with sessions().begin() as s:
        items = line_queue(s, with_line)
    assert items and all(i.decided is None for i in items)
    first = items[0]
    at = open_page("review", role="annotator")
    at.radio(key="review_kind").set_value("LINE").run()
    assert_ok(at)
    assert f"{len(items)} parts came back from the line, {len(items)} wait for a decision." in texts(at)
    at.text_input(key=f"review_line_type_{first.image_id}").input("burn")
    at.button(key=f"review_line_nok_{first.image_id}").click().run()
    assert_ok(at)
    with sessions().begin() as s:
        img = dq.get_image(s, first.image_id)
        assert (img.label, img.split, img.defect_type) == ("nok", "test", "burn")
        review = tq.latest_reviews(s, [first.image_id])[first.image_id]
        assert review.outcome == "defective" and review.reviewer == "test-annotator"
    assert "now NOK, split test" in texts(at)
    viewer = open_page("review", role="viewer")
    viewer.radio(key="review_kind").set_value("LINE").run()
    second = items[1] if len(items) > 1 else first
    assert viewer.button(key=f"review_line_ok_{second.image_id}").disabled  # a viewer cannot decide
