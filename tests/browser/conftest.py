"""Browser-test infrastructure: a real `streamlit run` server + headless Debian Chromium.

Fixtures (all real: no mocks):
- `app_server` (session): a copy of `trained_workspace` served by `streamlit run
  streamlit_app.py` on 127.0.0.1:<free port>; the app starts its own job worker. At the end
  the server's process group, every worker registered in the workspace's database and every
  process carrying this workspace in PREFILTER_QA_HOME (workers, job children) are stopped.
- `base_url` (session): the server's URL, so `page.goto("/")` works (pytest-base-url).
- `browser_type_launch_args` (session): pytest-playwright launches /usr/bin/chromium
  (PREFILTER_QA_CHROMIUM overrides) with sandbox/GPU/network extras off.
- `app_page`: a fresh page on the app, loaded, signed in as `ENGINEER` through the real sign-in
  form, and idle (`wait_for_app` done).

Accounts (created in the served workspace before the server starts, password `PASSWORD`):
`ENGINEER` ("browser-qa"), `ANNOTATOR` ("browser-tester"), `VIEWER` ("browser-viewer"). A
`page.goto` starts a new Streamlit session, which shows the sign-in form again: `sign_in(page,
name)` fills and submits it like a person would.

Helpers: `wait_for_app(page)` (script idle + websocket connected), `run_and_wait(page, action)`
(do something that triggers a rerun, then wait for that rerun to end), `goto_page(page,
title)` (sidebar navigation), `screenshot(page, name)` (PNG under test-output/screenshots/),
`assert_no_exception(page)`, `sign_in(page, name)`. Waits are on Streamlit's own run state, never
on sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from engine.workspace import DATABASE_URL_ENV, HOME_ENV, IMPORT_ROOTS_ENV
from tests.conftest import REPO, TrainedWorkspace, copy_workspace

CHROMIUM = os.environ.get("PREFILTER_QA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO / "test-output" / "screenshots"
APP_IDLE = "[data-testid=stApp][data-test-script-state=notRunning][data-test-connection-state=CONNECTED]"
DEFAULT_TIMEOUT_MS = 60_000
PASSWORD = "browser test password"
ENGINEER, ANNOTATOR, VIEWER = "browser-qa", "browser-tester", "browser-viewer"

# Counts finished script runs (full reruns and fragment runs): each time the script state
# leaves "running". run_and_wait compares counts before and after an action.
_RUN_COUNTER_JS = """
window.__stRuns = 0;
new MutationObserver((records) => {
  for (const r of records) if (r.oldValue === 'running') window.__stRuns += 1;
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class AppServer:
    url: str
    home: Path  # the served workspace (a private copy of trained_workspace)
    import_root: Path  # an extra folder the app may import from (PREFILTER_QA_IMPORT_ROOTS)
    trained: TrainedWorkspace  # run ids of the original (the copy has the same ids)
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a socket, not waiting on the UI
    raise RuntimeError(f"streamlit did not answer within {timeout_s}s:\n{log.read_text()[-3000:]}")


def _pids_of_workspace(home: Path) -> set[int]:
    """Our processes whose environment names this workspace (app-started workers, job children)."""
    marker = f"{HOME_ENV}={home}".encode()
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            pids.add(int(entry.name))
    return pids


def _registered_worker_pids(home: Path) -> set[int]:
    try:
        con = sqlite3.connect(home / "prefilter-qa.db")
        try:
            return {int(r[0]) for r in con.execute("SELECT pid FROM workers")}
        finally:
            con.close()
    except sqlite3.Error:
        return set()


def _terminate(pids: set[int], grace_s: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)}
            time.sleep(0.1)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def stop_server(proc: subprocess.Popen[bytes], home: Path) -> None:
    """Stop streamlit (its process group), then every worker/job process of this workspace."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    own = _pids_of_workspace(home)
    registered = {p for p in _registered_worker_pids(home) if p in own}  # never a reused pid
    _terminate(own | registered)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory,
               trained_workspace: TrainedWorkspace) -> Iterator[AppServer]:
    base = tmp_path_factory.mktemp("browser")
    home = copy_workspace(trained_workspace.home, base / "workspace")
    import_root = base / "imports"
    import_root.mkdir()
    _add_accounts(home)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = base / "streamlit.log"
    env = os.environ | {HOME_ENV: str(home), IMPORT_ROOTS_ENV: os.pathsep.join([str(home), str(import_root)]),
                        "PREFILTER_QA_THREADS": "1", "PYTHONUNBUFFERED": "1",
                        "PREFILTER_QA_AUTOSTART_WORKER": "1"}  # the app starts its own worker
    env.pop(DATABASE_URL_ENV, None)
    cmd = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.fileWatcherType", "none",
           "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
           "--browser.gatherUsageStats", "false", "--server.runOnSave", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_healthy(url, proc, log)
        yield AppServer(url=url, home=home, import_root=import_root, trained=trained_workspace, log=log)
    finally:
        stop_server(proc, home)
        if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL, None):
            shutil.copy(log, base / "streamlit-failed.log")


def _add_accounts(home: Path) -> None:
    """The accounts the browser tests sign in with (the workspace then has users: no first-start admin)."""
    from engine.services import accounts
    from engine.services.store import open_workspace

    factory = open_workspace(str(home))[1]
    for name, role in ((ENGINEER, "engineer"), (ANNOTATOR, "annotator"), (VIEWER, "viewer")):
        accounts.add_user(factory, accounts.local_actor("browser tests"), name, role, PASSWORD, must_change=False)


@pytest.fixture(scope="session")
def base_url(app_server: AppServer) -> str:
    return app_server.url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture
def app_page(page: Any, app_server: AppServer) -> Any:
    """A page showing the app's default page, idle; 60 s default timeouts, 1400×1000 viewport."""
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.add_init_script(_RUN_COUNTER_JS)
    page.goto(app_server.url + "/")
    page.wait_for_function(f"window.__stRuns >= 1 && document.querySelector('{APP_IDLE}')")
    sign_in(page, ENGINEER)
    return page


def sign_in(page: Any, name: str, password: str = PASSWORD, timeout_ms: float = DEFAULT_TIMEOUT_MS) -> None:
    """Sign in through the real form (shown on any page without a session) and wait until the
    page the address names has rendered with the account in the sidebar."""
    page.get_by_label("User name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    run_and_wait(page, page.get_by_role("button", name="Sign in", exact=True).click, timeout_ms)
    page.locator("[data-testid=stSidebar]").get_by_text(name, exact=True).wait_for(timeout=timeout_ms)
    wait_for_app(page, timeout_ms)


def wait_for_app(page: Any, timeout_ms: float = DEFAULT_TIMEOUT_MS) -> None:
    """Wait until the script has finished its run and the websocket is connected."""
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)


def run_and_wait(page: Any, action: Callable[[], Any], timeout_ms: float = DEFAULT_TIMEOUT_MS) -> None:
    """Do `action` (a click, a fill...), then wait until the rerun it caused has finished.

    Needs the run counter `app_page` installs; an action that causes no rerun times out.
    """
    before = page.evaluate("window.__stRuns")
    action()
    _wait_for_run_after(page, before, timeout_ms)


def _wait_for_run_after(page: Any, before: int, timeout_ms: float) -> None:
    """Wait until a run has finished since the run counter read `before` and the app is idle."""
    page.wait_for_function(f"(before) => window.__stRuns > before && document.querySelector('{APP_IDLE}')",
                           arg=before, timeout=timeout_ms)


def press_shortcut(page: Any, key: str, shows: Any, tries: int = 3, settle_ms: float = 15_000) -> None:
    """Press a key bound with Streamlit's `shortcut=` until `shows` (a locator) is visible.

    Streamlit (de)registers a button's key binding when the button (re)mounts, which can lag the
    end of the previous run on a loaded machine: a key pressed in that gap does nothing at all,
    even while some other run (a component's value, the previous key's rerun) is under way. So
    the test names what the key must bring up; when it has not appeared `settle_ms` after a
    press and the app is idle again, the key is pressed again, up to `tries` times. A press that
    acted is not repeated once its outcome shows, so a double step still fails the test.
    """
    for _ in range(tries):
        page.keyboard.press(key)
        try:
            shows.wait_for(state="visible", timeout=settle_ms)
        except PlaywrightTimeoutError:
            pass  # judged below, once a run the press did start has ended
        wait_for_app(page)
        if shows.is_visible():
            return
    raise AssertionError(f"key {key!r} pressed {tries} times; what it should show never appeared")


def enter_text(page: Any, label: str, value: str, timeout_ms: float = DEFAULT_TIMEOUT_MS) -> None:
    """Type `value` into the text or number input labelled `label`, apply it with Enter (one rerun).

    Enter is pressed only once the widget shows "Press Enter to apply": before that, a loaded
    machine can deliver Enter before React has registered the typed value, and Streamlit then
    sees nothing to apply (no rerun; the wait times out).
    """
    box = page.get_by_label(label, exact=True)
    if box.input_value() == value:
        return  # unchanged: Enter would cause no rerun
    box.fill(value)
    widget = box.locator("xpath=ancestor::div[@data-testid='stTextInput' or @data-testid='stNumberInput'][1]")
    widget.get_by_test_id("InputInstructions").get_by_text("Press Enter").wait_for(timeout=timeout_ms)
    run_and_wait(page, lambda: box.press("Enter"), timeout_ms)


def goto_page(page: Any, title: str, timeout_ms: float = DEFAULT_TIMEOUT_MS) -> None:
    """Open a page through the sidebar navigation and wait until it has rendered."""
    link = page.locator("[data-testid=stSidebarNavLink]", has_text=title).first
    run_and_wait(page, link.click, timeout_ms)
    page.wait_for_selector(f"[data-testid=stSidebarNavLink][aria-current=page]:has-text('{title}')",
                           state="attached", timeout=timeout_ms)
    wait_for_app(page, timeout_ms)


def screenshot(page: Any, name: str, max_height: int = 5000) -> Path:
    """Save a PNG of the whole page under test-output/screenshots/<name>.png.

    Streamlit scrolls inside its main block, so a "full page" screenshot would show only the
    viewport: the viewport is stretched to the content's height for the shot, then restored.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size or {"width": 1400, "height": 1000}
    height = page.evaluate("""() => { const m = document.querySelector('[data-testid=stMain]');
                                      return m ? m.scrollHeight : document.body.scrollHeight; }""")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height), max_height))})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path


def assert_no_exception(page: Any) -> None:
    """Fail with the exception's text if the page shows a Streamlit exception box."""
    boxes = page.locator("[data-testid=stException]")
    if boxes.count():
        raise AssertionError("the page shows an exception:\n" + boxes.first.inner_text())
