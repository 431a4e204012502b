"""In a real browser: the report downloads and the score map on Results, the review-band queue on
Review, and a keyboard shortcut (Streamlit's `shortcut=`) in the Datasets image panel."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    ENGINEER,
    AppServer,
    assert_no_exception,
    goto_page,
    press_shortcut,
    run_and_wait,
    screenshot,
    sign_in,
    wait_for_app,
)

pytestmark = pytest.mark.browser


def _open(page: Any, server: AppServer, path: str) -> None:
    page.goto(f"{server.url}/{path}")
    page.wait_for_function("window.__stRuns >= 1")
    wait_for_app(page)
    sign_in(page, ENGINEER)


def _sessions(home: Path) -> Any:
    from engine.services.store import open_workspace

    return open_workspace(str(home))[1]


def test_results_report_downloads_and_the_score_map(app_page: Any, app_server: AppServer, tmp_path: Path) -> None:
    from pypdf import PdfReader

    from db import runs as rq

    page, run = app_page, app_server.trained.dfr_run
    with _sessions(app_server.home).begin() as s:
        ev = rq.latest_evaluation(s, run)
        n, ev_id = len(rq.evaluation_scores(s, ev.id)), ev.id
    _open(page, app_server, f"results?run={run}")
    assert_no_exception(page)
    files = {}
    for label in ("CSV report", "PDF report"):
        with page.expect_download() as dl:
            page.get_by_role("button", name=label).click()
        files[label] = tmp_path / dl.value.suggested_filename
        dl.value.save_as(files[label])
    assert files["CSV report"].name == f"prefilter-qa-run{run}-evaluation{ev_id}.csv"
    rows = list(csv.DictReader(io.StringIO(files["CSV report"].read_text())))
    assert len(rows) == n and {"verdict", "mask_pixels", "predicted_pixels"} <= set(rows[0])
    reader = PdfReader(str(files["PDF report"]))
    assert len(reader.pages) >= 3 and f"run #{run}" in reader.pages[0].extract_text()
    assert_no_exception(page)

    page.get_by_role("tab", name="Images").click()
    panel = page.locator("[data-testid=stColumn]", has=page.get_by_text("Score map", exact=True))
    img = panel.locator("img").first
    img.wait_for(state="visible")
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    expect(page.get_by_text(re.compile("the map the image score was taken from"))).to_be_visible()
    screenshot(page, "results_score_map")


def test_review_band_images_have_their_own_queue(app_page: Any, app_server: AppServer) -> None:
    from db import decisions as tq
    from db import runs as rq
    from db.models import Threshold

    page, run = app_page, app_server.trained.ae_run
    with _sessions(app_server.home).begin() as s:
        scores = np.array(sorted(sc.score for sc in rq.evaluation_scores(s, rq.latest_evaluation(s, run).id)))
        lo, mid, hi = (float(np.quantile(scores, q)) for q in (0.2, 0.5, 0.8))
        cur = tq.active_threshold(s, run)
        s.add(Threshold(run_id=run, parent_id=cur.id if cur else None, image_threshold=mid, review_low=lo,
                        review_high=hi, rule="manual", set_by=ENGINEER, note="band for the browser test"))
    n_band = int(np.sum((scores >= lo) & (scores < hi)))
    _open(page, app_server, f"review?run={run}")
    assert_no_exception(page)
    queue = page.get_by_text(re.compile(rf"In the review band — a person decides \({n_band}, "))
    run_and_wait(page, queue.click)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(r"^REVIEW · "))).to_have_count(n_band)
    expect(page.get_by_text("scored inside the review band", exact=False)).to_be_visible()
    screenshot(page, "review_band_queue")


def test_arrow_keys_step_through_the_datasets_image_panel(app_page: Any, app_server: AppServer) -> None:
    page = app_page
    goto_page(page, "Datasets")
    tiles = page.locator("[data-testid=stButton] button", has_text=re.compile(r"\.png$"))
    tiles.first.wait_for()
    first, second = tiles.nth(0).inner_text().strip(), tiles.nth(1).inner_text().strip()
    run_and_wait(page, tiles.first.click)
    drawer = page.get_by_role("dialog")
    expect(drawer.get_by_text(first, exact=True).first).to_be_visible()
    press_shortcut(page, "ArrowRight", shows=page.get_by_role("dialog").get_by_text(second, exact=True).first)
    assert_no_exception(page)
    screenshot(page, "datasets_arrow_key")
    press_shortcut(page, "ArrowLeft", shows=page.get_by_role("dialog").get_by_text(first, exact=True).first)


def test_annotate_keys_step_images_and_pick_tools(app_page: Any, app_server: AppServer) -> None:
    """CVAT's keys on Annotate: F next image, D previous, E eraser (Streamlit's `shortcut=`)."""
    page = app_page
    goto_page(page, "Annotate")
    expect(page.get_by_role("button", name="Save mask")).to_be_visible()
    counter = page.get_by_text(re.compile(r"^\d+ / \d+$"))
    total = int(counter.inner_text().split("/")[1])
    assert counter.inner_text().startswith("1 /") and total > 1
    wait_for_app(page)
    press_shortcut(page, "f", shows=page.get_by_text(f"2 / {total}", exact=True))
    assert_no_exception(page)
    press_shortcut(page, "e", shows=page.get_by_text("Eraser shape"))  # only the eraser has a shape picker
    screenshot(page, "annotate_keys")
    press_shortcut(page, "d", shows=page.get_by_text(f"1 / {total}", exact=True))
