"""What running jobs on a Ray cluster costs against the local worker, per job.

    .venv/bin/python -m bench.executors [--jobs 4] [--gpu-nodes 1] [--ray-address URL] [--quick] [--json PATH]

Each executor serves its own fresh workspace with the tiny demo (64² images) and runs the same tiny
AE training (one epoch, then its evaluation) through the real worker and child processes:

- latency: jobs queued one at a time on an idle worker: queue -> claimed (the row is running),
  queue -> started (the child recorded itself: Python and torch are imported), queue -> done;
- batch: `--jobs` queued at once: wall time until all are done, per job.

The local worker runs one job at a time; the Ray cluster (python -m engine.jobs.ray_local, fake
GPUs on 127.0.0.1, started here unless `--ray-address` names one) has `--gpu-nodes` one-GPU nodes,
so with one node both run one job at a time and the difference is the Ray executor's overhead.
The Ray worker's start includes its check of every node (a probe job each).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, load1, table, write_json

IDLE_S = 4.0  # between the latency jobs
TINY_AE = {"input_size": "64", "epochs": "1", "batch_size": "4", "num_workers": "0"}


def _workspace(root: Path, demo: Path) -> tuple[Path, Any]:
    from db import connect

    home = root / "ws"
    env = os.environ | {"PREFILTER_QA_HOME": str(home)}
    env.pop("PREFILTER_QA_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "engine.cli", "import", str(demo), "--name", "tiny"], cwd=REPO, env=env,
                   check=True, capture_output=True)
    return home, connect(f"sqlite:///{home / 'prefilter-qa.db'}")


def _submit(sessions: Any) -> int:
    from db.auth import system_actor
    from engine.jobs.queue import submit_train

    with sessions.begin() as s:
        job, _ = submit_train(s, dataset="tiny", model="ae", overrides=TINY_AE, actor=system_actor("bench"))
        return job.id


def _row(home: Path, job_id: int) -> tuple[str, str | None]:
    """(status, log path) read without a write lock (the sessions' transactions take SQLite's)."""
    con = sqlite3.connect(f"file:{home / 'prefilter-qa.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT status, log_path FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        con.close()


def _child_started(log_path: str | None, job_id: int) -> float | None:
    """When the child logged that it runs (engine.jobs.child: after Python and torch are imported and
    its attempt recorded), as a Unix time; the log's timestamps are local time, to the millisecond."""
    if not log_path or not Path(log_path).exists():
        return None
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if f"job {job_id} attempt 1 (" in line and ") in pid " in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def _follow(home: Path, job_ids: list[int], t0: dict[int, float], timeout: float = 900) -> dict[int, dict]:
    """Poll the rows every 50 ms: when each job was claimed and done; then when its child started."""
    seen: dict[int, dict[str, Any]] = {j: {} for j in job_ids}
    deadline = time.time() + timeout
    while time.time() < deadline and any("done" not in v for v in seen.values()):
        now = time.time()
        for j, marks in seen.items():
            if "done" in marks:
                continue
            status, log_path = _row(home, j)
            if status != "queued":
                marks.setdefault("claimed", now - t0[j])
            if status in ("succeeded", "failed", "cancelled"):
                marks["done"], marks["status"] = now - t0[j], status
                started = _child_started(log_path, j)
                marks["started"] = started - t0[j] if started is not None else None
        time.sleep(0.05)
    return seen


def measure(executor: str, demo: Path, jobs: int, latency_jobs: int, ray_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{executor}-") as tmp:
        home, sessions = _workspace(Path(tmp), demo)
        env = os.environ | {"PREFILTER_QA_HOME": str(home), "PREFILTER_QA_THREADS": "1"}
        env.pop("PREFILTER_QA_DATABASE_URL", None)
        cmd = [sys.executable, "-m", "engine.cli", "worker", "--poll", "0.2", "--executor", executor]
        if ray_url:
            cmd += ["--ray-address", ray_url]
        started = time.time()
        log = open(home / "worker.log", "w")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            first = _submit(sessions)  # the worker's start (and the Ray worker's node probes) comes first
            marks = _follow(home, [first], {first: started})[first]
            worker_start = marks["claimed"]
            latency = [marks]
            for _ in range(latency_jobs - 1):
                time.sleep(IDLE_S)  # the previous child has exited: the worker is idle
                t = time.time()
                j = _submit(sessions)
                latency.append(_follow(home, [j], {j: t})[j])
            t = time.time()
            batch_ids = [_submit(sessions) for _ in range(jobs)]
            batch = _follow(home, batch_ids, dict.fromkeys(batch_ids, t))
            wall = max(m["done"] for m in batch.values())
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            log.close()
        steady = latency[1:] or latency
        med = lambda key: statistics.median(m[key] for m in steady)  # noqa: E731
        statuses = {m.get("status") for m in latency + list(batch.values())}
        return {"executor": executor, "worker_start_s": worker_start, "queue_to_claim_s": med("claimed"),
                "queue_to_start_s": med("started"), "queue_to_done_s": med("done"), "batch_jobs": jobs,
                "batch_wall_s": wall, "batch_s_per_job": wall / jobs, "all_succeeded": statuses == {"succeeded"},
                "load1": load1()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.executors", description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=4, help="jobs queued at once in the batch phase")
    p.add_argument("--latency-jobs", type=int, default=3, help="jobs queued one at a time (the first also "
                                                                "measures the worker's start)")
    p.add_argument("--gpu-nodes", type=int, default=1, help="one-GPU nodes of the local Ray cluster")
    p.add_argument("--ray-address", default=None, help="use this Ray cluster instead of starting one")
    p.add_argument("--executors", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    p.add_argument("--quick", action="store_true", help="one job per phase: a smoke run")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.jobs, args.latency_jobs = 1, 1
    from engine.demo.generate import DemoSpec, generate_demo

    tmp = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    demo = generate_demo(tmp / "demo", DemoSpec(size=64, n_train_ok=10, n_test_ok=4, n_test_nok=6, seed=1)).root
    rows, cluster, cluster_start = [], None, None
    try:
        for executor in args.executors:
            url = None
            if executor == "ray":
                url = args.ray_address
                if url is None:
                    from engine.jobs.ray_local import start_local_cluster

                    t = time.monotonic()
                    cluster = start_local_cluster(args.gpu_nodes)
                    cluster_start, url = time.monotonic() - t, cluster.url
            row = measure(executor, demo, args.jobs, args.latency_jobs, url)
            row["gpu_nodes"] = (args.gpu_nodes if args.ray_address is None else None) if executor == "ray" else None
            rows.append(row)
    finally:
        if cluster is not None:
            t = time.monotonic()
            cluster.shutdown()
            cluster_stop = time.monotonic() - t
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    by = {r["executor"]: r for r in rows}
    if "local" in by and "ray" in by:
        by["ray"]["overhead_per_job_s"] = by["ray"]["queue_to_done_s"] - by["local"]["queue_to_done_s"]
        by["ray"]["extra_start_latency_s"] = by["ray"]["queue_to_start_s"] - by["local"]["queue_to_start_s"]
    print(table(rows, [("executor", "executor"), ("gpu_nodes", "GPU nodes"), ("worker_start_s", "worker start s"),
                       ("queue_to_claim_s", "queue→claim s"), ("queue_to_start_s", "queue→start s"),
                       ("queue_to_done_s", "queue→done s"), ("overhead_per_job_s", "overhead/job s"),
                       ("batch_jobs", "batch"), ("batch_s_per_job", "batch s/job"),
                       ("all_succeeded", "all ok"), ("load1", "load")]))
    if cluster_start is not None:
        print(f"local Ray cluster: started in {cluster_start:.1f} s, stopped in {cluster_stop:.1f} s")
    out = write_json(args.json, {"rows": rows, "cluster_start_s": cluster_start,
                                 "cluster_stop_s": cluster_stop if cluster is not None else None},
                     "executors.json")
    print(f"wrote {out}")
    return 0 if all(r["all_succeeded"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
