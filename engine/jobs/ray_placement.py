"""What the Ray executor decides before it submits: can the database serve the cluster's hosts,
does every node see the workspace, what a job needs, and what the cluster has free."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.orm import Session

from db.models import Job, Run
from engine.jobs.ray_cluster import Node, RayCluster, RayJob, remote_nodes
from engine.workspace import DATABASE_URL_ENV

log = logging.getLogger(__name__)


def database_problem(database_url: str, nodes: list[Node]) -> str | None:
    """SQLite serves processes on one host; nodes on other hosts need PostgreSQL."""
    if not database_url.startswith("sqlite"):
        return None
    remote = remote_nodes(nodes)
    if not remote:
        return None
    return (f"the Ray cluster has nodes on other hosts ({', '.join(n.label for n in remote)}) but the database "
            "is SQLite, which serves processes on one host only: use PostgreSQL "
            f"({DATABASE_URL_ENV}=postgresql+psycopg://user@dbhost/prefilter_qa on this host and in the "
            "environment of `ray start` on every node; README 'Scale out')")


def node_check_problems(cluster: RayCluster, nodes: list[Node], probe: str, env: dict[str, str]) -> list[str]:
    """Run the workspace probe (`ray_entry probe`) once on every node; one line per node that
    failed it. A node that does not answer in time is only logged: its jobs check it themselves."""
    results = cluster.run_on_each(nodes, probe, env, "prefilter-qa-probe")
    bad = []
    for node in nodes:
        result = results.get(node.node_id)
        if result is None:
            log.warning("node %s did not answer the workspace check in time; its jobs check it themselves",
                        node.label)
        elif result.status != "SUCCEEDED":
            said = (cluster.logs(result.submission_id) or result.message or "").strip().splitlines()
            bad.append(f"node {node.label}: {said[-1] if said else result.status}")
    return bad


def job_needs(session: Session, job: Job, has_gpus: bool) -> tuple[float, float]:
    """(GPUs, CPUs) of a job: a training or evaluation takes its run's `gpus` (1 unless set) on a
    cluster with GPUs; a release, a `gpus=0` run, or any job on a CPU-only cluster takes a CPU."""
    if has_gpus and job.kind in ("train", "evaluate"):
        run = session.get(Run, job.run_id) if job.run_id is not None else None
        gpus = float((run.config or {}).get("gpus", 1)) if run is not None else 1.0
        if gpus > 0:
            return gpus, 0.0
    return 0.0, 1.0


def free_resources(nodes: list[Node], ray_jobs: list[RayJob],
                   unlisted: Iterable[tuple[float, float]] = ()) -> tuple[float, float]:
    """Free (GPUs, CPUs): the live nodes' totals less what active Ray jobs hold or wait for, and
    less `unlisted` (our submissions Ray does not list yet)."""
    alive = [n for n in nodes if n.alive]
    held = [j.asked() for j in ray_jobs if j.active] + list(unlisted)
    return (sum(n.gpus for n in alive) - sum(g for g, _ in held),
            sum(n.cpus for n in alive) - sum(c for _, c in held))
