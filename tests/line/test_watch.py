"""watch: each new image once (across restarts), complete files only, safe hot reload."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prefilter_qa_line import Scorer, open_scorer, verdict
from prefilter_qa_line.watch import Watcher

from tests import fixtures_files as ff
from tests.line.bundles import part_image, rewrite_bundle
from tests.line.conftest import LINE, Golden, run_cli


class Loads:
    """The watcher's loader, counting how often a new bundle was tried."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, root: Path) -> Scorer:
        self.calls += 1
        return open_scorer(root)


def _watcher(bundle_dir: Path, folder: Path, results: Path, **kw) -> tuple[Watcher, Loads]:
    loads = Loads()
    return Watcher(open_scorer(bundle_dir), folder, results, loads, **kw), loads


def _retarget(bundle_dir: Path, image: float, tid: int, golden: Golden) -> None:
    """A good new release: another threshold, golden scores (torch's) and verdicts re-derived."""
    def change(meta: dict, entries: list[dict]) -> None:
        meta["threshold"].update(id=tid, image=image, review_band=None)
        for g, s in zip(entries, golden.scores):
            g["score"] = s
            g["verdict"] = verdict(g["score"], image, None)

    rewrite_bundle(bundle_dir, change)


def _break(bundle_dir: Path) -> None:
    """A bad new release: consistent hashes, but a golden score off by 1e-3 relative."""
    rewrite_bundle(bundle_dir, lambda m, g: (g[0].update(score=g[0]["score"] * 1.001),
                                             m["threshold"].update(id=99)))


def test_new_files_scored_once_when_complete(bundle_dir: Path, tmp_path: Path) -> None:
    cam = tmp_path / "cam"
    part_image(cam / "a.png", False, 1)
    part_image(cam / "b.png", True, 2)
    part_image(cam / ".hidden.png", False, 3)
    (cam / "notes.txt").write_text("x")
    part_image(cam / "sub" / "c.png", False, 4)  # sub-folders are not watched
    w, _ = _watcher(bundle_dir, cam, tmp_path / "r.jsonl")
    assert w.poll_once() == []  # first sight: maybe still being written
    got = w.poll_once()
    assert [(Path(r.path).name, r.verdict) for r in got] == [("a.png", "OK"), ("b.png", "NOK")]
    assert w.poll_once() == []
    part_image(cam / "d.jpg", False, 5)
    assert w.poll_once() == [] and [Path(r.path).name for r in w.poll_once()] == ["d.jpg"]
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [Path(json.loads(x)["path"]).name for x in lines] == ["a.png", "b.png", "d.jpg"]


def test_growing_and_empty_files_wait(bundle_dir: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cam = tmp_path / "cam"
    cam.mkdir()
    data = part_image(tmp_path / "src.png", True, 7).read_bytes()
    (cam / "part.png").write_bytes(data[: len(data) // 2])
    ff.make_zero_byte(cam / "empty.png")
    w, _ = _watcher(bundle_dir, cam, tmp_path / "r.jsonl")
    w.poll_once()
    with open(cam / "part.png", "ab") as fh:  # the camera finishes writing
        fh.write(data[len(data) // 2:])
    assert w.poll_once() == []  # size changed since the last poll
    got = w.poll_once()
    assert [(Path(r.path).name, r.verdict) for r in got] == [("part.png", "NOK")]
    old = time.time() - 3600
    os.utime(cam / "empty.png", (old, old))  # still empty long after creation
    assert w.poll_once() == []  # (its mtime just changed)
    got = w.poll_once()
    assert [(Path(r.path).name, r.verdict, r.error) for r in got] == \
        [("empty.png", "ERROR", "empty file (0 bytes)")]
    assert w.errors == 1


def test_restart_does_not_rescore(bundle_dir: Path, tmp_path: Path) -> None:
    cam, results = tmp_path / "cam", tmp_path / "r.jsonl"
    part_image(cam / "a.png", False, 1)
    ff.make_text_as_png(cam / "bad.png")
    w, _ = _watcher(bundle_dir, cam, results)
    w.poll_once()
    assert len(w.poll_once()) == 2
    with open(results, "a") as fh:
        fh.write('{"path": "torn li')  # a crash mid-line must not poison the file
    w2, _ = _watcher(bundle_dir, cam, results)  # restart
    assert w2.poll_once() == [] and w2.poll_once() == []
    part_image(cam / "c.png", False, 3)
    w2.poll_once()
    assert [Path(r.path).name for r in w2.poll_once()] == ["c.png"]
    rows = [json.loads(x) for x in results.read_text().splitlines() if x.startswith('{"path": "/')]
    assert [Path(r["path"]).name for r in rows] == ["a.png", "bad.png", "c.png"]


def test_hot_reload_switches_between_two_images(bundle_dir: Path, tmp_path: Path,
                                                golden: Golden) -> None:
    cam = tmp_path / "cam"
    part_image(cam / "a.png", True, 1)
    part_image(cam / "b.png", True, 2)
    os.utime(cam / "b.png", (time.time() + 5, time.time() + 5))  # b arrives after a
    emitted = []

    def emit(r) -> None:  # a new release lands while a's verdict is being written
        emitted.append(r)
        if len(emitted) == 1:
            _retarget(bundle_dir, 0.3, 13, golden)

    w, loads = _watcher(bundle_dir, cam, tmp_path / "r.jsonl", emit=emit)
    old_sha = w.scorer.sha
    w.poll_once()
    a, b = w.poll_once()
    assert (a.threshold_id, a.bundle_sha, a.verdict) == (12, old_sha, "NOK")
    assert (b.threshold_id, b.verdict) == (13, "OK") and b.bundle_sha != old_sha
    assert loads.calls == 1 and w.scorer.sha == b.bundle_sha


def test_bad_new_bundle_keeps_the_old_one_serving(bundle_dir: Path, tmp_path: Path,
                                                   golden: Golden,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cam = tmp_path / "cam"
    cam.mkdir()
    w, loads = _watcher(bundle_dir, cam, tmp_path / "r.jsonl")
    old_sha = w.scorer.sha
    _break(bundle_dir)
    with caplog.at_level(logging.ERROR, logger="prefilter_qa_line"):
        w.poll_once()
    assert "refused, still serving" in caplog.text and "self-test" in caplog.text
    part_image(cam / "a.png", True, 1)
    w.poll_once()
    (r,) = w.poll_once()
    assert (r.bundle_sha, r.threshold_id, r.verdict) == (old_sha, 12, "NOK")
    assert loads.calls == 1  # the same refused bundle is not retried on every poll
    _retarget(bundle_dir, 0.3, 14, golden)  # the fixed release
    w.poll_once()
    assert loads.calls == 2 and w.scorer.bundle.threshold.id == 14


def test_watch_once_cli_survives_restart(bundle_dir: Path, tmp_path: Path) -> None:
    cam, results = tmp_path / "cam", tmp_path / "r.jsonl"
    part_image(cam / "a.png", False, 1)
    ff.make_truncated_png(cam / "cut.png")
    args = ["watch", bundle_dir, cam, "--results", results, "--once", "--poll", "0.2"]
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 3, first.stderr  # one ERROR
    assert len(first.stdout.splitlines()) == 2
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == ""
    assert len(results.read_text().splitlines()) == 2


def test_watch_service_scores_and_stops_on_sigterm(bundle_dir: Path, tmp_path: Path) -> None:
    cam, results = tmp_path / "cam", tmp_path / "r.jsonl"
    cam.mkdir()
    env = dict(os.environ, PYTHONPATH=str(LINE))
    proc = subprocess.Popen([sys.executable, "-m", "prefilter_qa_line", "watch", str(bundle_dir),
                             str(cam), "--results", str(results), "--poll", "0.1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        part_image(cam / "a.png", True, 1)
        deadline = time.time() + 60
        while time.time() < deadline and not (results.exists() and results.read_text()):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0])["verdict"] == "NOK"


def test_bundle_written_in_the_wrong_order_is_retried_once_complete(
        bundle_dir: Path, tmp_path: Path, golden: Golden) -> None:
    cam = tmp_path / "cam"
    cam.mkdir()
    w, loads = _watcher(bundle_dir, cam, tmp_path / "r.jsonl")
    gj = bundle_dir / "golden" / "golden.json"
    old_golden = gj.read_bytes()
    _retarget(bundle_dir, 0.3, 15, golden)  # the new release's bundle.json ...
    new_golden = gj.read_bytes()
    gj.write_bytes(old_golden)  # ... landed before its golden.json
    w.poll_once()
    assert loads.calls == 1 and w.scorer.bundle.threshold.id == 12  # refused: sha mismatch
    w.poll_once()
    assert loads.calls == 1
    gj.write_bytes(new_golden)  # the exporter catches up
    w.poll_once()
    assert loads.calls == 2 and w.scorer.bundle.threshold.id == 15


def test_stop_is_honoured_between_images(bundle_dir: Path, tmp_path: Path) -> None:
    cam = tmp_path / "cam"
    for i in range(3):
        part_image(cam / f"p{i}.png", False, i)
    stop = threading.Event()
    w, _ = _watcher(bundle_dir, cam, tmp_path / "r.jsonl", emit=lambda r: stop.set())
    w.poll_once()  # first sight
    w.run(0.01, stop)  # stops after the first verdict, not after the backlog
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1
