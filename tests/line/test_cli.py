"""The command line in a subprocess: JSON lines, results file, exit codes, refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests import fixtures_files as ff
from tests.line.bundles import rewrite_bundle
from tests.line.conftest import Golden, run_cli


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_score_prints_and_appends_results(bundle_dir: Path, golden: Golden,
                                          tmp_path: Path) -> None:
    paths = [p for p, _ in golden.files]
    proc = run_cli("score", bundle_dir, *paths, "--heatmaps", tmp_path / "maps", "--threads", "1",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = _lines(proc.stdout)
    assert [r["verdict"] for r in rows] == ["OK", "OK", "NOK", "NOK"]
    assert list(rows[0]) == ["path", "verdict", "score", "threshold_id", "bundle_sha", "ms",
                             "error", "heatmap", "at"]
    assert all(Path(r["heatmap"]).is_file() and r["threshold_id"] == 12 for r in rows)
    default = bundle_dir.parent / "line-results.jsonl"  # beside the bundle folder
    assert _lines(default.read_text()) == rows
    assert stat.S_IMODE(default.stat().st_mode) & stat.S_IRGRP
    proc = run_cli("score", bundle_dir, tmp_path / "maps", "--results", tmp_path / "r.jsonl",
                   cwd=tmp_path)  # a folder means its image files
    assert proc.returncode == 0 and len(_lines(proc.stdout)) == 4
    assert len(_lines(default.read_text())) == 4  # --results replaces the default
    assert len(_lines((tmp_path / "r.jsonl").read_text())) == 4


def test_bad_images_exit_3_with_reasons(bundle_dir: Path, golden: Golden, tmp_path: Path) -> None:
    bad = [ff.make_zero_byte(tmp_path / "zero.png"), ff.make_truncated_jpeg(tmp_path / "cut.jpg"),
           ff.make_text_as_png(tmp_path / "text.png"), ff.make_bomb_png(tmp_path / "bomb.png"),
           ff.make_good_png(tmp_path / "big.png", size=(200, 200))]
    results = tmp_path / "results.jsonl"
    # the golden images (80x60) and the truncated JPEG (128²) stay under the pixel limit
    proc = run_cli("score", bundle_dir, golden.files[0][0], *bad, "--results", results,
                   cwd=tmp_path, env={"PREFILTER_QA_MAX_PIXELS": "20000"})
    assert proc.returncode == 3, proc.stderr
    rows = _lines(proc.stdout)
    assert rows == _lines(results.read_text())
    assert rows[0]["verdict"] == "OK" and rows[0]["error"] is None
    reasons = {Path(r["path"]).name: r["error"] for r in rows[1:]}
    assert all(r["verdict"] == "ERROR" and r["score"] is None for r in rows[1:])
    assert reasons["zero.png"] == "empty file (0 bytes)"
    assert reasons["cut.jpg"].startswith("truncated or corrupt image")
    assert reasons["text.png"] == "not an image (unrecognised format)"
    assert "more than the limit 20000 (PREFILTER_QA_MAX_PIXELS)" in reasons["bomb.png"]
    assert reasons["big.png"] == ("image has 40000 pixels, more than the limit 20000 "
                                  "(PREFILTER_QA_MAX_PIXELS)")


def test_tampered_bundle_refuses_to_serve(bundle_dir: Path, golden: Golden,
                                          tmp_path: Path) -> None:
    (bundle_dir / "model.onnx").write_bytes((bundle_dir / "model.onnx").read_bytes() + b"\0")
    proc = run_cli("score", bundle_dir, golden.files[0][0], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "refusing to serve" in proc.stderr and "model.onnx: sha256" in proc.stderr
    assert not (bundle_dir.parent / "line-results.jsonl").exists()


def test_golden_verdict_change_refused_at_start(bundle_dir: Path, golden: Golden,
                                                tmp_path: Path) -> None:
    rewrite_bundle(bundle_dir, lambda m, g: g[3].update(verdict="OK"))
    for cmd in (["score", bundle_dir, golden.files[0][0]],
                ["watch", bundle_dir, tmp_path, "--once"], ["verify", bundle_dir]):
        proc = run_cli(*cmd, cwd=tmp_path)
        assert proc.returncode == 2, (cmd, proc.stderr)
        assert "self-test of bundle" in proc.stderr and "golden/nok_1.png" in proc.stderr


def test_verify_prints_summary(bundle_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("verify", bundle_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] and summary["threshold_id"] == 12 and len(summary["golden"]) == 4


def test_usage_errors_and_help(bundle_dir: Path, tmp_path: Path) -> None:
    assert run_cli("score", bundle_dir, cwd=tmp_path).returncode == 64  # no PATH
    assert run_cli("score", bundle_dir, "x.png", "--backend", "tpu", cwd=tmp_path).returncode == 64
    proc = run_cli("score", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "Exit codes:" in proc.stdout and "64  usage" in proc.stdout


def test_unwritable_results_exit_4(bundle_dir: Path, golden: Golden, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_cli("score", bundle_dir, golden.files[0][0], "--results", blocker / "r.jsonl",
                   cwd=tmp_path)
    assert proc.returncode == 4 and "cannot append results" in proc.stderr


def test_openvino_backend_if_installed(bundle_dir: Path, golden: Golden, tmp_path: Path) -> None:
    proc = run_cli("verify", bundle_dir, "--backend", "openvino", cwd=tmp_path)
    try:
        import openvino  # noqa: F401
    except ImportError:
        assert proc.returncode == 2 and "not installed" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr  # float32: golden parity holds
    paths = [p for p, _ in golden.files]
    ov = run_cli("score", bundle_dir, *paths, "--backend", "openvino", "--threads", "1",
                 cwd=tmp_path)
    ort = run_cli("score", bundle_dir, *paths, cwd=tmp_path)
    assert ov.returncode == ort.returncode == 0, ov.stderr
    a, b = _lines(ov.stdout), _lines(ort.stdout)
    assert [r["verdict"] for r in a] == [r["verdict"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x["score"] - y["score"]) <= 1e-6 + 1e-5 * abs(y["score"])
