"""CBAM autoencoder: shapes, prediction type, ROI, top-k rule, and that it learns."""

from __future__ import annotations

import pytest
import torch
from timm.layers.cbam import CbamModule

from engine.config import AEConfig
from engine.models import build_ae
from engine.models.ae import CBAMBlock, RevisedAutoencoder, gaussian_blur
from engine.models.base import Prediction
from engine.models.checkpoint import load_model, save_checkpoint


def _images(n: int = 4, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = 0.5 + 0.25 * torch.sin(x / 6.0) * torch.cos(y / 9.0)  # (S, S)
    return (base + 0.05 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)  # (n, 3, S, S)


@pytest.mark.parametrize("skip", [True, False])
def test_shapes_and_prediction(skip: bool) -> None:
    torch.manual_seed(0)
    model = RevisedAutoencoder(AEConfig(skip=skip))
    x = _images(2, 64)
    assert model.train().reconstruct(x).shape == x.shape  # reconstruction at input size
    pred = model.eval()(x)
    assert isinstance(pred, Prediction)
    assert pred.score.shape == (2,) and pred.anomaly_map.shape == (2, 64, 64)
    assert pred.score_map is None  # the score comes from the heatmap itself
    assert pred.anomaly_map.dtype == torch.float32 and not pred.anomaly_map.requires_grad
    rect = model.eval()(_images(1, 96)[..., :64])  # non-square input
    assert rect.anomaly_map.shape == (1, 96, 64)


def test_architecture_follows_the_thesis() -> None:
    model = RevisedAutoencoder(AEConfig())
    assert [m[0].out_channels for m in (model.enc1, model.enc2, model.enc3, model.enc4)] == [32, 64, 128, 256]
    assert isinstance(model.att1.body[6], CbamModule) and model.att1.body[0].in_channels == 256
    block = CBAMBlock(32)
    assert block.body[3].p == 0.2
    assert block.body[6].channel.fc1.out_channels == 2  # reduction 16
    assert block.body[6].spatial.conv.conv.kernel_size == (7, 7)
    with pytest.raises(ValueError, match="divisible by 16"):
        model.reconstruct(torch.rand(1, 3, 40, 40))


def test_topk_rule_and_roi() -> None:
    model = RevisedAutoencoder(AEConfig()).eval()
    assert model.cfg.topk(512, 512) == 1500 and model.cfg.topk(256, 256) == 375 and model.cfg.topk(64, 64) == 23
    amap = torch.zeros(1, 64, 64)
    amap[0, :5, :5] = 1.0  # 25 hot pixels
    assert float(model.score(amap)) == pytest.approx(1.0)  # top 23 all hot
    roi = torch.ones(64, 64, dtype=torch.bool)
    roi[:10, :10] = False
    model.set_roi(roi)
    assert float(model.score(amap)) == 0.0
    pred = model(_images(1))
    assert float(pred.anomaly_map[0, :10, :10].abs().sum()) == 0.0


def test_loss_uses_ssim_on_unit_range_and_decreases() -> None:
    torch.manual_seed(0)
    model = RevisedAutoencoder(AEConfig())
    x = _images(4)
    model.reconstruct = lambda inp: inp  # perfect reconstruction -> zero loss (data_range=1 SSIM)
    assert float(model.loss(x)) == pytest.approx(0.0, abs=1e-5)
    del model.reconstruct
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    for _ in range(25):
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def _feature_ae(**fields) -> RevisedAutoencoder:
    torch.manual_seed(0)
    cfg = AEConfig(ae_map="features", map_weights="random", input_size=64, **fields)
    return build_ae(cfg).eval()


def test_the_feature_map_judges_each_position_against_the_ok_images() -> None:
    model = _feature_ae()
    judge = model.judge
    x = _images(6, 64)
    g = torch.Generator().manual_seed(1)
    ok_recs = [(x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1) for _ in range(3)]  # OK: small noise
    assert judge.fit(judge.stage_errors(x, r) for r in ok_recs) == 18
    assert judge.mean.shape == judge.std.shape == (3, 16, 16)  # map_stages 1, 2, 3 on a 64 / 4 map
    assert float(judge.std.min()) > 0 and float(judge.mean.abs().sum()) > 0
    rec = ok_recs[0].clone()
    rec[:, :, 40:56, 8:24] = 0.5  # the reconstruction lost what is in one patch
    amap = judge(x, rec)  # (B, H, W)
    assert amap.shape == (6, 64, 64)
    peaks = [divmod(int(a.argmax()), 64) for a in amap]
    assert all(36 <= r < 60 and 4 <= c < 28 for r, c in peaks), peaks
    # an ordinary OK reconstruction is unremarkable: its peak is far below the patch's
    assert float(judge(x, ok_recs[1]).amax()) < 0.5 * float(amap.amax())
    # so is one unusually good: the plain surface where something is missing reconstructs too well
    too_good = ok_recs[1].clone()
    too_good[:, :, 4:28, 36:60] = x[:, :, 4:28, 36:60]  # exact: less error than any OK reconstruction
    inside = (slice(None), slice(12, 20), slice(44, 52))
    assert float(judge(x, too_good)[inside].mean()) > 1.5 * float(judge(x, ok_recs[1])[inside].mean())


def test_the_feature_map_scores_like_the_pixel_map_and_round_trips(tmp_path) -> None:
    model = _feature_ae(topk_at_512=4)  # k = 1 at 64²: the peak
    x = _images(2, 64)
    with torch.no_grad():
        model.judge.fit([model.judge.stage_errors(x, model.reconstruct(x))] * 2)
    roi = torch.ones(64, 64, dtype=torch.bool)
    roi[:, :8] = False
    model.set_roi(roi)
    pred = model(x)
    assert float(pred.anomaly_map[..., :8].abs().sum()) == 0.0 and pred.score_map is None
    assert torch.allclose(pred.score, pred.anomaly_map[..., 8:].flatten(1).amax(1))
    path = save_checkpoint(tmp_path / "ae.pt", model, model.cfg, 1, roi=roi.numpy())
    loaded, cfg = load_model(path, device="cpu")
    assert cfg.ae_map == "features" and loaded.judge is not None
    again = loaded(x)
    assert torch.allclose(again.anomaly_map, pred.anomaly_map) and torch.allclose(again.score, pred.score)


def test_the_pixel_map_has_no_judge_and_a_blur_keeps_a_peak_where_it_was() -> None:
    assert build_ae(AEConfig()).judge is None
    spot = torch.zeros(1, 1, 32, 32)
    spot[0, 0, 10, 20] = 1.0
    blurred = gaussian_blur(spot, 2.0)
    assert divmod(int(blurred.argmax()), 32) == (10, 20)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-4) and float(blurred.max()) < 0.1
    assert torch.equal(gaussian_blur(spot, 0), spot)
