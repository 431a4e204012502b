"""The job queue on SQLite and PostgreSQL: exactly-once claims, cancel, stale reaping."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from db import connect
from db import jobs as jq
from db.models import utcnow

REPO = Path(__file__).resolve().parents[2]


def test_four_workers_claim_each_job_exactly_once(db_url: str) -> None:
    sessions = connect(db_url)
    with sessions.begin() as s:
        ids = [jq.enqueue_job(s, "train", {"n": i}).id for i in range(120)]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.db.claimer", db_url, f"w{k}"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    claimed = [i for out, _ in outs for i in json.loads(out)]
    assert sorted(claimed) == ids  # every job once, none twice
    with sessions.begin() as s:
        assert {j.status for j in jq.list_jobs(s, limit=500)} == {"succeeded"}
        assert len({j.worker for j in jq.list_jobs(s, limit=500)}) >= 2  # they really shared the work


def test_cancel_queued_and_running(db_url: str) -> None:
    sessions = connect(db_url)
    with sessions.begin() as s:
        a = jq.enqueue_job(s, "train", {}).id
        b = jq.enqueue_job(s, "train", {}).id
    with sessions.begin() as s:
        assert jq.claim_next_job(s, "w").id == a
    with sessions.begin() as s:
        assert jq.request_cancel(s, b).status == "cancelled"  # queued: at once
        running = jq.request_cancel(s, a)
        assert running.status == "running" and running.cancel_requested
    with sessions.begin() as s:
        assert jq.heartbeat(s, jq.Attempt(a, 1)) is True  # the worker sees the request
        assert jq.claim_next_job(s, "w") is None


def test_stale_running_jobs(db_url: str) -> None:
    sessions = connect(db_url)
    with sessions.begin() as s:
        job_id = jq.enqueue_job(s, "evaluate", {}).id
    with sessions.begin() as s:
        job = jq.claim_next_job(s, "elsewhere:1")
        job.heartbeat_at = utcnow() - timedelta(minutes=5)
    with sessions.begin() as s:
        stale = jq.stale_running_jobs(s, timedelta(seconds=60))
        assert [j.id for j in stale] == [job_id]
        assert jq.finish_job(s, job_id, "failed", "worker died")
        assert not jq.finish_job(s, job_id, "succeeded")  # an ended job stays ended
