"""Which executor runs the claimed jobs: the local worker's child processes (default) or a Ray
cluster (`PREFILTER_QA_EXECUTOR=ray`, `PREFILTER_QA_RAY_ADDRESS`). Either way the queue is the
database and the child is engine.jobs.child."""

from __future__ import annotations

import os

from sqlalchemy.orm import Session, sessionmaker

from engine.errors import UserError
from engine.jobs.worker import Worker
from engine.workspace import Workspace

EXECUTOR_ENV = "PREFILTER_QA_EXECUTOR"
EXECUTORS = ("local", "ray")


def chosen_executor(value: str | None = None) -> str:
    """`value` (the CLI's --executor), else PREFILTER_QA_EXECUTOR, else local."""
    name = (value or os.environ.get(EXECUTOR_ENV) or "local").strip().lower()
    if name not in EXECUTORS:
        raise UserError(f"executor {name!r} ({EXECUTOR_ENV} or --executor): use one of {', '.join(EXECUTORS)}")
    return name


def make_worker(ws: Workspace, sessions: sessionmaker[Session], *, executor: str | None = None,
                ray_address: str | None = None, poll_s: float = 1.0, idle_exit_s: float | None = None) -> Worker:
    """The worker of the chosen executor (the Ray one is imported only when chosen)."""
    if chosen_executor(executor) == "local":
        return Worker(ws, sessions, poll_s=poll_s, idle_exit_s=idle_exit_s)
    from engine.jobs.ray_cluster import DEFAULT_ADDRESS, RAY_ADDRESS_ENV
    from engine.jobs.ray_worker import RayWorker

    address = ray_address or os.environ.get(RAY_ADDRESS_ENV) or DEFAULT_ADDRESS
    return RayWorker(ws, sessions, address=address, poll_s=min(poll_s, 0.5), idle_exit_s=idle_exit_s)
