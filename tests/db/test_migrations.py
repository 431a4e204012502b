"""Schema migrations: from nothing, and from the first revision with data kept in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from db import connect
from db import datasets as dq
from db.migrate import current_revision, head_revision, upgrade
from db.models import Base


def _schema_diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    return diff


def test_upgrade_from_empty_matches_models(db_url: str) -> None:
    upgrade(db_url)
    assert current_revision(db_url) == head_revision()
    assert _schema_diff(db_url) == []
    upgrade(db_url)  # idempotent
    assert current_revision(db_url) == head_revision()


def test_upgrade_from_first_revision_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    con = sqlite3.connect(tmp_path / "old.db")
    with con:
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("INSERT INTO datasets (id, name, created_at) VALUES (1, 'old', '2026-01-01 00:00:00')")
        con.execute(
            "INSERT INTO images (id, dataset_id, path, rel_path, sha256, size_bytes, width, height, mode,"
            " split, label, tags, source, created_at, updated_at) VALUES (1, 1, '/x/a.png', 'a.png',"
            " 'ab', 10, 4, 4, 'RGB', 'train', 'ok', '[]', 'import', '2026-01-01', '2026-01-01')")
        con.execute("INSERT INTO masks (image_id, version, source, author, created_at, pixels)"
                    " VALUES (1, 1, 'imported', 'x', '2026-01-01', 3)")
        con.execute("INSERT INTO jobs (id, kind, status, payload, progress, cancel_requested, created_by,"
                    " created_at) VALUES (1, 'train', 'succeeded', '{}', 1.0, 0, 'x', '2026-01-01')")
    con.close()
    assert current_revision(url) == "0001"

    sessions = connect(url)  # upgrades to head in place
    assert current_revision(url) == head_revision() != "0001"
    assert _schema_diff(url) == []
    with sessions.begin() as s:
        counts = {c.name: c for c in dq.dataset_counts(s)}
        assert counts["old"].train_ok == 1
        # the batch migration of `jobs` must not have cascaded into other tables
        assert dq.get_image(s, 1).masks[0].pixels == 3
        from db.jobs import get_job
        assert get_job(s, 1).status == "succeeded" and get_job(s, 1).device is None
