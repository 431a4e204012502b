"""Smoke run of the benchmark scripts on tiny sizes, so that they keep working (not a benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, module: str, *args: str) -> dict:
    out = tmp_path / f"{module}.json"
    env = os.environ | {"PREFILTER_QA_BENCH_DATA": str(tmp_path / "data"), "PREFILTER_QA_BENCH_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", *args, "--json", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "|" in proc.stdout  # a table was printed
    return json.loads(out.read_text())


def test_speed_quick(tmp_path: Path) -> None:
    rep = _run(tmp_path, "speed", "--quick", "--inline", "--presets", "ae", "dfr", "--weights", "random",
               "--set", "input_size=32", "--set", "map_size=8", "--set", "batch_size=2",
               "--set", "num_workers=0", "--set", "pca_samples_per_image=16", "--agg-size", "32")
    assert rep["machine"]["cores"] >= 1
    by = {r["preset"]: r for r in rep["presets"]}
    for preset in ("ae", "dfr"):
        r = by[preset]
        assert "error" not in r, r.get("error")
        assert r["infer_b1_img_s"] > 0 and r["infer_best_img_s"] >= r["infer_b1_img_s"] * 0.999
        assert r["train_epoch_s_per_img"] > 0 and r["train_peak_mb"] > 0
        assert r["e2e"]["batch"] == 2 and r["e2e"]["ratio"] > 0 and r["e2e"]["failed"] == 0
        assert {v["variant"] for v in r["variants"]} >= {"nchw", "channels_last"}
    agg = rep["aggregation"][0]
    assert agg["preset"] == "dfr" and agg["speedup"] > 0 and agg["ours_mb"] is not None


def test_scale_quick(tmp_path: Path) -> None:
    rep = _run(tmp_path, "scale", "--quick", "--inline", "--sizes", "4", "8", "--image-size", "32",
               "--set", "map_size=8", "--set", "batch_size=2")
    rows = [r for r in rep["rows"] if "error" not in r]
    assert len(rows) == 8, rep["rows"]  # 2 models x 2 sizes x (train, eval)
    assert all(r["s_per_img"] > 0 and r["peak_mb"] > 0 for r in rows)
    assert {r["n"] for r in rep["pixel"]} == {4, 8}
    assert set(rep["targets"]) >= {"dfr_train", "ae_eval"}


def test_accuracy_suite_quick(tmp_path: Path, tiny_demo: Path) -> None:
    """The suite's table and summary on the tiny demo: dfr, the literal DFR, auto and its candidates —
    measured over two sittings, the second resuming from the first's JSON."""
    from engine.training.auto import CANDIDATES
    from tests.conftest import TINY_DFR

    sets = [x for s in TINY_DFR + ["holdout_share=0.4"] for x in ("--set", s)]
    first = _run(tmp_path, "accuracy", "--suite", str(tiny_demo), "--only", "dfr", *sets)
    (dfr,) = first["rows"]
    assert dfr["system"] == "dfr" and dfr["status"] == "succeeded" and dfr["commit"] and dfr["measured"]
    rep = _run(tmp_path, "accuracy", "--suite", str(tiny_demo), "--resume", "--only", "dfr", "dfr literal", "auto",
               *[f"candidate {n}" for n in CANDIDATES if n != "default"], *sets)
    assert [r["system"] for r in rep["rows"]].count("dfr") == 1
    rows = {r["system"]: r for r in rep["rows"]}
    assert rows["dfr"] == dfr  # kept from the first sitting, not measured again
    assert set(rows) == {"dfr", "dfr literal", "auto", *(f"candidate {n}" for n in CANDIDATES if n != "default")}
    assert all(r["status"] == "succeeded" and r["image_auroc"] is not None for r in rows.values())
    assert set(rows["auto"]["auto_synthetic"]) == set(CANDIDATES)  # each candidate's synthetic figures
    (summary,) = rep["summary"]
    assert summary["auto pick"] in CANDIDATES and summary["best candidate on real defects"] in CANDIDATES
    assert summary["dfr image"] == rows["dfr"]["image_auroc"]
    picked = rows["dfr"] if summary["auto pick"] == "default" else rows[f"candidate {summary['auto pick']}"]
    figures = lambda r: r["image_auroc"] + r["pixel_auroc"]  # noqa: E731
    best = max(figures(r) for n, r in rows.items() if n == "dfr" or n.startswith("candidate "))
    assert summary["pick's shortfall"] == round(best - figures(picked), 4) >= 0
