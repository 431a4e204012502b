"""Looking up runs for the commands that need a trained model."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import runs as rq
from db.errors import NotFoundError
from db.models import JobStatus, Run
from engine.errors import UserError


def trained_run(session: Session, run_id: int) -> Run:
    """The run, if it exists and has a trained model; else a UserError saying which is missing."""
    try:
        run = rq.get_run(session, run_id)
    except NotFoundError:
        raise UserError(f"no run {run_id}; see `prefilter-qa runs`") from None
    if run.status != JobStatus.SUCCEEDED or not run.checkpoint:
        raise UserError(f"run {run_id} has no trained model (status {run.status})")
    return run
