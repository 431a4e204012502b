"""train(): both families on six tiny images, checkpoint reload gives identical predictions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import make_config
from engine.errors import InputFileError, UserError
from engine.models.checkpoint import load_checkpoint, load_model
from engine.training.data import make_loader
from engine.training.train import TrainProgress, train


def _write_images(folder, n: int = 6, size=(80, 72)) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = (rng.random((size[1], size[0])) * 50 + 100).astype(np.uint8)  # grayscale, non-square
        p = folder / f"ok_{i}.png"
        Image.fromarray(img, mode="L").save(p)
        paths.append(p)
    return paths


CONFIGS = {
    "ae": {"input_size": "64", "epochs": "1", "batch_size": "2", "num_workers": "0", "device": "cpu",
           "map_weights": "random"},
    "dfr": {"input_size": "64", "map_size": "16", "epochs": "1", "batch_size": "2", "num_workers": "0",
            "backbone_weights": "random", "device": "cpu", "enhance": "true", "enhance_train_share": "0.5"},
}


@pytest.mark.parametrize("model", ["ae", "ae-pixel", "dfr"])
def test_train_writes_a_checkpoint_that_reloads_identically(tmp_path, model: str) -> None:
    paths = _write_images(tmp_path / "imgs")
    pixel = model == "ae-pixel"  # the thesis' map: no feature statistics to fit
    model = "ae" if pixel else model
    cfg = make_config(model, overrides=CONFIGS[model] | ({"ae_map": "pixel"} if pixel else {}))
    roi = np.ones((64, 64), dtype=bool)
    roi[:, :8] = False
    seen: list[TrainProgress] = []
    result = train(cfg, paths, tmp_path / "run", progress=seen.append, roi=roi, eval_images=4)
    assert result.checkpoint.is_file() and result.epochs == 1 and np.isfinite(result.final_loss)
    assert result.device == "cpu" and result.info["train_images"] == [str(p) for p in paths]  # none held out
    assert len(result.info["train_images"]) == 6 and result.info["image_rule"]
    last = "train" if pixel else "statistics"  # the OK statistics pass comes last
    assert seen and seen[-1].fraction == pytest.approx(1.0) and seen[-1].phase == last
    # the ETA covers the evaluation that follows: the last tick still has seconds left for it
    assert seen[-1].eta_s is not None and seen[-1].eta_s > 0
    assert all(np.isfinite(p.loss) for p in seen if p.phase == "train")
    if model == "dfr":
        assert [p.phase for p in seen][0] == "features" and "pca" in {p.phase for p in seen}
        assert 1 <= result.info["latent_dim"] <= 464 and result.info["weights_source"] == "random"
        assert not list((tmp_path / "run").glob("feature_cache*"))  # disposable cache removed
    if model == "ae" and not pixel:
        assert result.info["map_statistics"] == "6 training images" and result.info["weights_source"] == "random"
        assert float(result.model.judge.mean.abs().sum()) > 0  # fitted on the trained model's reconstructions
    if pixel:
        assert result.model.judge is None and "map_statistics" not in result.info
    ckpt = load_checkpoint(result.checkpoint)
    assert {"state_dict", "config", "epoch", "metrics", "roi", "info"} <= ckpt.keys()
    loaded, loaded_cfg = load_model(result.checkpoint, device="cpu")
    assert loaded_cfg == cfg and not loaded.training
    _, x = next(iter(make_loader(paths, cfg, train=False, batch_size=6)))
    a, b = result.model(x), loaded(x)
    assert torch.equal(a.score, b.score) and torch.equal(a.anomaly_map, b.anomaly_map)
    assert float(b.anomaly_map[..., :8].abs().sum()) == 0.0  # ROI restored


def test_dfr_without_feature_cache_and_fixed_latent(tmp_path) -> None:
    paths = _write_images(tmp_path / "imgs", n=4)
    overrides = dict(CONFIGS["dfr"], feature_cache_gb="0", latent_dim="7", stages="1,2",
                     feature_standardise="true", residual_norm="true", position_norm="true", stage_norm="false",
                     train_positions="0.25", enhance="false")
    result = train(make_config("dfr", overrides=overrides), paths, tmp_path / "run")
    assert result.info["latent_dim"] == 7 and result.info["feature_cache"] is False
    loaded, _ = load_model(result.checkpoint, device="cpu")
    norm = loaded.normaliser
    assert float(norm.err_scale.min()) > 0 and not torch.all(loaded.feat_std == 1)
    assert float(norm.pos_mean.min()) > 0 and float(norm.pos_std.min()) > 0
    assert norm.pos_mean.shape == (1, 16, 16) and norm.position_norm


def test_dfr_stage_norm_keeps_statistics_per_stage(tmp_path) -> None:
    paths = _write_images(tmp_path / "imgs", n=4)
    overrides = dict(CONFIGS["dfr"], stages="1,2", position_norm="true", stage_norm="true", enhance="false")
    result = train(make_config("dfr", overrides=overrides), paths, tmp_path / "run")
    loaded, _ = load_model(result.checkpoint, device="cpu")
    norm = loaded.normaliser
    assert loaded.cfg.stage_norm and norm.pos_mean.shape == (2, 16, 16)
    assert float(norm.pos_std.min()) > 0 and not torch.allclose(norm.pos_mean[0], norm.pos_mean[1])
    with pytest.raises(UserError, match="stage_norm=true needs position_norm=true"):
        make_config("dfr", overrides=dict(CONFIGS["dfr"], position_norm="false", stage_norm="true"))


def test_dfr_image_median_cap_is_the_largest_training_median(tmp_path) -> None:
    paths = _write_images(tmp_path / "imgs", n=4)
    overrides = dict(CONFIGS["dfr"], stages="1,2", position_norm="true", stage_norm="true", image_median="true",
                     stage_combine="mean", score_combine="max", enhance="false")
    roi = np.zeros((64, 64), dtype=bool)
    roi[:, :24] = True  # the left 3/8: its medians differ from the whole map's
    result = train(make_config("dfr", overrides=overrides), paths, tmp_path / "run", roi=roi)
    loaded, cfg = load_model(result.checkpoint, device="cpu")
    _, x = next(iter(make_loader(paths, cfg, train=False, batch_size=4)))
    reloaded = loaded(x)  # the checkpoint reproduces the trained model, ROI and score rule included
    assert torch.equal(reloaded.score, result.model(x).score)
    assert torch.equal(reloaded.anomaly_map, result.model(x).anomaly_map)
    assert float(reloaded.anomaly_map[..., 24:].abs().max()) == 0.0  # outside the ROI
    with torch.no_grad():
        z = loaded.normaliser(loaded.errors(loaded.features(x)), subtract_median=False)  # (4, 2, m, m)
        medians = loaded.normaliser.medians(z)  # (4, 2)
    assert torch.allclose(loaded.normaliser.median_cap, medians.amax(dim=0), atol=2e-3)  # training read float16



def test_dfr_nearest_term_weighs_both_maps_on_ok_images_it_was_not_fitted_on(tmp_path) -> None:
    paths = _write_images(tmp_path / "imgs", n=10)
    cfg = make_config("dfr", overrides=dict(CONFIGS["dfr"], enhance="false", nearest_size="600", nearest_grid="8"))
    held = train(cfg, paths[:6], tmp_path / "held", calibration=paths[6:])
    assert held.info["nearest_memory"] == 6 * 64 and held.info["nearest_calibration"] == "4 held-out OK images"
    model = held.model
    _, x = next(iter(make_loader(paths[6:], cfg, train=False, batch_size=4)))
    with torch.no_grad():
        f = model.features(x)
        recon, dist = model.reconstruction_map(f), model.nearest(f)
    tops = [maps.flatten().sort().values for maps in (recon, dist)]  # the "tail" scale: median, 99th percentile
    at = [round(q * (len(tops[0]) - 1)) for q in (0.5, 0.99)]
    assert torch.allclose(model.nearest.calib_mean, torch.stack([v[at[0]] for v in tops]).float(), atol=1e-4)
    assert torch.allclose(model.nearest.calib_std, torch.stack([v[at[1]] - v[at[0]] for v in tops]).float(), atol=1e-4)
    assert float(dist.min()) > 0  # held-out images: none of their cells is in the memory
    # without held-out images: the training images, each without the memory rows it gave (its own
    # cells would be at distance 0 and make every unseen part look far from OK)
    own = train(cfg, paths[:6], tmp_path / "own")
    assert own.info["nearest_calibration"] == "6 training images (without their own memory rows)"
    assert own.info["nearest_calib_mean"][1] > 0.5 * held.info["nearest_calib_mean"][1]
    _, x = next(iter(make_loader(paths[:6], cfg, train=False, batch_size=6)))
    with torch.no_grad():
        closest = float(own.model.nearest(own.model.features(x)).min())
    assert closest < 0.01 * own.info["nearest_calib_mean"][1]  # with them: some cell at ~0 (float16 cache)

def test_dfr_fine_term_is_fitted_from_the_feature_pass_and_calibrated_on_unseen_ok_images(tmp_path) -> None:
    paths = _write_images(tmp_path / "imgs", n=10)
    cfg = make_config("dfr", overrides=dict(CONFIGS["dfr"], enhance="false", nearest_size="600", nearest_grid="8",
                                            fine_grid="16", fine_size="300"))
    assert cfg.fine_on() and cfg.fine_weight == 2.0 and cfg.fine_stage == 2  # the dfr preset's
    held = train(cfg, paths[:6], tmp_path / "held", calibration=paths[6:])
    fine = held.model.fine
    assert held.info["fine_memory"] == 6 * 50 == len(fine.memory) and fine.memory.shape[1] == 40  # 50 an image
    _, x = next(iter(make_loader(paths[6:], cfg, train=False, batch_size=4)))
    with torch.no_grad():
        dist = fine(held.model.features.tapped(x).fine).flatten().sort().values
    at = [round(q * (len(dist) - 1)) for q in (0.5, 0.99)]  # the tail scale of the held-out images' distances
    assert held.info["fine_calib"] == pytest.approx([float(dist[at[0]]), float(dist[at[1]] - dist[at[0]])], abs=1e-4)
    assert float(dist[0]) > 0  # none of their cells is in the memory
    with torch.no_grad():
        pred = held.model(x)
    assert pred.score_map is not None and not torch.allclose(pred.anomaly_map, pred.score_map)
    # without held-out images: the training images, each without the memory rows it gave
    own = train(cfg, paths[:6], tmp_path / "own")
    assert own.info["fine_calib"][0] > 0.5 * held.info["fine_calib"][0]  # not the ~0 of its own rows
    assert own.model.fine.owner is None and held.model.fine.owner is None  # training-time only


@pytest.mark.parametrize("global_stages", ["", "3,6"])
def test_dfr_whole_global_is_fitted_and_calibrated_beside_the_grid(tmp_path, global_stages: str) -> None:
    paths = _write_images(tmp_path / "imgs", n=10)
    cfg = make_config("dfr", overrides=dict(CONFIGS["dfr"], enhance="false", whole_global="true",
                                            global_stages=global_stages))
    for name, calibration in (("held", paths[6:]), ("own", ())):  # held-out images, or cross-fitted
        run = train(cfg, paths[:6], tmp_path / name, calibration=calibration)
        model, cell = run.model, run.model.whole_global
        assert 0 < run.info["whole_global_dim"] == cell.basis.shape[1] <= 6
        channels = 80 + 320 if global_stages else model.features.out_channels  # the pooled stages' or the map's
        assert cell.mean.shape == (channels,) and float(cell.calib_mean[1]) > 0  # calibrated
        _, x = next(iter(make_loader(paths[6:], cfg, train=False, batch_size=4)))
        _, ok = next(iter(make_loader(paths[:6], cfg, train=False, batch_size=6)))
        with torch.no_grad():
            f, _, grid = model.features.tapped(x)
            single = grid if global_stages else f  # what the single cell averages
            peak = model.judge(f, (64, 64))[2]
            expect = model.whole.fuse(peak, model.whole(f), cell.z(cell(single)))
            assert torch.allclose(model(x).score, expect)
            fitted = cell(model.global_input(*model.features.tapped(ok)[::2]))  # its PCA is the training images'
            assert float(fitted.max()) < float(cell(single).min())
    if global_stages:  # the training images' single cells were read as the model reads them: inside the ROI
        roi = np.zeros((64, 64), bool)
        roi[:, :40] = True
        model = train(cfg, paths[:6], tmp_path / "roi", roi=roi, calibration=paths[6:]).model
        cell = model.whole_global
        assert bool(cell.inside[..., :5].all()) and not bool(cell.inside[..., 5:].any())  # 8 cells a side
        with torch.no_grad():
            own = cell.vectors(model.features.tapped(ok).pooled)  # (6, P) the model's own reading
        assert torch.allclose(cell.mean, own.mean(dim=0), atol=1e-5)


def _children_named(comm: str) -> list[int]:
    """Live child processes of this process with that command name (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        state, ppid = rest.split()[:2]
        if int(ppid) == os.getpid() and name.split("(", 1)[1] == comm and state != "Z":
            out.append(int(stat.parent.name))
    return out


def test_no_images_and_bad_images_are_user_errors(tmp_path) -> None:
    cfg = make_config("ae", overrides=CONFIGS["ae"])
    with pytest.raises(UserError, match="no OK training images"):
        train(cfg, [], tmp_path / "run")
    paths = _write_images(tmp_path / "imgs", n=3)
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"not a png")
    cfg = make_config("ae", overrides=dict(CONFIGS["ae"], num_workers="2"))
    with pytest.raises(InputFileError) as err:  # raised in a DataLoader worker, message kept
        train(cfg, [*paths, bad], tmp_path / "run")
    assert "broken.png" in str(err.value) and "Traceback" not in str(err.value)
    # ...and its worker processes are gone although `err` still holds the traceback: forks left
    # behind would keep every file descriptor of this process open (a hang seen in the browser
    # tests' teardown, where they held Playwright's pipe).
    assert _children_named("pt_data_worker") == []
    with pytest.raises(UserError, match="cuda"):
        if torch.cuda.is_available():
            raise UserError("cuda present: nothing to check")
        train(make_config("ae", overrides=dict(CONFIGS["ae"], device="cuda")), paths, tmp_path / "run")
