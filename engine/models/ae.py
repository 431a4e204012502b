"""The thesis' CBAM convolutional autoencoder (`RevisedAutoencoder`) as a pure nn.Module.

Encoder: four Conv(4, s2, p1)+BN+ReLU, 3→32→64→128→256; bottleneck 1×1 conv 256→128+BN+ReLU.
Decoder: ConvT 128→128, concatenated with the 3rd encoder output (the one skip), a CBAM block
over those 256 channels, first 128 channels kept + BN; ConvT 128→64 + CBAM block + BN; ConvT
64→32 + CBAM block + BN; ConvT 32→3 + sigmoid.

Anomaly map: mean over the RGB channels of the squared reconstruction error (the quantity the
MSE term of the loss trains down, so a pixel the model cannot reproduce stands out; the SSIM
term shapes the reconstruction but is a windowed statistic, too blurry for a pixel map).
Image score: mean of the k largest map pixels, k = round(topk_at_512 · H·W / 512²) (`AEConfig.topk`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from timm.layers.cbam import CbamModule
from torch import nn

from engine.config import AEConfig
from engine.models.base import AnomalyModel, Prediction


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


class RevisedAutoencoder(AnomalyModel):
    """Input (B, 3, H, W) RGB in [0, 1], H and W divisible by 16."""

    def __init__(self, cfg: AEConfig) -> None:
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
            amap = self.apply_roi(((rec.float() - x.float()) ** 2).mean(dim=1))  # (B, H, W)
            return Prediction(score=self.score(amap), anomaly_map=amap)
