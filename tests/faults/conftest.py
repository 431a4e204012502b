"""Fault-injection tests: database URLs (SQLite always, PostgreSQL when CI provides one) and the
table of kill points and their outcomes, printed after the session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PG_ENV = "PREFILTER_QA_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The test PostgreSQL, emptied; skips without one (fails under CI, as tests/db does)."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{PG_ENV} is not set under CI=true: PostgreSQL tests must run")
        pytest.skip(f"{PG_ENV} not set")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A real SQLite file, and PostgreSQL when PREFILTER_QA_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return postgres_url()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    module = sys.modules.get("tests.faults.test_kill_points")  # only when the kill tests ran
    if module is None or not module.KILL_TABLE:
        return
    table = module.KILL_TABLE
    cols = list(table[0])
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in cols}
    held = sum(r["outcome"] == "held" for r in table)
    terminalreporter.write_sep("-", f"kill points: {len(table)} tried, {held} held")
    terminalreporter.write_line("  ".join(c.ljust(widths[c]) for c in cols))
    for row in table:
        terminalreporter.write_line("  ".join(row[c].ljust(widths[c]) for c in cols))
