"""Helpers for AppTests of the dashboard pages (through the real router, so page links work).

Pages need a signed-in session: `open_page` signs in as a fresh account of the given role
(`signed_in`), through the same sign-in function the form calls, and hands the session's token
to the app the way the form does (st.session_state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

ROUTER = str(REPO / "streamlit_app.py")
TEST_PASSWORD = "correct horse battery staple"


def signed_in(role: str = "admin", name: str | None = None) -> dict[str, Any]:
    """Session state of a browser tab signed in as `name` (default "test-<role>", created with
    `role` if missing) in the workspace of PREFILTER_QA_HOME."""
    from dashboard.state import AUTH_TOKEN
    from engine.services import accounts

    factory = sessions()
    name = name or f"test-{role}"
    if not any(u["name"] == name for u in accounts.list_users(factory)):
        accounts.add_user(factory, accounts.local_actor("test setup"), name, role, TEST_PASSWORD, must_change=False)
    return {AUTH_TOKEN: accounts.sign_in(factory, name, TEST_PASSWORD).token}


def open_page(page: str, *, query: dict[str, str] | None = None, session: dict[str, Any] | None = None,
              timeout: float = 60, role: str | None = "admin", user: str | None = None) -> AppTest:
    """Run the router showing `dashboard/pages/<page>.py` signed in as `user` (default
    "test-<role>") with `role` (None: not signed in); fails on any exception in the page."""
    at = AppTest.from_file(ROUTER, default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in ((signed_in(role, user) if role else {}) | (session or {})).items():
        at.session_state[k] = v
    at.switch_page(f"dashboard/pages/{page}.py")
    at.run()
    assert_ok(at)
    return at


def assert_ok(at: AppTest) -> None:
    assert not at.exception, "\n".join(e.message + "\n" + "\n".join(e.stack_trace) for e in at.exception)


def texts(at: AppTest) -> str:
    """All markdown, captions, alerts, headings and toasts of the last run, one per line."""
    parts: list[str] = []
    for kind in ("title", "subheader", "markdown", "caption", "success", "info", "warning", "error", "toast"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def import_tiny(tiny_demo: Path, name: str = "tiny") -> dict[str, Any]:
    """Import the tiny demo into the current workspace (PREFILTER_QA_HOME) like the CLI does."""
    from engine.cli.commands import import_folder

    return import_folder(tiny_demo, name)


def sessions() -> Any:
    from engine.services.store import open_workspace

    return open_workspace()[1]
