"""Entry point of a job's child process: `python -m engine.jobs.child JOB_ID ATTEMPT`.

Its stdout/stderr is the job's log file. It records where it runs, heartbeats its attempt
(engine.jobs.lease) and ends the job succeeded or failed itself; if it dies instead, whichever
executor started it records why. Every write carries its attempt: once the attempt is
superseded (the job was failed or cancelled meanwhile), the child stops without storing anything.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import traceback

from db import jobs as jq
from db.errors import SupersededError
from engine.errors import UserError
from engine.jobs import tasks
from engine.jobs.lease import EXIT_SUPERSEDED, Lease
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


def main(job_id: int, attempt_number: int) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check says nothing worth a job log
    import torch

    torch.set_num_threads(usable_cores())
    ws, sessions = open_workspace()
    from engine.jobs.worker import fail_job

    attempt = jq.Attempt(job_id, attempt_number)
    try:
        with sessions.begin() as s:
            kind = jq.start_attempt(s, attempt, pid=os.getpid(), pgid=os.getpgid(0),
                                    host=socket.gethostname()).kind
    except SupersededError as exc:
        log.error("%s: not starting", exc)
        return EXIT_SUPERSEDED
    log.info("%s (%s) in pid %s with %d threads", attempt, kind, os.getpid(), torch.get_num_threads())
    lease = Lease(sessions, attempt)
    lease.start()
    try:
        if kind == "train":
            tasks.run_train(ws, sessions, attempt)
        elif kind == "evaluate":
            tasks.run_evaluate(ws, sessions, attempt)
        elif kind == "release":
            tasks.run_release(ws, sessions, attempt)
        else:
            raise UserError(f"unknown job kind {kind!r}")
        tasks.finish(sessions, attempt)
    except SupersededError as exc:
        log.error("%s: stopping without writing its results", exc)
        return EXIT_SUPERSEDED
    except Exception as exc:  # the job fails; the log keeps the traceback
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        try:
            with jq.fenced(sessions, attempt) as s:
                fail_job(s, job_id, reason, attempt=attempt_number)
        except SupersededError as superseded:
            log.error("%s: its failure is not recorded", superseded)
            return EXIT_SUPERSEDED
        return 1
    finally:
        lease.stop()
    log.info("%s succeeded", attempt)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
