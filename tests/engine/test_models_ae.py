"""CBAM autoencoder: shapes, prediction type, ROI, top-k rule, and that it learns."""

from __future__ import annotations

import pytest
import torch
from timm.layers.cbam import CbamModule

from engine.config import AEConfig
from engine.models.ae import CBAMBlock, RevisedAutoencoder
from engine.models.base import Prediction


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
