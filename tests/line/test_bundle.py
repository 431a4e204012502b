"""A bundle serves only if every file verifies, the image rule is ours and golden/ re-scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prefilter_qa_line import BundleError, SelfTestError, bundle_sha, load_bundle, open_scorer, verdict

from tests.line.bundles import rewrite_bundle


def test_good_bundle_verifies_and_passes_self_test(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert b.sha == bundle_sha(bundle_dir) and len(b.sha) == 64
    assert b.size == 64 and not b.enhance and b.threshold.id == 12
    assert b.threshold.review_band == (0.1, 0.2) and len(b.golden) == 4
    rows = open_scorer(bundle_dir).self_test()
    assert [r["got_verdict"] for r in rows] == [r["verdict"] for r in rows] == \
        ["OK", "OK", "NOK", "NOK"]
    for r in rows:  # onnxruntime vs the torch scores recorded at export
        assert abs(r["got_score"] - r["score"]) <= 1e-6 + 1e-5 * abs(r["score"])


def test_tampered_model_refused(bundle_dir: Path) -> None:
    model = bundle_dir / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.onnx: sha256 [0-9a-f]{64} does not match"):
        load_bundle(bundle_dir)


def test_tampered_golden_image_refused(bundle_dir: Path) -> None:
    (bundle_dir / "golden" / "ok_0.png").write_bytes(
        (bundle_dir / "golden" / "ok_1.png").read_bytes())
    with pytest.raises(BundleError, match="golden/ok_0.png: sha256"):
        load_bundle(bundle_dir)


def test_golden_verdict_change_refused(bundle_dir: Path) -> None:
    def flip(meta: dict, golden: list[dict]) -> None:
        golden[0]["verdict"] = "NOK"  # a consistently re-hashed bundle that lies about ok_0

    rewrite_bundle(bundle_dir, flip)
    load_bundle(bundle_dir)  # the files verify ...
    with pytest.raises(SelfTestError, match=r"golden/ok_0.png: verdict OK .* the bundle says NOK"):
        open_scorer(bundle_dir)  # ... but the self-test refuses


def test_golden_score_outside_tolerance_refused(bundle_dir: Path) -> None:
    def nudge(meta: dict, golden: list[dict]) -> None:
        golden[2]["score"] *= 1.001  # same verdict, score off by 1e-3 relative

    rewrite_bundle(bundle_dir, nudge)
    with pytest.raises(SelfTestError, match=r"golden/nok_0.png: score .* differs from .* > atol"):
        open_scorer(bundle_dir)


def test_threshold_change_without_golden_update_refused(bundle_dir: Path) -> None:
    def move(meta: dict, golden: list[dict]) -> None:
        meta["threshold"].update(image=0.3, review_band=None)  # NOK golden images now OK

    rewrite_bundle(bundle_dir, move)
    with pytest.raises(SelfTestError, match="golden.json says NOK for score"):
        open_scorer(bundle_dir)


@pytest.mark.parametrize("change, message", [
    (lambda m, g: m.update(format_version=2), "format_version 2 is not supported"),
    (lambda m, g: m["input"].update(image_rule="exif-transpose; something else"),
     "exported with the image rule"),
    (lambda m, g: m["input"].update(layout="NCHW"), "input must be NHWC uint8"),
    (lambda m, g: m["threshold"].update(review_band=[0.15, 0.2]), "must contain the threshold"),
    (lambda m, g: m["threshold"].update(image=None), "threshold.image must be a finite number"),
    (lambda m, g: m.update(map_range=[1.0, 0.0]), "map_range must be null or"),
    (lambda m, g: g.append({"file": "../../etc/passwd", "label": "ok", "score": 0.0,
                            "verdict": "OK"}), "is not a relative path inside the bundle"),
    (lambda m, g: g.clear(), "must be a non-empty list"),
    (lambda m, g: m.update(parity=[1]), "parity must be an object"),
    (lambda m, g: m["parity"].update(score_rtol=-1), "parity.score_rtol must be a number >= 0"),
])
def test_malformed_bundle_refused(bundle_dir: Path, change, message: str) -> None:
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    golden = json.loads((bundle_dir / "golden" / "golden.json").read_text())
    change(meta, golden)
    (bundle_dir / "golden" / "golden.json").write_text(json.dumps(golden))
    files = {"model.onnx", "golden/golden.json"} | {f"golden/{e['file']}" for e in golden
                                                     if ".." not in e["file"]}
    from tests.line.bundles import sha256

    meta["files"] = {f: sha256((bundle_dir / f).read_bytes()) for f in sorted(files)}
    if any(".." in e["file"] for e in golden):
        meta["files"]["../../etc/passwd"] = "0" * 64
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_unlisted_model_and_missing_folder_refused(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read bundle.json"):
        load_bundle(tmp_path / "nowhere")
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    del meta["files"]["model.onnx"]
    (bundle_dir / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="files does not list model.onnx"):
        load_bundle(bundle_dir)


def test_model_not_matching_contract_refused(bundle_dir: Path) -> None:
    rewrite_bundle(bundle_dir, lambda m, g: m["input"].update(size=32))
    with pytest.raises(BundleError,
                       match=r"model input 'image' has shape .* needs \[None, 32, 32, 3\]"):
        open_scorer(bundle_dir)


def test_verdict_rule_is_engines() -> None:
    from engine.evaluation import metrics
    scores = np.r_[np.linspace(-1, 2, 301), 0.1, 0.14, 0.2, np.nextafter(0.14, 0), np.inf, -np.inf]
    for thr, band in ((0.14, None), (0.14, (0.1, 0.2)), (0.14, (0.14, 0.14)), (0.5, (0.1, 0.5))):
        theirs = metrics.verdicts(scores, thr, band)
        assert [verdict(s, thr, band) for s in scores] == list(theirs), (thr, band)
    with pytest.raises(BundleError, match="must contain the threshold"):
        verdict(0.5, 0.3, (0.4, 0.6))


def test_any_wrongly_typed_field_is_a_bundle_error(bundle_dir: Path) -> None:
    """Whatever an exporter bug writes, the answer is BundleError, never a crash."""
    good = json.loads((bundle_dir / "bundle.json").read_text())
    fields = [(k,) for k in good] + [("input", k) for k in good["input"]] + \
        [("threshold", k) for k in good["threshold"]]
    for path in fields:
        for bad in (None, "x", [1, 2, 3], {"a": 1}, -1, True):
            meta = json.loads(json.dumps(good))
            parent = meta if len(path) == 1 else meta[path[0]]
            parent[path[-1]] = bad
            (bundle_dir / "bundle.json").write_text(json.dumps(meta))
            try:
                load_bundle(bundle_dir)
            except BundleError:
                pass
