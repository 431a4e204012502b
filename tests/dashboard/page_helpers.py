"""Helpers for AppTests of the dashboard pages (through the real router, so page links work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

ROUTER = str(REPO / "streamlit_app.py")


def open_page(page: str, *, query: dict[str, str] | None = None, session: dict[str, Any] | None = None,
              timeout: float = 60) -> AppTest:
    """Run the router showing `dashboard/pages/<page>.py`; fails on any exception in the page."""
    at = AppTest.from_file(ROUTER, default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    for k, v in (session or {}).items():
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
