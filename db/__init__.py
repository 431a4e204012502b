"""Database layer: SQLAlchemy 2 models, session factory, migrations, query functions.

Query functions take the session first and never commit: the caller owns
`with Session.begin():`. This package imports nothing else of ours.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.session import make_engine, make_sessionmaker


def connect(url: str, *, migrate: bool = True) -> sessionmaker[Session]:
    """A session factory for `url`, after bringing the schema up to date."""
    if migrate:
        upgrade(url)
    return make_sessionmaker(make_engine(url))
