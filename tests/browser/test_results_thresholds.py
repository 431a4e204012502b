"""In a real browser: click a point of the ROC curve on Thresholds, save it, find it in the
history and in `prefilter-qa runs ID --json`; open Results and see a heatmap."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest

from engine.evaluation.metrics import roc_points
from tests.browser.conftest import (
    ENGINEER,
    AppServer,
    assert_no_exception,
    enter_text,
    run_and_wait,
    screenshot,
    sign_in,
    wait_for_app,
)
from tests.conftest import cli

pytestmark = pytest.mark.browser

USER = ENGINEER  # recorded as the threshold's author
ROC_TITLE = "ROC — click a point to use its threshold"


def _scores(home: Any, run_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(y_nok, scores) of the run's latest evaluation, read from the served workspace."""
    from db import runs as rq
    from engine.services.store import open_workspace

    _, sessions = open_workspace(str(home))
    with sessions.begin() as s:
        ev = rq.latest_evaluation(s, run_id)
        rows = rq.evaluation_scores(s, ev.id)
        return np.array([r.label == "nok" for r in rows]), np.array([r.score for r in rows])


def _holdout(home: Any, run_id: int) -> np.ndarray | None:
    from db import runs as rq
    from engine.services.store import open_workspace

    _, sessions = open_workspace(str(home))
    with sessions.begin() as s:
        h = rq.latest_evaluation(s, run_id).metrics.get("holdout_scores")
    return np.asarray(h, np.float64) if h else None


def _open(page: Any, server: AppServer, path: str) -> None:
    """Load a page by URL (deep link: a new session), sign in, and wait for the page's run to end."""
    page.goto(f"{server.url}/{path}")
    page.wait_for_function("window.__stRuns >= 1")
    wait_for_app(page)
    sign_in(page, USER)


def _tall(page: Any, name: str) -> None:
    """Screenshot the whole page: Streamlit scrolls inside the app, so grow the viewport."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 100, 6000))})
    wait_for_app(page)
    screenshot(page, name)
    page.set_viewport_size({"width": 1400, "height": 1000})


def _roc_point(page: Any, roc: dict, current: float) -> tuple[int, float, float]:
    """The ROC marker farthest from its neighbours (a click cannot hit another), off the plot's
    edges (an axis or the legend can take the click) and not the current threshold (clicking it
    changes nothing): (index, x, y)."""
    n = len(roc["thresholds"])
    plot = page.locator(".js-plotly-plot", has=page.get_by_text(ROC_TITLE))
    plot.scroll_into_view_if_needed()
    points = plot.locator(".scatterlayer .trace").first.locator("path.point")
    points.first.wait_for()
    assert points.count() == n
    centres = []
    for i in range(n):
        b = points.nth(i).bounding_box()
        centres.append((b["x"] + b["width"] / 2, b["y"] + b["height"] / 2))
    c = np.array(centres)
    gaps = [min((np.hypot(*(c[i] - c[j])) for j in range(n) if j != i), default=99.0) for i in range(n)]
    inner = [i for i in range(n) if 0 < roc["tpr"][i] < 1 and 0 < roc["fpr"][i] < 1
             and not math.isclose(roc["thresholds"][i], current, rel_tol=1e-5)]
    assert inner, roc  # the fixture's evaluation has a point to click
    k = max(inner, key=lambda i: gaps[i])
    return k, float(c[k][0]), float(c[k][1])


def test_click_roc_point_save_and_see_it(app_page: Any, app_server: AppServer) -> None:
    page, run = app_page, app_server.trained.dfr_run
    y, s = _scores(app_server.home, run)
    roc = roc_points(y, s)
    _open(page, app_server, f"thresholds?run={run}")
    assert_no_exception(page)
    current = json.loads(cli("runs", str(run), "--json", home=app_server.home).stdout)["threshold"]["image"]
    k, x, yy = _roc_point(page, roc, current)
    expected = roc["thresholds"][k]
    run_and_wait(page, lambda: page.mouse.click(x, yy))
    assert_no_exception(page)
    shown = float(page.get_by_label("Exact value", exact=True).input_value())
    assert math.isclose(shown, expected, rel_tol=1e-5), (shown, expected)
    assert page.get_by_text("(ROC click)").count() == 1  # "Will save image threshold … (ROC click)"
    _tall(page, "thresholds_roc_clicked")

    enter_text(page, "Note (why this threshold)", "picked on the ROC curve in the browser")
    run_and_wait(page, lambda: page.get_by_role("button", name="Save threshold").click())
    assert_no_exception(page)
    page.get_by_text(re.compile(r"^Saved threshold")).wait_for()
    history = page.locator(  # the table under "History" (a Release section with its own table follows it)
        "xpath=//h3[normalize-space()='History']/ancestor::div[@data-testid='stElementContainer'][1]"
        "/following-sibling::div[.//div[@data-testid='stDataFrame']][1]//div[@data-testid='stDataFrame']")
    history.scroll_into_view_if_needed()
    history.locator("[role=gridcell]").first.wait_for(state="attached")  # glide's a11y table
    first_row = [c.text_content() for c in history.locator("[role=gridcell]").all()[:9]]
    assert first_row[0] == "active" and USER in first_row and "picked on the ROC curve in the browser" in first_row
    assert math.isclose(float(first_row[2]), expected, rel_tol=1e-6)
    _tall(page, "thresholds_saved")

    info = json.loads(cli("runs", str(run), "--json", home=app_server.home).stdout)["threshold"]
    assert math.isclose(info["image"], expected, rel_tol=1e-9)
    assert (info["set_by"], info["note"], info["rule"]) == (USER, "picked on the ROC curve in the browser", "roc")


def test_results_shows_a_heatmap(app_page: Any, app_server: AppServer) -> None:
    page, run = app_page, app_server.trained.dfr_run
    _open(page, app_server, f"results?run={run}")
    assert_no_exception(page)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6")  # plotly loads lazily
    page.get_by_role("tab", name="Images").click()
    heat = page.locator("[data-testid=stColumn]", has=page.get_by_text("Heatmap", exact=True)).locator("img")
    heat.first.wait_for(state="visible")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=heat.first.element_handle())
    box = heat.first.bounding_box()
    assert box["width"] > 100 and box["height"] > 100
    _tall(page, "results_images_heatmap")
    page.get_by_role("tab", name="Metrics & curves").click()
    _tall(page, "results_metrics")


def test_histogram_bar_click_sets_its_left_edge(app_page: Any, app_server: AppServer) -> None:
    from engine.evaluation import decisions as D

    page, run = app_page, app_server.trained.ae_run
    y, s = _scores(app_server.home, run)
    edges = D.score_bins(s, y, _holdout(app_server.home, run))  # the page's bars: from the OK spread
    _open(page, app_server, f"thresholds?run={run}")
    plot = page.locator(".js-plotly-plot", has=page.get_by_text("Scores — click a bar"))
    plot.scroll_into_view_if_needed()
    bars = plot.locator(".barlayer .trace").nth(1).locator("path")  # trace 1 = NOK, one path per bar
    bars.first.wait_for(state="attached")
    boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
    k = next(i for i, b in enumerate(boxes) if b and b["height"] > 4)  # the first non-empty NOK bar
    b = boxes[k]
    run_and_wait(page, lambda: page.mouse.click(b["x"] + b["width"] / 2, b["y"] + b["height"] - 2))
    assert_no_exception(page)
    shown = float(page.get_by_label("Exact value", exact=True).input_value())
    assert math.isclose(shown, edges[k], rel_tol=1e-5), (shown, edges[k], k)
    assert page.get_by_text("(histogram click)").count() == 1
    _tall(page, "thresholds_histogram_clicked")
