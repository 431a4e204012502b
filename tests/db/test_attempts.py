"""Job attempts on SQLite and PostgreSQL: each claim is a new attempt, only the current running
attempt may write, and a job ends together with its run and unfinished evaluation."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db import connect
from db import datasets as dq
from db import jobs as jq
from db import runs as rq
from db.errors import SupersededError


def _train_job(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions.begin() as s:
        ds = dq.get_or_create_dataset(s, "d", None, None)
        run = rq.create_run(s, dataset_id=ds.id, model="ae", preset="ae", config={})
        ev = rq.create_evaluation(s, run.id, ds.id)
        job = jq.enqueue_job(s, "train", {}, run_id=run.id, evaluation_id=ev.id)
        return job.id, run.id, ev.id


def test_each_claim_is_a_new_attempt_and_only_the_current_one_writes(db_url: str) -> None:
    sessions = connect(db_url)
    job_id, run_id, ev_id = _train_job(sessions)
    with sessions.begin() as s:
        job = jq.claim_next_job(s, "host:1")
        first = jq.Attempt(job.id, job.attempt)
    assert first == jq.Attempt(job_id, 1)
    with sessions.begin() as s:
        jq.start_attempt(s, first, pid=123, pgid=123, host="host")
        assert jq.report_progress(s, first, 0.5, "half") is False
    with sessions.begin() as s:  # a reaper: the job fails, its run and evaluation with it
        assert jq.end_job(s, job_id, "failed", "its worker is gone", attempt=1) is not None
    for write in (lambda s: jq.report_progress(s, first, 0.9, "late"), lambda s: jq.heartbeat(s, first),
                  lambda s: jq.finish_attempt(s, first, "succeeded")):
        with pytest.raises(SupersededError, match="attempt 1 was superseded"), jq.fenced(sessions, first) as s:
            write(s)
    with sessions.begin() as s:
        job = jq.get_job(s, job_id)
        assert (job.status, job.progress, job.child_pgid) == ("failed", 0.5, 123)
        assert rq.get_run(s, run_id).status == "failed"
        assert rq.get_evaluation(s, ev_id).status == "failed"
        assert jq.end_job(s, job_id, "succeeded") is None  # an ended job stays ended


def test_a_requeued_job_refuses_the_old_attempt(db_url: str) -> None:
    """An executor that starts a job again (attempt 2) fences out attempt 1 for good."""
    sessions = connect(db_url)
    job_id, _, _ = _train_job(sessions)
    with sessions.begin() as s:
        jq.claim_next_job(s, "a:1")
    with sessions.begin() as s:
        jq.get_job(s, job_id).status = "queued"
        again = jq.claim_next_job(s, "b:2")
        assert again.attempt == 2 and again.child_pid is None
    with pytest.raises(SupersededError, match="attempt 2 is current"), sessions.begin() as s:
        jq.heartbeat(s, jq.Attempt(job_id, 1))
    with sessions.begin() as s:
        assert not jq.end_job(s, job_id, "failed", attempt=1)  # a reaper that saw attempt 1
        assert jq.heartbeat(s, jq.Attempt(job_id, 2)) is False


def test_success_ends_the_run_with_its_training(db_url: str) -> None:
    sessions = connect(db_url)
    job_id, run_id, _ = _train_job(sessions)
    with sessions.begin() as s:
        jq.claim_next_job(s, "a:1")
        assert jq.running_run_ids(s) == {run_id}
    with jq.fenced(sessions, jq.Attempt(job_id, 1)) as s:
        assert rq.get_run(s, run_id).status == "queued"  # the child sets running, never succeeded
        jq.finish_attempt(s, jq.Attempt(job_id, 1), "succeeded")
    with sessions.begin() as s:
        assert rq.get_run(s, run_id).status == "succeeded" and jq.get_job(s, job_id).progress == 1.0
        assert jq.running_run_ids(s) == set()


def test_cancelling_a_queued_training_cancels_its_run_and_evaluation(db_url: str) -> None:
    sessions = connect(db_url)
    job_id, run_id, ev_id = _train_job(sessions)
    with sessions.begin() as s:
        assert jq.request_cancel(s, job_id).status == "cancelled"
    with sessions.begin() as s:
        assert rq.get_run(s, run_id).status == "cancelled"
        assert rq.get_evaluation(s, ev_id).status == "cancelled"
