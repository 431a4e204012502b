"""In a real browser: Datasets shows thumbnails and an image with its mask; a DFR training launched
from Train is followed on Jobs until it succeeds (the app's own worker runs it)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import AppServer, assert_no_exception, enter_text, goto_page, run_and_wait, screenshot

TRAIN_TIMEOUT_MS = 420_000  # tiny DFR on two CPU cores takes well under a minute; be generous
# The tiny settings the session fixture trains with (tests/conftest.py TINY_DFR), as form labels.
MAIN_FIELDS = {"Input size (px)": "64", "Epochs": "1", "Feature map size": "16", "Batch size": "4"}
ADVANCED_FIELDS = {"Backbone weights": "random", "Loader workers": "0", "PCA samples per image": "64",
                   "Feature cache (GB)": "0"}


def _all_images_loaded(page: Any, at_least: int) -> None:
    page.wait_for_function(
        """(n) => { const imgs = Array.from(document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img'));
                    return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=at_least)


def _job_status(app_server: AppServer, job_id: int) -> str:
    con = sqlite3.connect(app_server.home / "prefilter-qa.db")
    try:
        return con.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    finally:
        con.close()


@pytest.mark.browser
def test_datasets_then_train_dfr_and_watch_it_succeed(app_page: Any, app_server: AppServer) -> None:
    page = app_page
    screenshot(page, "overview")
    assert_no_exception(page)

    goto_page(page, "Datasets")
    _all_images_loaded(page, 20)  # the tiny demo: 20 thumbnails on one page, from the disk cache
    expect(page.get_by_text(re.compile(r"Page 1 of \d+ · 1–\d+ of \d+"))).to_be_visible()
    screenshot(page, "datasets")
    nok_tile = page.get_by_role("button", name="burn_0001.png")  # a NOK test image with its mask
    run_and_wait(page, nok_tile.click)
    drawer = page.get_by_role("dialog")
    expect(drawer).to_be_visible()
    expect(drawer.get_by_text("mask in red")).to_be_visible()
    expect(drawer.locator("[data-testid=stImage] img")).to_have_count(1)
    screenshot(page, "datasets-detail")
    run_and_wait(page, lambda: page.keyboard.press("Escape"))
    assert_no_exception(page)

    goto_page(page, "Train")
    expect(page.get_by_label("DFR (deep feature reconstruction)")).to_be_checked()
    for label, value in MAIN_FIELDS.items():
        enter_text(page, label, value)
    page.get_by_text("Advanced settings").click()  # opens in the browser, no rerun
    expect(page.get_by_label("Backbone weights", exact=True)).to_be_visible()
    for label, value in ADVANCED_FIELDS.items():
        enter_text(page, label, value)
    expect(page.get_by_text("backbone_weights=random")).to_be_visible()
    screenshot(page, "train")
    run_and_wait(page, lambda: page.get_by_role("button", name="Launch training").click())
    assert_no_exception(page)
    queued = page.get_by_text("Queued job")
    expect(queued).to_be_visible()
    job_id = int(queued.inner_text().split("job")[1].split(":")[0].strip())
    screenshot(page, "train-launched")

    run_and_wait(page, lambda: page.get_by_text(f"Follow job {job_id} on the Jobs page").click())
    expect(page.get_by_text(f"Job {job_id} · train").first).to_be_visible()
    screenshot(page, "jobs-running")
    # The page follows the job by itself (a fragment polling the database): no clicks, no reloads.
    expect(page.get_by_role("button", name="Open results")).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(page.locator("h4", has_text=f"Job {job_id} · train")).to_contain_text("succeeded")
    assert _job_status(app_server, job_id) == "succeeded"
    assert_no_exception(page)
    screenshot(page, "jobs-succeeded")
