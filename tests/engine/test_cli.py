"""`prefilter-qa` as a user runs it: exit codes, one-line errors, JSON shapes, idempotent import."""

from __future__ import annotations

import json
from pathlib import Path

from tests import fixtures_files as ff
from tests.conftest import cli


def _mixed_folder(root: Path) -> Path:
    """Good images (16-bit, RGBA among them) and broken files, in the seed layout."""
    ff.make_seed_dataset(root, n_train=3, n_test_ok=1, defects={"scratch": 2})
    ff.make_16bit_png(root / "train/ok/sixteen.png", (64, 64))
    ff.make_rgba_png(root / "train/ok/alpha.png", (64, 64))
    ff.make_truncated_jpeg(root / "train/ok/truncated.jpg")
    ff.make_zero_byte(root / "train/ok/empty.png")
    ff.make_text_as_png(root / "test/ok/notes.png")
    ff.make_good_png(root / "test/nok/scratch/wrongmask.png", (64, 64), seed=77)
    ff.make_mask(root / "test/masks/nok/scratch/wrongmask.png", (32, 32))
    return root


def test_import_reports_every_broken_file_and_imports_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    folder = _mixed_folder(tmp_path / "mixed")
    out = cli("import", str(folder), "--name", "mixed", "--json", home=home)
    report = json.loads(out.stdout)
    assert report["dataset"] == "mixed"
    assert report["imported"] == {"train_ok": 5, "test_ok": 1, "test_nok": 3, "masks": 2}
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) >= {"truncated.jpg", "empty.png", "notes.png", "wrongmask.png"}
    assert "truncated" in reasons["truncated.jpg"] and "0 bytes" in reasons["empty.png"]
    assert "not an image" in reasons["notes.png"] and "32×32" in reasons["wrongmask.png"]

    again = json.loads(cli("import", str(folder), "--name", "mixed", "--json", home=home).stdout)
    assert again["imported"] == {"train_ok": 0, "test_ok": 0, "test_nok": 0, "masks": 0}
    assert again["unchanged"] == 9

    listed = json.loads(cli("datasets", "--json", home=home).stdout)
    assert listed == [{"name": "mixed", "train_ok": 5, "test_ok": 1, "test_nok": 3, "masks": 2,
                       "unlabelled": 0, "total": 9, "missing": 0}]


def test_import_exit_status_two_without_usable_images(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    missing = cli("import", str(tmp_path / "nope"), "--name", "x", home=home, check=False)
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    ff.make_zero_byte(broken / "a.png")
    ff.make_text_as_png(broken / "b.png")
    res = cli("import", str(broken), "--name", "x", home=home, check=False)
    assert res.returncode == 2 and "no usable images" in res.stderr


def test_layouts_mvtec_and_flat(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    mv = json.loads(cli("import", str(ff.make_mvtec_dataset(tmp_path / "mv")), "--name", "mv", "--json",
                        home=home).stdout)
    assert mv["layout"] == "mvtec"
    assert mv["imported"] == {"train_ok": 3, "test_ok": 2, "test_nok": 3, "masks": 3}
    flat = tmp_path / "flat"
    for i in range(3):
        ff.make_good_png(flat / f"{i}.png", seed=i)
    fl = json.loads(cli("import", str(flat), "--name", "fl", "--json", home=home).stdout)
    assert fl["layout"] == "flat" and fl["imported"]["unlabelled"] == 3


def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    cases = [
        (["train", "--dataset", "nope", "--model", "dfr"], "no dataset named 'nope'"),
        (["runs", "42"], "no run 42"),
        (["cancel", "9"], "no job 9"),
        (["evaluate", "--run", "3"], "no run 3"),
        (["predict", "--run", "5", "x.png"], "no run 5"),
    ]
    for args, message in cases:
        res = cli(*args, home=home, check=False)
        assert res.returncode == 1, (args, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_train_refuses_dataset_without_ok_training_images_and_bad_settings(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    flat = tmp_path / "flat"
    ff.make_good_png(flat / "a.png")
    cli("import", str(flat), "--name", "fl", home=home)
    res = cli("train", "--dataset", "fl", "--model", "ae", home=home, check=False)
    assert res.returncode == 1 and "no OK training images" in res.stderr
    res = cli("train", "--dataset", "fl", "--model", "ae", "--set", "nonsense=1", home=home, check=False)
    assert res.returncode == 1 and "nonsense" in res.stderr
    assert json.loads(cli("jobs", "--json", home=home).stdout) == []


def test_demo_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    args = ["demo", "--size", "64", "--train-ok", "6", "--test-ok", "2", "--test-nok", "3", "--json"]
    first = json.loads(cli(*args, home=home).stdout)
    assert first["dataset"] == "demo"
    assert first["imported"] == {"train_ok": 6, "test_ok": 2, "test_nok": 3, "masks": 3}
    second = json.loads(cli(*args, home=home).stdout)
    assert second["unchanged"] == 11 and second["imported"]["train_ok"] == 0


def test_first_start_queues_one_dfr_training_of_the_demo(tmp_path: Path) -> None:
    """`make run` calls `demo --first-training`: one DFR training on an empty workspace, never a second."""
    home = tmp_path / "ws"
    args = ["demo", "--size", "64", "--train-ok", "6", "--test-ok", "2", "--test-nok", "3", "--first-training"]
    proc = cli(*args, home=home)
    assert "queued a first DFR training of 'demo'" in proc.stderr
    runs = json.loads(cli("runs", "--json", home=home).stdout)
    assert len(runs) == 1 and runs[0]["model"] == "dfr" and runs[0]["status"] == "queued"
    jobs = json.loads(cli("jobs", "--json", home=home).stdout)
    assert [j["kind"] for j in jobs] == ["train"]
    again = cli(*args, home=home)
    assert "queued" not in again.stderr and len(json.loads(cli("runs", "--json", home=home).stdout)) == 1


def test_a_run_with_the_band_policy_stores_its_first_threshold_with_the_suggested_band(tiny_demo: Path,
                                                                                        tmp_path: Path) -> None:
    """auto_review_band (carried by a retrain from the reviewed threshold) reaches the stored threshold."""
    home = tmp_path / "ws"
    cli("import", str(tiny_demo), "--name", "tiny", home=home)
    out = cli("train", "--dataset", "tiny", "--model", "ae", "--set", "input_size=64", "--set", "epochs=1",
              "--set", "num_workers=0", "--set", "auto_threshold=zero_escape", "--set", "auto_review_band=true",
              "--wait", "--json", home=home)
    info = json.loads(out.stdout)
    t = info["threshold"]
    lo, hi = t["review_band"]
    assert t["rule"] == "zero_escape" and lo <= t["image"] <= hi and t["set_by"] == "auto"
