"""What a training job tells its user: its log and its progress messages (the trained workspace's jobs)."""

from __future__ import annotations

from pathlib import Path

from db import connect
from db import jobs as jq


def test_job_log_says_what_happens_without_noise(trained_workspace) -> None:
    sessions = connect(f"sqlite:///{trained_workspace.home / 'prefilter-qa.db'}")
    with sessions.begin() as s:
        job = next(j for j in jq.list_jobs(s) if j.run_id == trained_workspace.dfr_run and j.kind == "train")
        log, message = Path(job.log_path).read_text(), job.message
    assert "alembic" not in log.lower()  # the schema check is not the job's business
    # the tiny run asks for random backbone weights: said once (training), not again when the
    # evaluation rebuilds the model from its checkpoint
    assert log.count("with random weights (asked for explicitly)") == 1
    assert "OK images (" in log and "held out for the OK-only threshold" in log and "test images" in log
    assert "loss nan" not in log and "loss nan" not in (message or "")
