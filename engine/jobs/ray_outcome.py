"""Why a Ray job ended without its child ending the job, and whether that earns one retry.

The child ends its own job when the work succeeds or raises, so a Ray job that ends while the
database still shows its attempt running ended for another reason: its node died, the node
cannot see the workspace, Ray could not start it, someone stopped it in Ray, or the process was
killed. The first three are the cluster's failure and the job is retried once as a new job (a
dead node is never chosen again: Ray gives a restarted node a new id); the rest are not.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from db.auth import system_actor
from db.models import Job
from engine.jobs.queue import retry_job
from engine.jobs.ray_cluster import NODE_DIED, NOT_STARTED, Node, RayCluster, RayJob
from engine.jobs.ray_entry import EXIT_NO_WORKSPACE
from engine.jobs.worker import exit_reason

EXECUTOR = "ray"
EXECUTOR_ACTOR = "ray-executor"  # the author of automatic retries (audit trail, jobs.created_by)
RETRIED_KINDS = ("train", "evaluate")  # a release is quick and is retried by hand


def _first_line(text: str | None, limit: int = 300) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0][:limit] if lines else ""


def _node_label(node: Node) -> str:
    return ("GPU node " if node.gpus > 0 else "node ") + node.label


def why_ended(cluster: RayCluster, nodes: dict[str, Node], ray_job: RayJob | None, job: Job) -> tuple[str, bool]:
    """(reason, the cluster's fault) for a Ray job that ended while its attempt was still running."""
    if ray_job is None:
        return (f"the Ray cluster at {cluster.address} no longer knows its Ray job {job.external_id} "
                "(was the cluster restarted?)"), True
    node = nodes.get(ray_job.node_id or "")
    if node is not None and not node.alive:
        why = node.state_message or "no reason given"
        return f"{_node_label(node)} died while the job ran ({why})", True
    if ray_job.error_type == NODE_DIED and "node has died" in (ray_job.message or ""):
        return f"the node of Ray job {ray_job.submission_id} died while the job ran", True
    if ray_job.exit_code == EXIT_NO_WORKSPACE:
        lines = (cluster.logs(ray_job.submission_id) or "").strip().splitlines()
        said = lines[-1].strip()[:300] if lines else ""
        where = _node_label(node) if node is not None else "its node"
        return f"{where} cannot run it: {said or 'it does not see the workspace'}", True
    if ray_job.error_type in NOT_STARTED and job.child_pid is None:
        return f"the Ray cluster could not start it ({ray_job.error_type}: {_first_line(ray_job.message)})", True
    if ray_job.status == "STOPPED":
        return f"its Ray job {ray_job.submission_id} was stopped outside prefilter-qa (ray job stop?)", False
    if ray_job.exit_code is None:
        return f"its Ray job {ray_job.submission_id} failed: {_first_line(ray_job.message)}", False
    return exit_reason(ray_job.exit_code, Path(job.log_path) if job.log_path else None), False


def auto_retry(session: Session, job: Job) -> Job | None:
    """Queue a failed job once more as a new job (retry_of it), unless it is itself such a retry
    or a kind that is not retried automatically; the audit trail names the executor."""
    if job.kind not in RETRIED_KINDS or (job.retry_of is not None and job.created_by == EXECUTOR_ACTOR):
        return None
    return retry_job(session, job.id, system_actor(EXECUTOR_ACTOR))
