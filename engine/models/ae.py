"""The thesis' CBAM convolutional autoencoder (`RevisedAutoencoder`) as a pure nn.Module.

Encoder: four Conv(4, s2, p1)+BN+ReLU, 3→32→64→128→256; bottleneck 1×1 conv 256→128+BN+ReLU.
Decoder: ConvT 128→128, concatenated with the 3rd encoder output (the one skip), a CBAM block
over those 256 channels, first 128 channels kept + BN; ConvT 128→64 + CBAM block + BN; ConvT
64→32 + CBAM block + BN; ConvT 32→3 + sigmoid.

Anomaly map (`ae_map`): 'pixel' (the thesis): mean over the RGB channels of the squared
reconstruction error (the quantity the MSE term of the loss trains down; the SSIM term shapes the
reconstruction but is a windowed statistic, too blurry for a pixel map). 'features': input and
reconstruction compared where a frozen pretrained EfficientNet looks (`FeatureJudge`): a pixel
error is large wherever a part has fine texture or strong edges, OK or not; a feature error
judged per position against the OK training images is large where the reconstruction lost
something that is unusual *there*.
Image score: mean of the k largest map pixels, k = round(topk_at_512 · H·W / 512²) (`AEConfig.topk`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from timm.layers.cbam import CbamModule
from torch import nn

from engine.config import AEConfig
from engine.models.base import AnomalyModel, Prediction
from engine.models.dfr.features import StageFeatures

# a stage's spread at a position is at least this share of its mean spread: a position where the
# OK training images all agree must not turn a rounding difference into a large z-score
SPREAD_FLOOR = 0.1


class CBAMBlock(nn.Module):
    """conv3×3+BN+ReLU, dropout, conv3×3+BN, CBAM (channel avg+max r=1/16, spatial 7×7), ReLU.

    timm's CbamModule is the original CBAM (shared MLP over avg- and max-pooled descriptors with
    reduction 16, then a 7×7 conv+BN over channel mean/max); its MLP has no bias.
    """

    def __init__(self, channels: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            CbamModule(channels, rd_ratio=1.0 / 16, spatial_kernel_size=7),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, 1, H, W) -> the same, blurred by a Gaussian of `sigma` pixels (reflected at the border)."""
    if sigma <= 0:
        return x
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))


class FeatureJudge(nn.Module):
    """Input and reconstruction compared in a frozen pretrained backbone's stages.

    Per stage: the squared feature difference averaged over the stage's channels, on the m × m
    map; as a z-score per map position against the OK training images' (mean, spread; the spread
    at least SPREAD_FLOOR of the stage's mean spread), its magnitude — a reconstruction unusually
    good is as telling as one unusually poor: where a label or a piece of geometry is missing, the
    plain surface left reconstructs better than the detail an OK part has there —; the stages'
    magnitudes summed, brought to the input size and blurred (Gaussian, `blur` pixels).
    """

    def __init__(self, features: StageFeatures, blur: float) -> None:
        super().__init__()
        self.features, self.blur = features, float(blur)
        s, m = len(features.channels), features.map_size
        self.register_buffer("mean", torch.zeros(s, m, m))
        self.register_buffer("std", torch.ones(s, m, m))

    @torch.no_grad()
    def stage_errors(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) input and reconstruction -> (B, S, m, m) per-stage feature errors."""
        diff = (self.features(x) - self.features(rec)) ** 2  # (B, C, m, m)
        return torch.stack([d.mean(dim=1) for d in diff.split(self.features.channels, dim=1)], dim=1)

    def fit(self, errors: Iterable[torch.Tensor]) -> int:
        """Mean and spread per stage and position from OK images' `stage_errors`; returns the image count."""
        n, total, squares = 0, 0.0, 0.0
        for e in errors:
            e = e.double()
            n, total, squares = n + len(e), total + e.sum(0), squares + (e * e).sum(0)
        if n < 2:
            raise ValueError(f"the feature map's statistics need at least 2 OK images, got {n}")
        mean = total / n
        std = ((squares - n * mean * mean).clamp_min(0) / (n - 1)).sqrt()
        std = std + SPREAD_FLOOR * std.mean(dim=(1, 2), keepdim=True) + 1e-6
        self.mean.copy_(mean.float())
        self.std.copy_(std.float())
        return n

    @torch.no_grad()
    def forward(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) input and reconstruction -> (B, H, W) map."""
        z = ((self.stage_errors(x, rec) - self.mean) / self.std).abs().sum(dim=1, keepdim=True)  # (B, 1, m, m)
        z = F.interpolate(z, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return gaussian_blur(z, self.blur)[:, 0]


class RevisedAutoencoder(AnomalyModel):
    """Input (B, 3, H, W) RGB in [0, 1], H and W divisible by 16."""

    def __init__(self, cfg: AEConfig, judge: FeatureJudge | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        skip, dropout = cfg.skip, cfg.dropout
        self.enc1, self.enc2, self.enc3, self.enc4 = _down(3, 32), _down(32, 64), _down(64, 128), _down(128, 256)
        self.bottleneck = nn.Sequential(nn.Conv2d(256, 128, 1), nn.BatchNorm2d(128), nn.ReLU(inplace=True))
        self.up1 = _up(128, 128)
        self.att1 = CBAMBlock(256 if skip else 128, dropout)
        self.bn1 = nn.BatchNorm2d(128)
        self.up2, self.att2, self.bn2 = _up(128, 64), CBAMBlock(64, dropout), nn.BatchNorm2d(64)
        self.up3, self.att3, self.bn3 = _up(64, 32), CBAMBlock(32, dropout), nn.BatchNorm2d(32)
        self.up4 = _up(32, 3)
        self.judge = judge  # the 'features' map (fitted after training), None for the thesis' pixel map

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W) in [0, 1]."""
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"autoencoder input must be divisible by 16, got {tuple(x.shape[-2:])}")
        e1 = self.enc1(x)  # (B, 32, H/2, W/2)
        e2 = self.enc2(e1)  # (B, 64, H/4, W/4)
        e3 = self.enc3(e2)  # (B, 128, H/8, W/8)
        z = self.bottleneck(self.enc4(e3))  # (B, 128, H/16, W/16)
        d = self.up1(z)  # (B, 128, H/8, W/8)
        if self.cfg.skip:
            d = torch.cat([d, e3], dim=1)  # (B, 256, H/8, W/8)
        d = self.bn1(self.att1(d)[:, :128])  # (B, 128, H/8, W/8)
        d = self.bn2(self.att2(self.up2(d)))  # (B, 64, H/4, W/4)
        d = self.bn3(self.att3(self.up3(d)))  # (B, 32, H/2, W/2)
        return torch.sigmoid(self.up4(d))  # (B, 3, H, W)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """0.15·MSE + 0.85·(1 − SSIM); SSIM with a 7-pixel Gaussian window, σ 1.5, data range 1."""
        rec = self.reconstruct(x).float()
        x = x.float()
        mse = F.mse_loss(rec, x)
        s = ssim(rec, x, data_range=1.0, win_size=7, win_sigma=1.5, size_average=True)
        w = self.cfg.mse_weight
        return w * mse + (1.0 - w) * (1.0 - s)

    def score(self, amap: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B,): mean of the top-k pixel errors inside the ROI."""
        self.check_roi(amap)
        return self.topk_mean(amap, self.cfg.topk(*amap.shape[-2:]), self.roi_index)

    def forward(self, x: torch.Tensor) -> Prediction:
        with torch.no_grad():
            rec = self.reconstruct(x)
            if self.judge is None:
                amap = ((rec.float() - x.float()) ** 2).mean(dim=1)  # (B, H, W)
            else:
                amap = self.judge(x.float(), rec.float())  # (B, H, W)
            amap = self.apply_roi(amap)
            return Prediction(score=self.score(amap), anomaly_map=amap)
