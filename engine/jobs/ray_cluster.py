"""A Ray cluster as the executor sees it: its nodes and its jobs, and submit / stop / logs through
the Jobs API of the Ray dashboard (PREFILTER_QA_RAY_ADDRESS, default http://127.0.0.1:8265).

Ray is an optional dependency (`pip install 'prefilter-qa[ray]'`), imported only here; everything
goes over the dashboard's HTTP API, so the worker needs no Ray node of its own.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from engine.errors import UserError

log = logging.getLogger(__name__)

RAY_ADDRESS_ENV = "PREFILTER_QA_RAY_ADDRESS"
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# metadata of the Ray jobs we submit: which job and attempt, and what they asked for
META_JOB, META_ATTEMPT, META_GPUS, META_CPUS = "prefilter_qa_job", "prefilter_qa_attempt", "gpus", "cpus"
NODE_DIED = "JOB_SUPERVISOR_ACTOR_DIED"
# Ray's reasons for a job that never ran its entrypoint: the cluster's failure, not the job's
NOT_STARTED = ("RUNTIME_ENV_SETUP_FAILURE", "JOB_SUPERVISOR_ACTOR_START_TIMEOUT", "JOB_SUPERVISOR_ACTOR_START_FAILURE",
               "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE", "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE",
               "JOB_ENTRYPOINT_COMMAND_START_ERROR")


@dataclass(frozen=True)
class Node:
    node_id: str
    name: str
    address: str
    alive: bool
    gpus: float
    cpus: float
    is_head: bool = False
    state_message: str | None = None

    @property
    def label(self) -> str:
        """"gpu-a (10.0.0.7)", or the address alone when the node has no name of its own."""
        return self.address if self.name in ("", self.address) else f"{self.name} ({self.address})"


@dataclass(frozen=True)
class RayJob:
    submission_id: str
    status: str
    node_id: str | None
    message: str | None
    error_type: str | None
    exit_code: int | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status not in TERMINAL

    def asked(self) -> tuple[float, float]:
        """(GPUs, CPUs) this job holds or waits for; jobs not submitted by us count as none (Ray's
        Jobs API does not say what they asked for)."""
        return float(self.metadata.get(META_GPUS, 0)), float(self.metadata.get(META_CPUS, 0))


def _ray_job(details: Any) -> RayJob:
    return RayJob(submission_id=details.submission_id, status=str(getattr(details.status, "value", details.status)),
                  node_id=details.driver_node_id, message=details.message, error_type=details.error_type,
                  exit_code=getattr(details, "driver_exit_code", None), metadata=dict(details.metadata or {}))


class RayCluster:
    """One Ray cluster, addressed by its dashboard URL."""

    def __init__(self, address: str) -> None:
        try:
            from ray.job_submission import JobSubmissionClient  # noqa: F401
        except ImportError:
            raise UserError("the Ray executor needs Ray: pip install 'prefilter-qa[ray]' "
                            "(ray[default]) on this host and on every node") from None
        self.address = address if "://" in address else f"http://{address}"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address)
            except (ConnectionError, RuntimeError) as exc:
                raise UserError(f"no Ray cluster answers at {self.address} ({exc}); start its head with "
                                "`ray start --head --dashboard-host 0.0.0.0` or set "
                                f"{RAY_ADDRESS_ENV} to its dashboard address") from None
        return self._client

    def nodes(self) -> list[Node]:
        """Every node Ray knows, dead ones included (a dead node names why it died)."""
        from ray.util.state import list_nodes

        self.client  # noqa: B018 - a clear error when nobody answers
        out = []
        for n in list_nodes(address=self.address, detail=True, limit=10_000, raise_on_missing_output=False):
            total = n.resources_total or {}
            out.append(Node(node_id=n.node_id, name=n.node_name or "", address=n.node_ip or "",
                            alive=n.state == "ALIVE", gpus=float(total.get("GPU", 0)), cpus=float(total.get("CPU", 0)),
                            is_head=bool(n.is_head_node), state_message=getattr(n, "state_message", None)))
        return out

    def jobs(self) -> list[RayJob]:
        return [_ray_job(d) for d in self.client.list_jobs() if d.submission_id]

    def job(self, submission_id: str) -> RayJob | None:
        """The Ray job, or None if the cluster does not know it (never submitted, or a new cluster)."""
        try:
            return _ray_job(self.client.get_job_info(submission_id))
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return None
            raise

    def submit(self, *, entrypoint: str, submission_id: str, env: dict[str, str], gpus: float, cpus: float,
               metadata: dict[str, str], label_selector: dict[str, str] | None = None) -> str:
        return self.client.submit_job(
            entrypoint=entrypoint, submission_id=submission_id, runtime_env={"env_vars": env},
            entrypoint_num_gpus=gpus or None, entrypoint_num_cpus=cpus if (cpus or label_selector) else None,
            metadata=metadata | {META_GPUS: str(gpus), META_CPUS: str(cpus)},
            entrypoint_label_selector=label_selector)

    def stop(self, submission_id: str) -> bool:
        try:
            return bool(self.client.stop_job(submission_id))
        except RuntimeError as exc:  # already gone
            log.info("stop of Ray job %s: %s", submission_id, exc)
            return False

    def logs(self, submission_id: str) -> str | None:
        try:
            return str(self.client.get_job_logs(submission_id))
        except RuntimeError:
            return None

    def run_on_each(self, nodes: list[Node], entrypoint: str, env: dict[str, str], prefix: str,
                    timeout_s: float = 120.0) -> dict[str, RayJob | None]:
        """Run `entrypoint` once on each node (no GPU, no CPU held); the finished Ray job per node id,
        None where it did not finish within `timeout_s`."""
        sids = {}
        for node in nodes:
            sid = f"{prefix}-{node.node_id[:12]}-{int(time.time() * 1000)}"
            self.submit(entrypoint=entrypoint, submission_id=sid, env=env, gpus=0, cpus=0, metadata={},
                        label_selector={"ray.io/node-id": node.node_id})
            sids[node.node_id] = sid
        deadline = time.monotonic() + timeout_s
        done: dict[str, RayJob | None] = {}
        while len(done) < len(sids) and time.monotonic() < deadline:
            for node_id, sid in sids.items():
                job = self.job(sid) if node_id not in done else None
                if job is not None and not job.active:
                    done[node_id] = job
            time.sleep(0.3)
        for node_id, sid in sids.items():
            if node_id not in done:
                self.stop(sid)
                done[node_id] = None
        return done


def local_addresses() -> set[str]:
    """The addresses of this host: loopback, its interfaces, its name's addresses."""
    addresses = {"127.0.0.1", "::1", "localhost"}
    try:
        import psutil  # comes with ray

        addresses |= {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs}
    except ImportError:  # pragma: no cover - ray brings psutil
        pass
    try:
        addresses |= set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return addresses


def remote_nodes(nodes: list[Node]) -> list[Node]:
    """Alive nodes on other hosts than this one."""
    here = local_addresses()
    return [n for n in nodes if n.alive and n.address not in here and not n.address.startswith("127.")]


def ray_log_tail(submission_id: str, n: int = 30, address: str | None = None) -> list[str] | None:
    """The last `n` lines of a Ray job's own log (the Jobs page's fallback when the job's log in
    the workspace is missing); None when Ray is not installed or the cluster does not answer."""
    import os

    try:
        text = RayCluster(address or os.environ.get(RAY_ADDRESS_ENV) or DEFAULT_ADDRESS).logs(submission_id)
    except Exception as exc:  # noqa: BLE001 - a fallback: no cluster, no log
        log.info("no Ray log of %s: %s", submission_id, exc)
        return None
    return None if text is None else text.splitlines()[-n:]
