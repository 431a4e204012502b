"""Smoke run of bench.executors on the session's cluster (not a benchmark: it keeps the script working)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.ray.conftest import RAY_ENV, LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def test_bench_executors_quick(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    out = tmp_path / "executors.json"
    proc = subprocess.run([sys.executable, "-m", "bench.executors", "--quick", "--ray-address", ray_cluster.url,
                           "--json", str(out)], cwd=REPO, env=os.environ | RAY_ENV, capture_output=True, text=True,
                          timeout=540, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = {r["executor"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["local"]["all_succeeded"] and rows["ray"]["all_succeeded"]
    assert rows["ray"]["queue_to_start_s"] > rows["ray"]["queue_to_claim_s"] > 0
    assert "overhead_per_job_s" in rows["ray"] and "| ray " in proc.stdout
