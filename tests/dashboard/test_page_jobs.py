"""AppTests of the Jobs page on a copy of the trained workspace (two succeeded train jobs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.state import SELECTED_RUN
from db import jobs as jq
from db.auth import system_actor
from engine.jobs.queue import submit_train
from tests.conftest import TrainedWorkspace, copy_workspace
from tests.dashboard.page_helpers import assert_ok, open_page, sessions, texts


@pytest.fixture
def ws(trained_workspace: TrainedWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TrainedWorkspace:
    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    monkeypatch.setenv("PREFILTER_QA_HOME", str(home))
    return TrainedWorkspace(home, trained_workspace.dataset, trained_workspace.ae_run, trained_workspace.dfr_run)


def _queue(created_by: str = "test") -> int:
    with sessions().begin() as s:
        job, _ = submit_train(s, dataset="tiny", model="dfr", overrides={"epochs": "1"}, actor=system_actor(created_by))
        return job.id


def _click(at, label: str):  # type: ignore[no-untyped-def]
    labels = [b.label for b in at.button]
    assert label in labels, labels
    at.button[labels.index(label)].click().run()
    assert_ok(at)
    return at


def test_lists_every_job_with_log_tail_and_results_link(ws: TrainedWorkspace) -> None:
    at = open_page("jobs")
    table = at.dataframe[0].value
    assert list(table["Status"]) == ["succeeded", "succeeded"] and list(table["Progress"]) == [1.0, 1.0]
    assert "Running and queued (0)" in texts(at)
    logs = [c.value for c in at.code]
    assert logs and "job" in logs[0]  # the newest job's log tail
    _click(at, "Open results")
    assert at.session_state[SELECTED_RUN] in (ws.ae_run, ws.dfr_run)


def test_running_job_progress_and_eta_follow_the_database(ws: TrainedWorkspace) -> None:
    job_id = _queue()
    with sessions().begin() as s:
        jq.claim_next_job(s, "testhost:1")
        jq.report_progress(s, jq.Attempt(job_id, 1), 0.4, "epoch 2/5", eta_s=90)
    at = open_page("jobs")
    bars = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("40% · epoch 2/5 · about 1 min") for t in bars), bars
    with sessions().begin() as s:
        jq.report_progress(s, jq.Attempt(job_id, 1), 0.8, "epoch 4/5", eta_s=20)
    at.run()  # the fragment's timer does not fire in AppTest: rerun by hand
    bars = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("80% · epoch 4/5 · about") for t in bars), bars
    _click(at, "Cancel")
    with sessions().begin() as s:
        assert jq.get_job(s, job_id).cancel_requested  # its worker kills it


def test_cancel_a_queued_job_then_retry_it(ws: TrainedWorkspace) -> None:
    job_id = _queue(created_by="cli")
    at = open_page("jobs", user="erika")
    assert "Running and queued (1)" in texts(at) and "waiting for a worker" in " ".join(
        p.proto.text for p in at.get("progress"))
    _click(at, "Cancel")
    with sessions().begin() as s:
        assert jq.get_job(s, job_id).status == "cancelled"
    assert f"Job {job_id} cancelled." in texts(at)
    _click(at, "Retry")  # the detail shows the cancelled job (it was the one selected)
    with sessions().begin() as s:
        new = jq.list_jobs(s)[0]
    assert (new.id, new.status, new.retry_of, new.created_by) == (job_id + 1, "queued", job_id, "erika")


def test_failed_job_shows_its_error(ws: TrainedWorkspace) -> None:
    job_id = _queue()
    with sessions().begin() as s:
        jq.claim_next_job(s, "testhost:1")
        jq.finish_job(s, job_id, "failed", "the job's process was killed by SIGKILL")
    at = open_page("jobs", query={"job": str(job_id)})
    assert any("killed by SIGKILL" in e.value for e in at.error)
    assert "Retry" in [b.label for b in at.button]


def test_job_details_follow_the_running_job_unless_one_was_picked(ws: TrainedWorkspace) -> None:
    """Details showed job 1 while job 2 ran: the page had made every shown job "the chosen one"."""
    at = open_page("jobs")
    first = at.selectbox[0].value  # no job runs: the newest
    job_id = _queue()
    with sessions().begin() as s:
        jq.get_job(s, job_id).status = "running"
    at.run()
    assert_ok(at)
    assert at.selectbox[0].value == job_id != first  # the details moved on to the running job
    at.selectbox[0].set_value(first).run()  # picked by hand: it stays
    at.run()
    assert at.selectbox[0].value == first
