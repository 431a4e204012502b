"""In a real browser: release a run from the Thresholds page, follow the job to a finished bundle, and
download its zip — the bundle the line scorer serves from."""

from __future__ import annotations

import io
import json
import time
import zipfile
from typing import Any

import pytest

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

pytestmark = pytest.mark.browser


def _release_status(home: Any, run_id: int) -> tuple[str, str | None]:
    from db import releases as relq
    from engine.services.store import open_workspace

    _, sessions = open_workspace(str(home))
    with sessions.begin() as s:
        rel = relq.list_releases(s, run_id)[0]
        return rel.status, rel.error


def test_release_from_the_thresholds_page(app_page: Any, app_server: AppServer) -> None:
    page, run = app_page, app_server.trained.dfr_run
    page.goto(f"{app_server.url}/thresholds?run={run}")
    page.wait_for_function("window.__stRuns >= 1")
    wait_for_app(page)
    sign_in(page, ENGINEER)
    assert_no_exception(page)
    page.get_by_text("Release to the line", exact=True).first.scroll_into_view_if_needed()
    enter_text(page, "Release note", "line 3, from the browser")
    run_and_wait(page, lambda: page.get_by_role("button", name="Release to the line").click())
    assert_no_exception(page)
    page.get_by_text("queued as job").wait_for()
    deadline = time.monotonic() + 600  # the app's own worker exports and checks the bundle
    while (status := _release_status(app_server.home, run))[0] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, f"release still {status[0]} after 10 minutes"
        time.sleep(2)
    assert status[0] == "succeeded", status[1]
    page.goto(f"{app_server.url}/thresholds?run={run}")  # a new session: the deep link picks the run again
    page.wait_for_function("window.__stRuns >= 1")
    wait_for_app(page)
    sign_in(page, ENGINEER)
    button = page.get_by_role("button", name="Download zip")
    button.scroll_into_view_if_needed()
    screenshot(page, "thresholds_release")
    with page.expect_download() as info:
        button.click()
    data = info.value.path().read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        meta = json.loads(zf.read(next(n for n in names if n.endswith("/bundle.json"))))
    assert any(n.endswith("/model.onnx") for n in names) and any(n.endswith("/golden/golden.json") for n in names)
    assert meta["run_id"] == run and meta["threshold"]["image"] is not None
