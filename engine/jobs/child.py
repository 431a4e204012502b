"""Entry point of a job's child process: `python -m engine.jobs.child JOB_ID`.

Its stdout/stderr is the job's log file. It ends the job succeeded or failed itself; if it dies
instead, its worker records why.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from db.models import JobStatus
from engine.errors import UserError
from engine.jobs import tasks
from engine.services.store import open_workspace

log = logging.getLogger("prefilter_qa.job")
THREADS_ENV = "PREFILTER_QA_THREADS"


def usable_cores() -> int:
    """The cores this process may use (affinity / cgroup-aware), overridable by env."""
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def main(job_id: int) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check says nothing worth a job log
    import torch

    torch.set_num_threads(usable_cores())
    ws, sessions = open_workspace()
    from db import jobs as jq
    from engine.jobs.worker import fail_job

    with sessions.begin() as s:
        kind = jq.get_job(s, job_id).kind
    log.info("job %s (%s) in pid %s with %d threads", job_id, kind, os.getpid(), torch.get_num_threads())
    try:
        if kind == "train":
            tasks.run_train(ws, sessions, job_id)
        elif kind == "evaluate":
            tasks.run_evaluate(ws, sessions, job_id)
        else:
            raise UserError(f"unknown job kind {kind!r}")
    except Exception as exc:  # the job fails; the log keeps the traceback
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        with sessions.begin() as s:
            fail_job(s, job_id, reason)
        return 1
    with sessions.begin() as s:
        jq.finish_job(s, job_id, JobStatus.SUCCEEDED)
    log.info("job %s succeeded", job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
