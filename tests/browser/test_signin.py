"""Sign-in on the real server: without it no page shows data or offers a control; with it the
role decides what can be changed."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    APP_IDLE,
    DEFAULT_TIMEOUT_MS,
    PASSWORD,
    VIEWER,
    AppServer,
    assert_no_exception,
    run_and_wait,
    screenshot,
    sign_in,
    wait_for_app,
)

pytestmark = pytest.mark.browser
PATHS = ("", "datasets?dataset=tiny", "annotate", "train", "jobs", "results", "thresholds", "review", "audit",
         "users")


def _fresh(page: Any, url: str) -> None:
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function(f"window.__stRuns >= 1 && document.querySelector('{APP_IDLE}')")


def test_without_signing_in_no_page_shows_data_or_a_control(app_page: Any, app_server: AppServer) -> None:
    page = app_page
    for path in PATHS:
        _fresh(page, f"{app_server.url}/{path}")
        assert_no_exception(page)
        expect(page.get_by_label("User name", exact=True)).to_be_visible()
        main = page.locator("[data-testid=stMain]").inner_text()
        assert "tiny" not in main and "Run " not in main, (path, main)
        assert page.locator("[data-testid=stSidebarNavLink]").count() == 0, path
        assert page.locator("[data-testid=stDataFrame], [data-testid=stImage], canvas").count() == 0, path
        buttons = [b.split()[-2:] for b in page.locator("button:visible").all_inner_texts() if b.strip()]
        # nothing else to press (the password field's show/hide eye aside): no write is possible
        assert [b for b in buttons if b != ["visibility"]] == [["Sign", "in"]], (path, buttons)
        inputs = page.locator("input:visible").count()
        assert inputs == 2, (path, inputs)  # user name and password
    screenshot(page, "signin-form")


def test_wrong_password_then_a_viewer_cannot_save_a_threshold(app_page: Any, app_server: AppServer) -> None:
    page, run = app_page, app_server.trained.dfr_run
    _fresh(page, f"{app_server.url}/thresholds?run={run}")
    page.get_by_label("User name", exact=True).fill(VIEWER)
    page.get_by_label("Password", exact=True).fill("not the password")
    run_and_wait(page, page.get_by_role("button", name="Sign in", exact=True).click)
    expect(page.get_by_text("wrong user name or password")).to_be_visible()
    sign_in(page, VIEWER, PASSWORD)
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_role("heading", name="Thresholds")).to_be_visible()  # the deep link survived sign-in
    expect(page.get_by_role("button", name="Save threshold")).to_be_disabled()
    expect(page.get_by_text("cannot save thresholds")).to_be_visible()
    nav = [t.split()[-1] for t in page.locator("[data-testid=stSidebarNavLink]").all_inner_texts()]
    assert "Audit" not in nav and "Users" not in nav and "Thresholds" in nav, nav
    screenshot(page, "thresholds-viewer")
