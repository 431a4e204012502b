"""`prefilter-qa worker --executor ray`: the queue stays in the database; each claimed job is
submitted as a Ray Job that runs the same child on a GPU node of the cluster.

No more jobs are submitted than the cluster has free GPUs (CPUs on a cluster without GPUs), so
jobs wait in the database — cancellable, visible — rather than inside Ray. Each submission is an
attempt (db.jobs): the child's writes are fenced by it. This worker follows its Ray jobs: it
records the node, turns a cancel into "the child stops itself, else `stop_job` after a grace
period", and when a Ray job ends without the child having ended its job, it records why — a node
that died (or one that cannot see the workspace) is the infrastructure's failure and the job is
retried once as a new job, which Ray places on a live node; a training that raised is never
retried (the child has already failed its job).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db import executors as xq
from db import jobs as jq
from db import releases as relq
from db import workers as wq
from db.models import Job, JobStatus
from engine.errors import UserError
from engine.jobs.ray_cluster import Node, RayCluster, RayJob
from engine.jobs.ray_outcome import EXECUTOR, auto_retry, why_ended
from engine.jobs.ray_placement import database_problem, free_resources, job_needs, node_check_problems
from engine.jobs.storage import job_storage
from engine.jobs.worker import Worker, fail_job, stale_after
from engine.workspace import DATABASE_URL_ENV, FEATURE_CACHE_NAME, HOME_ENV, Workspace

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 10.0  # a cancelled child stops itself within a heartbeat; Ray stops it after this
PASSED_ENV = ("PREFILTER_QA_",)  # settings the node's child needs as this worker has them


class _NoRoom(Exception):
    """The claimed job does not fit the free GPUs: roll the claim back."""


@dataclass
class InFlight:
    """A Ray job this worker follows."""

    attempt: jq.Attempt
    submission_id: str
    kind: str
    run_id: int | None
    gpus: float = 0.0
    cpus: float = 0.0
    node_recorded: bool = False
    cancel_since: float | None = None
    ended_since: float | None = None  # the database ended the attempt while Ray still ran it
    stop_sent: bool = False


class RayWorker(Worker):
    def __init__(self, ws: Workspace, sessions: sessionmaker[Session], *, address: str, poll_s: float = 0.5,
                 idle_exit_s: float | None = None, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
        super().__init__(ws, sessions, poll_s=poll_s, idle_exit_s=idle_exit_s)
        self.cluster = RayCluster(address)
        self.storage = job_storage(ws)
        self.cancel_grace_s = cancel_grace_s
        self.inflight: dict[int, InFlight] = {}
        self.nodes: dict[str, Node] = {}
        self._blocked: str | None = None

    # -- start --------------------------------------------------------------------------------
    def refresh_nodes(self) -> list[Node]:
        nodes = self.cluster.nodes()
        self.nodes = {n.node_id: n for n in nodes}
        return nodes

    def preflight(self) -> None:
        """Refuse to start unless the cluster answers, has somewhere to run jobs, the database can
        serve all its hosts, and every live node sees the workspace (a probe job per node)."""
        nodes = [n for n in self.refresh_nodes() if n.alive]
        if not any(n.gpus > 0 or n.cpus > 0 for n in nodes):
            raise UserError(f"the Ray cluster at {self.cluster.address} has no node with a GPU or a CPU to run jobs")
        if problem := database_problem(self.ws.database_url, nodes):
            raise UserError(problem)
        bad = node_check_problems(self.cluster, nodes, self.entrypoint("probe"), self._env())
        if bad:
            raise UserError(f"not every Ray node sees {self.storage.describe()} at the same path: " + "; ".join(bad)
                            + ". Mount the shared folder (the workspace and the import folders) at the same path "
                            "on every node (README 'Scale out').")
        gpus = sum(n.gpus for n in nodes)
        log.info("Ray cluster %s: %d live nodes, %g GPUs; every node sees %s", self.cluster.address, len(nodes),
                 gpus, self.storage.describe())

    def adopt(self) -> None:
        """Follow the running Ray jobs whose worker is gone (this worker was restarted)."""
        with self.sessions.begin() as s:
            live = {w.name for w in wq.live_workers(s, stale_after())} - {self.name}
            for job in xq.running_on(s, EXECUTOR):
                if job.worker in live:
                    continue
                attempt = jq.Attempt(job.id, job.attempt)
                xq.adopt(s, attempt, self.name)
                self.inflight[job.id] = InFlight(attempt, job.external_id or "", job.kind, job.run_id,
                                                 node_recorded=job.node is not None)
                log.info("following %s (Ray job %s) left by its worker %s", attempt, job.external_id, job.worker)

    # -- the loop -------------------------------------------------------------------------------
    def serve(self, once: bool = False) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        with self.sessions.begin() as s:  # registered first: a dashboard starts no second worker meanwhile
            wq.register_worker(s, self.name, self.host, os.getpid(), f"ray {self.cluster.address}"[:100])
        done, submitted, idle_since = 0, 0, time.monotonic()
        try:
            self.preflight()
            self.sweep_caches()
            self.adopt()
            while not self._stop:
                self.reap()
                done += self.follow()
                if not (once and submitted):
                    try:
                        submitted += self.submit_ready(limit=1 if once else None)
                    except Exception as exc:
                        log.warning("not submitting now: the Ray cluster %s: %s", self.cluster.address, exc,
                                    exc_info=not isinstance(exc, (UserError, ConnectionError, RuntimeError)))
                with self.sessions.begin() as s:
                    wq.worker_heartbeat(s, self.name, min(self.inflight) if self.inflight else None)
                    queued = xq.oldest_queued(s) is not None
                if self.inflight or (queued and not once):
                    idle_since = time.monotonic()
                elif once or (self.idle_exit_s is not None and time.monotonic() - idle_since > self.idle_exit_s):
                    break
                time.sleep(self.poll_s)
        finally:
            with self.sessions.begin() as s:
                left = [f for f in self.inflight.values() if (j := s.get(Job, f.attempt.job_id)) is not None
                        and j.status == JobStatus.RUNNING and j.attempt == f.attempt.number]
                wq.unregister_worker(s, self.name)
            if left:
                log.info("worker %s stops; %d Ray jobs keep running and a worker started later follows them",
                         self.name, len(left))
        return done

    # -- submitting ------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
        return env | {HOME_ENV: str(self.ws.home), DATABASE_URL_ENV: self.ws.database_url}

    def entrypoint(self, what: str, *args: str) -> str:
        """The shell command of a Ray job: `exec` makes the child lead its process group."""
        argv = [sys.executable, "-m", "engine.jobs.ray_entry", what, *args, *self.storage.node_check_args()]
        return "exec " + shlex.join(argv)

    def submit_ready(self, limit: int | None = None) -> int:
        """Claim and submit queued jobs while the cluster has room; returns how many were submitted."""
        count = 0
        while limit is None or count < limit:
            with self.sessions.begin() as s:
                if xq.oldest_queued(s) is None:
                    return count
            nodes = self.refresh_nodes()
            problem = database_problem(self.ws.database_url, nodes)
            if problem != self._blocked and problem:
                log.error("not submitting: %s", problem)
            self._blocked = problem
            if problem:
                return count
            ray_jobs = self.cluster.jobs()
            listed = {j.submission_id for j in ray_jobs}
            free_gpus, free_cpus = free_resources(nodes, ray_jobs, [(f.gpus, f.cpus) for f in self.inflight.values()
                                                                    if f.submission_id not in listed])
            ever = max((n.gpus for n in nodes), default=0.0)  # dead nodes too: a GPU cluster stays one
            biggest = max((n.gpus for n in nodes if n.alive), default=0.0)
            try:
                with self.sessions.begin() as s:
                    job = jq.claim_next_job(s, self.name)
                    if job is None:
                        return count
                    gpus, cpus = job_needs(s, job, ever > 0)
                    if gpus > ever:  # would wait in Ray for ever
                        self._fail(s, job, f"it needs {gpus:g} GPUs but the largest node of the Ray cluster "
                                           f"has {ever:g} (set gpus on the run's settings)")
                        continue
                    if gpus > biggest or ((gpus > free_gpus) if gpus else (cpus > free_cpus)):
                        raise _NoRoom  # e.g. every GPU node is down: it waits for one to come back
                    attempt = jq.Attempt(job.id, job.attempt)
                    sid = f"prefilter-qa-job{job.id}-a{attempt.number}-{uuid.uuid4().hex[:6]}"
                    log_path = self.storage.job_log(job.id, job.run_id)
                    xq.record_submission(s, attempt, executor=EXECUTOR, external_id=sid, log_path=log_path)
                    flight = InFlight(attempt, sid, job.kind, job.run_id, gpus=gpus, cpus=cpus)
            except _NoRoom:
                return count  # rolled back: the job stays queued until a GPU is free
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            try:
                self.cluster.submit(
                    entrypoint=self.entrypoint("run", str(job.id), str(attempt.number), "--log", log_path),
                    submission_id=sid, env=self._env(), gpus=gpus, cpus=cpus,
                    metadata={"prefilter_qa_job": str(job.id), "prefilter_qa_attempt": str(attempt.number)})
            except Exception as exc:  # noqa: BLE001 - the cluster refused or went away: back to the queue
                log.warning("could not submit %s to Ray: %s; it goes back to the queue", attempt, exc)
                with self.sessions.begin() as s:
                    xq.release_claim(s, attempt, f"waiting: the Ray cluster refused it ({exc})"[:300])
                return count
            self.inflight[job.id] = flight
            count += 1
            log.info("%s (%s) submitted as Ray job %s (%g GPUs, %g CPUs)", attempt, flight.kind, sid, gpus, cpus)
        return count

    # -- following ------------------------------------------------------------------------------
    def follow(self) -> int:
        """One look at every Ray job this worker follows; returns how many ended."""
        ended = 0
        for job_id, flight in list(self.inflight.items()):
            try:
                ray_job = self.cluster.job(flight.submission_id)
            except Exception as exc:  # noqa: BLE001 - the head is unreachable: look again next round
                log.warning("Ray cluster %s does not answer: %s", self.cluster.address, exc)
                return ended
            with self.sessions.begin() as s:
                job = jq.get_job(s, job_id)
                current = job.status == JobStatus.RUNNING and job.attempt == flight.attempt.number
                cancel = bool(job.cancel_requested)
            if not current:  # ended by its child, a reaper, or a cancel while it waited
                self._stop_if_lingering(flight, ray_job)
                if ray_job is None or not ray_job.active:
                    self._forget(job_id)
                    ended += 1
                continue
            if ray_job is not None and ray_job.status == "RUNNING" and not flight.node_recorded:
                self._record_node(flight, ray_job)
            if cancel and ray_job is not None and self._cancel(flight, ray_job):
                continue
            if ray_job is None or not ray_job.active:
                self._ended(flight, ray_job)
                self._forget(job_id)
                ended += 1
        return ended

    def _record_node(self, flight: InFlight, ray_job: RayJob) -> None:
        node = self.nodes.get(ray_job.node_id or "") or next(
            (n for n in self.refresh_nodes() if n.node_id == ray_job.node_id), None)
        if node is None:
            return
        try:
            with self.sessions.begin() as s:
                xq.record_node(s, flight.attempt, node.label)
            flight.node_recorded = True
            log.info("%s runs on node %s", flight.attempt, node.label)
        except jq.SupersededError:
            pass  # ended meanwhile: the next round sees it

    def _cancel(self, flight: InFlight, ray_job: RayJob) -> bool:
        """A cancel of a submitted job; True when it ended the job here (still waiting in Ray)."""
        if ray_job.status == "PENDING":
            with self.sessions.begin() as s:
                ended = jq.end_job(s, flight.attempt.job_id, JobStatus.CANCELLED,
                                   "cancelled before it started on the cluster", attempt=flight.attempt.number)
                if ended is not None:
                    relq.end_release_of_job(s, ended, JobStatus.CANCELLED)
            self.cluster.stop(flight.submission_id)  # may not take (Ray); the child then refuses to start
            flight.stop_sent = True
            log.info("%s cancelled while pending in Ray", flight.attempt)
            return True
        now = time.monotonic()
        if flight.cancel_since is None:
            flight.cancel_since = now
        elif ray_job.active and not flight.stop_sent and now - flight.cancel_since >= self.cancel_grace_s:
            log.warning("%s did not stop within %.0f s of its cancel: stopping Ray job %s", flight.attempt,
                        self.cancel_grace_s, flight.submission_id)
            self.cluster.stop(flight.submission_id)
            flight.stop_sent = True
        return False

    def _stop_if_lingering(self, flight: InFlight, ray_job: RayJob | None) -> None:
        """The database ended the attempt but Ray still has it: a pending one is stopped at once, a
        running one (it should stop itself) after the grace period."""
        if ray_job is None or not ray_job.active or flight.stop_sent:
            return
        now = time.monotonic()
        flight.ended_since = flight.ended_since or now
        if ray_job.status == "PENDING" or now - flight.ended_since >= self.cancel_grace_s:
            self.cluster.stop(flight.submission_id)
            flight.stop_sent = True

    def _ended(self, flight: InFlight, ray_job: RayJob | None) -> None:
        """The Ray job ended but the child did not end its job: record why; retry once if the
        cluster failed (a node died), never when the job itself failed."""
        attempt = flight.attempt
        with self.sessions.begin() as s:
            job = jq.get_job(s, attempt.job_id)
            if job.status != JobStatus.RUNNING or job.attempt != attempt.number:
                return
            if job.cancel_requested:
                ended = jq.end_job(s, job.id, JobStatus.CANCELLED, "cancelled by user", attempt=attempt.number)
                if ended is not None:
                    relq.end_release_of_job(s, ended, JobStatus.CANCELLED)
                log.info("%s cancelled", attempt)
                return
            s.expunge(job)  # read below without holding the database while Ray is asked why
        if ray_job is not None:
            self.refresh_nodes()  # a dead node shows as DEAD here
        reason, infra = why_ended(self.cluster, self.nodes, ray_job, job)
        with self.sessions.begin() as s:
            if not self._fail(s, job, reason):
                return  # ended meanwhile (a cancel, a reaper)
            retry = auto_retry(s, job) if infra else None
            if retry is not None:
                jq.get_job(s, job.id).error = reason = f"{reason}; retried once as job {retry.id}"
        log.warning("%s failed: %s", attempt, reason)

    def _fail(self, session: Session, job: Job, reason: str) -> bool:
        return fail_job(session, job.id, reason, attempt=job.attempt)

    def _forget(self, job_id: int) -> None:
        flight = self.inflight.pop(job_id)
        if flight.kind == "train" and flight.run_id is not None:  # a killed training leaves its cache behind
            (self.ws.run_dir(flight.run_id) / FEATURE_CACHE_NAME).unlink(missing_ok=True)
