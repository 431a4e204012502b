"""Release to the line: exact ONNX export of both families (ROI, median, score rule), the bundle
through `prefilter-qa export`, its verdicts on the line scorer (torch blocked) equal to `predict`'s,
and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import make_config
from engine.models import build_ae, build_dfr, build_features
from engine.release.graph import export_onnx, onnx_outputs, torch_outputs
from tests.conftest import cli, copy_workspace, demo_test_images, line_cli


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "ae":
        return build_ae(make_config("ae", overrides={"input_size": "64"})).eval()
    # the dfr preset (stage z-scores, median, the heatmap sharpened by the fine term), with the score
    # from the most unusual stage (auto's fine-detail candidate): a score map besides the heatmap
    cfg = make_config("dfr", overrides={"input_size": "64", "map_size": "16", "backbone_weights": "random",
                                        "score_combine": "max"})
    model = build_dfr(cfg, build_features(cfg), 12).eval()
    for name in ("pos_mean", "pos_std", "median_cap"):
        buf = getattr(model.normaliser, name)
        buf.copy_(torch.rand_like(buf) + 0.5)
    with torch.no_grad():  # the whole-image term fitted on a few random images
        model.whole.fit(model.whole.vectors(model.features(torch.rand(10, 3, 64, 64))), 0.9)
        model.whole.calibrate(torch.rand(10) + 1, torch.rand(10) * model.whole(model.features(torch.rand(1, 3, 64, 64))))
        f_ok = model.features(torch.rand(10, 3, 64, 64))  # the nearest-feature memory, the same way
        model.nearest.fit(iter([model.nearest.cells(f_ok)]), n=10, size=200, seed=0)
        model.nearest.calibrate(model.reconstruction_map(f_ok), model.nearest(f_ok))
        fine_ok = model.features.tapped(torch.rand(10, 3, 64, 64)).fine  # the fine term's memory (the preset's)
        model.fine.fit(iter([model.fine.cells(fine_ok)]), n=10, size=200, seed=0)
        model.fine.calibrate(None, model.fine(fine_ok))
    return model


@pytest.mark.parametrize("kind", ["ae", "dfr"])
def test_models_export_to_onnx_exactly(kind: str, tmp_path: Path) -> None:
    model = _model(kind)
    roi = np.zeros((64, 64), bool)
    roi[4:60, 10:64] = True
    model.set_roi(roi)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    images[1] //= 4  # a darker part
    export_onnx(model, 64, tmp_path / "m.onnx")
    (ts, tm), (os_, om) = torch_outputs(model, images), onnx_outputs(tmp_path / "m.onnx", images)
    assert np.all(np.abs(os_ - ts) <= 1e-5 * np.abs(ts) + 1e-7)
    assert np.abs(om - tm).max() <= 1e-4 * (tm.max() - tm.min())
    assert np.all(tm[:, ~roi] == 0) and np.all(om[:, ~roi] == 0)  # the ROI travels in the graph
    one = onnx_outputs(tmp_path / "m.onnx", images[:1])  # dynamic batch
    assert one[0].shape == (1,) and abs(float(one[0][0] - os_[0])) <= 1e-5 * abs(float(ts[0])) + 1e-7


def test_the_exportable_dfr_computes_what_the_method_says() -> None:
    """Median over the ROI's map positions and the max score inside the ROI, computed here with
    boolean indexing and torch.median (what the model did before it became exportable)."""
    model = _model("dfr")
    roi = torch.zeros(64, 64, dtype=torch.bool)
    roi[:, :40] = True
    model.set_roi(roi)
    x = torch.rand(2, 3, 64, 64)
    pred = model(x)
    with torch.no_grad():
        norm = model.normaliser
        z = (norm.group_maps(model.errors(model.features(x))) - norm.pos_mean) / norm.pos_std  # (2, G, 16, 16)
        inside = torch.nn.functional.adaptive_avg_pool2d(roi.float()[None, None], 16)[0, 0] >= 0.5
        med = z.flatten(2)[..., inside.flatten()].median(dim=-1).values
        z = z - torch.minimum(med, norm.median_cap)[..., None, None]
        up = lambda m: torch.nn.functional.interpolate(m[:, None], size=(64, 64), mode="bilinear")[:, 0] * roi  # noqa: E731
        dist = model.nearest(model.features(x))  # (2, 16, 16) distance to the nearest OK cell
        fine = model.fine(model.features.tapped(x).fine)  # (2, 16, 16) the same on the fine stage
    assert torch.allclose(pred.anomaly_map, up(model.fine.refine(model.nearest.fuse(z.mean(1), dist), fine)), atol=1e-5)
    peak = up(model.nearest.fuse(z.amax(1), dist)).flatten(1)[:, roi.flatten()].amax(1)
    with torch.no_grad():
        whole = model.whole(model.features(x) * inside.float())  # the ROI's cells only
    assert torch.allclose(pred.score, model.whole.fuse(peak, whole), atol=1e-4)


@pytest.mark.parametrize("family", ["dfr", "ae"])
def test_export_bundle_gives_predicts_verdicts_on_the_line(trained_workspace, tiny_demo: Path, tmp_path: Path,
                                                           family: str) -> None:
    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    run_id = getattr(trained_workspace, f"{family}_run")
    out = tmp_path / "bundle"
    release = json.loads(cli("export", "--run", str(run_id), "--out", str(out), "--note", "line 3",
                             "--user", "erika", "--json", home=home).stdout)
    assert release["status"] == "succeeded" and release["created_by"] == "erika" and release["note"] == "line 3"
    meta = json.loads((out / "bundle.json").read_text())
    assert release["bundle_sha256"] == __import__("hashlib").sha256((out / "bundle.json").read_bytes()).hexdigest()
    assert meta["run_id"] == run_id and meta["threshold"]["image"] == release["threshold"]["image"]
    assert set(meta["files"]) >= {"model.onnx", "golden/golden.json"}
    golden = json.loads((out / "golden" / "golden.json").read_text())
    assert {g["label"] for g in golden} == {"ok", "nok"}

    ok, nok = demo_test_images(tiny_demo)
    images = ok[:6] + nok[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    line = line_cli("score", str(out), *map(str, images), str(broken), "--results", str(tmp_path / "r.jsonl"),
                 cwd=tmp_path)
    assert line.returncode == 3, line.stderr  # one image was an ERROR
    rows = [json.loads(x) for x in line.stdout.splitlines()]
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(broken.resolve())]["verdict"] == "ERROR"
    predicted = json.loads(cli("predict", "--run", str(run_id), *map(str, images), "--json", home=home).stdout)
    threshold = release["threshold"]["image"]
    for p in predicted:
        got = by_path[str(Path(p["path"]).resolve())]
        assert got["score"] == pytest.approx(p["score"], rel=1e-4, abs=1e-6)
        if p["score"] != pytest.approx(threshold, rel=1e-4, abs=1e-6):  # F1-max sits on a test image's
            assert got["verdict"] == p["verdict"], (p, got)  # score: float32 may put that one either side
        assert got["bundle_sha"] == release["bundle_sha256"]


def test_export_refusals(trained_workspace, tmp_path: Path) -> None:
    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.txt").write_text("keep me")
    bad = cli("export", "--run", str(trained_workspace.dfr_run), "--out", str(taken), home=home, check=False)
    assert bad.returncode == 1 and "not an empty folder" in bad.stderr and (taken / "x.txt").read_text() == "keep me"
    none = cli("export", "--run", "999", "--out", str(tmp_path / "b"), home=home, check=False)
    assert none.returncode == 1 and "no run 999" in none.stderr and not (tmp_path / "b").exists()
    other = cli("export", "--run", str(trained_workspace.dfr_run), "--threshold", "999999", "--out",
                str(tmp_path / "c"), home=home, check=False)
    assert other.returncode == 1 and "has no threshold 999999" in other.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_release_job_writes_bundle_and_zip(trained_workspace, tmp_path: Path) -> None:
    import zipfile

    from db import connect
    from db import releases as relq
    from db.auth import system_actor
    from engine.jobs.queue import submit_release

    home = copy_workspace(trained_workspace.home, tmp_path / "ws")
    sessions = connect(f"sqlite:///{home / 'prefilter-qa.db'}")
    with sessions.begin() as s:
        job, release_id = submit_release(s, run_id=trained_workspace.dfr_run, actor=system_actor("erika"),
                                         note="first")
    cli("worker", "--once", home=home)
    with sessions.begin() as s:
        r = relq.get_release(s, release_id)
        assert r.status == "succeeded", r.error
        assert Path(r.path) == home / "releases" / f"release-{release_id}" and r.bundle_sha256
    with zipfile.ZipFile(home / "releases" / f"release-{release_id}.zip") as zf:
        assert f"release-{release_id}/bundle.json" in zf.namelist()
