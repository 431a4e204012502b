"""One session factory per database URL per process, schema brought up to date on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

import db
from engine.workspace import Workspace, get_workspace


@lru_cache(maxsize=8)
def _sessions(url: str) -> sessionmaker[Session]:
    return db.connect(url)


def open_workspace(home: str | None = None) -> tuple[Workspace, sessionmaker[Session]]:
    """The workspace (folders created) and its session factory."""
    ws = get_workspace(home).ensure()
    return ws, _sessions(ws.database_url)
