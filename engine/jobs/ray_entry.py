"""What a Ray Job runs on a cluster node (engine.jobs.ray_worker submits it).

`run JOB ATTEMPT`: check that this node sees the workspace (else exit EXIT_NO_WORKSPACE with the
reason, before anything is created here), refuse to start a job that was cancelled or superseded
while it waited in Ray (Ray cannot stop a pending job), record the GPU Ray gave it, copy the
output into the job's log in the workspace as well as Ray's own log, then run the same child as
the local worker (engine.jobs.child), which heartbeats, reports progress and stops when its
attempt is superseded.

`probe`: only the workspace check, for the worker's start (one probe per node).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any

from engine.jobs.lease import EXIT_CANCELLED, EXIT_SUPERSEDED
from engine.jobs.storage import node_problems

EXIT_NO_WORKSPACE = 78  # this node cannot see the workspace: the cluster's failure, not the job's
GPU_ENV = "CUDA_VISIBLE_DEVICES"


class Tee(io.TextIOBase):
    """Writes to the original stream (Ray's log) and to the job's log file in the workspace."""

    def __init__(self, stream: Any, copy: Any) -> None:
        self.stream, self.copy = stream, copy

    def write(self, text: str) -> int:
        self.stream.write(text)
        try:
            self.copy.write(text)
            self.copy.flush()
        except OSError:  # the shared folder went away: Ray's log still has it
            pass
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.jobs.ray_entry")
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("run", "probe"):
        q = sub.add_parser(name)
        if name == "run":
            q.add_argument("job_id", type=int)
            q.add_argument("attempt", type=int)
            q.add_argument("--log", required=True)
        q.add_argument("--home", required=True)
        q.add_argument("--workspace-id", required=True)
        q.add_argument("--import-root", action="append", default=[])
    return p


def _node() -> str:
    import socket

    return f"host {socket.gethostname()}, {GPU_ENV}={os.environ.get(GPU_ENV, '')!r}"


def _refusal(job_id: int, attempt_number: int) -> tuple[str, int] | None:
    """Why this attempt must not start (cancelled or superseded meanwhile), with its exit code;
    None when it may start (and then its GPU is recorded)."""
    from db import executors as xq
    from db import jobs as jq
    from db.errors import SupersededError
    from engine.services.store import open_workspace

    _, sessions = open_workspace()
    attempt = jq.Attempt(job_id, attempt_number)
    try:
        with sessions.begin() as s:
            job = jq.check_attempt(s, attempt)
            if job.cancel_requested:
                return f"{attempt} was cancelled while it waited for the cluster: not starting", EXIT_CANCELLED
            xq.record_gpu(s, attempt, os.environ.get(GPU_ENV))
    except SupersededError as exc:
        return f"{exc}: not starting", EXIT_SUPERSEDED
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problems = node_problems(args.home, args.workspace_id, args.import_root)
    if problems:
        print(f"this node ({_node()}) cannot run jobs of the workspace: " + "; ".join(problems), flush=True)
        return EXIT_NO_WORKSPACE
    if args.what == "probe":
        print(f"this node ({_node()}) sees the workspace {args.home}", flush=True)
        return 0
    with open(args.log, "a", encoding="utf-8") as copy:
        sys.stdout, sys.stderr = Tee(sys.__stdout__, copy), Tee(sys.__stderr__, copy)
        print(f"job {args.job_id} attempt {args.attempt} on a Ray node: {_node()}", flush=True)
        refusal = _refusal(args.job_id, args.attempt)
        if refusal is not None:
            print(refusal[0], flush=True)
            return refusal[1]
        from engine.jobs import child

        return child.main(args.job_id, args.attempt)


if __name__ == "__main__":
    sys.exit(main())
