"""DFR as a pure nn.Module; `forward` is the method, step by step."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import DFRConfig
from engine.models.base import AnomalyModel, Prediction
from engine.models.dfr.features import POOLED_GRID, StageFeatures
from engine.models.dfr.nearest import NearestOK
from engine.models.dfr.normaliser import ErrorNormaliser
from engine.models.dfr.whole import WholeImage
from engine.models.dfr.pca import FeatureStats


class FeatureCAE(nn.Module):
    """1×1-conv autoencoder C → (C+2d)/2 → 2d → d, mirrored; BN+ReLU between (as the DFR paper)."""

    def __init__(self, channels: int, latent_dim: int) -> None:
        super().__init__()
        mid, d2 = (channels + 2 * latent_dim) // 2, 2 * latent_dim

        def layer(cin: int, cout: int, act: bool) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 1)] + ([nn.BatchNorm2d(cout), nn.ReLU(inplace=True)] if act else [])

        self.encoder = nn.Sequential(*layer(channels, mid, True), *layer(mid, d2, True), *layer(d2, latent_dim, False))
        self.decoder = nn.Sequential(*layer(latent_dim, d2, True), *layer(d2, mid, True), *layer(mid, channels, False))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(f))  # (B, C, m, m)


def roi_cells(roi: torch.Tensor | np.ndarray | None, size: int) -> np.ndarray | None:
    """An ROI (H, W) bool -> (size, size) bool of the cells mostly inside it (None: no ROI)."""
    if roi is None:
        return None
    r = torch.as_tensor(roi).float().cpu()
    return F.adaptive_avg_pool2d(r[None, None], (size, size))[0, 0].numpy() >= 0.5


def combine(maps: torch.Tensor, how: str) -> torch.Tensor:
    """(B, G, m, m) -> (B, m, m): the groups' maps combined by their mean or max."""
    return maps.amax(dim=1) if how == "max" else maps.mean(dim=1)


class DFR(AnomalyModel):
    """Input (B, 3, H, W) RGB in [0, 1]. `features` is frozen; `cae` trains; the normaliser's
    statistics are fitted after training (`ErrorNormaliser.fit`)."""

    def __init__(self, cfg: DFRConfig, features: StageFeatures, latent_dim: int) -> None:
        super().__init__()
        self.cfg, self.features, self.latent_dim = cfg, features, latent_dim
        c = features.out_channels
        self.register_buffer("feat_mean", torch.zeros(c))  # (C,) feature standardisation (feature_standardise)
        self.register_buffer("feat_std", torch.ones(c))  # (C,)
        self.cae = FeatureCAE(c, latent_dim)
        groups = features.channels if cfg.stage_norm else [c]
        self.normaliser = ErrorNormaliser(groups, features.map_size, residual_norm=cfg.residual_norm,
                                          position_norm=cfg.position_norm, image_median=cfg.image_median)
        # The whole image's reconstruction error, the score's second half (None: the peak alone).
        self.whole = WholeImage(c, features.map_size, cfg.whole_grid) if cfg.whole_grid else None
        # The same at one cell (the mean features of global_stages, else of the map's stages), the
        # larger of the two errors counting (None: off).
        self.whole_global = None
        if cfg.whole_grid and cfg.whole_global:
            self.whole_global = WholeImage(features.pooled_channels, POOLED_GRID, 1) if features.pooled_stages \
                else WholeImage(c, features.map_size, 1)
        # The distance to the nearest OK feature, the heatmap's second term (None: reconstruction alone).
        self.nearest = NearestOK(c, features.map_size, cfg.nearest_cells(), cfg.nearest_weight,
                                 cfg.nearest_scale) if cfg.nearest_size else None
        # The same on a finer stage, sharpening the heatmap (None: off); the score does not see it.
        self.fine = NearestOK(features.fine_channels, features.map_size, cfg.fine_cells(), cfg.fine_weight,
                              cfg.nearest_scale) if features.fine_channels and self.nearest is not None else None
        self.register_buffer("score_index", None, persistent=False)  # pixels the score looks at
        self.on_roi_change()

    def forward(self, x: torch.Tensor) -> Prediction:
        with torch.no_grad():
            # (B, C, m, m) frozen stage features; the fine stage's map and the pooled stages' grid or None
            f, fine, pooled = self.features.tapped(x)
            amap, score_map, peak = self.judge(f, (x.shape[-2], x.shape[-1]), fine)
            score = peak if self.whole is None else self.whole.fuse(peak, self.whole(f), self.global_z(f, pooled))
            return Prediction(score=score, anomaly_map=amap, score_map=score_map)

    def judge(self, f: torch.Tensor, out_hw: tuple[int, int], fine: torch.Tensor | None = None) -> tuple:
        """Stage features (B, C, m, m) (and the fine stage's, (B, c, m, m)) -> heatmap (B, H, W), the
        map the peak is taken from when it is another one (else None), and that peak (B,)."""
        maps = self.normaliser(self.errors(f))  # (B, G, m, m) how unusual each error is
        dist = None if self.nearest is None else self.nearest(f)  # (B, m, m) how far from any OK feature

        def heatmap(how: str) -> torch.Tensor:
            recon = combine(maps, how)
            return recon if dist is None else self.nearest.fuse(recon, dist)  # (B, m, m)

        heat = heatmap(self.cfg.stage_combine)  # (B, m, m) the heatmap before the fine term
        separate = self.cfg.score_combine not in ("map", self.cfg.stage_combine) and maps.shape[1] > 1
        score_map = self.upsample(heatmap(self.cfg.score_combine) if separate else heat, out_hw)
        if fine is not None and self.fine is not None:  # sharper; the score's map stays as it was
            amap = self.upsample(self.fine.refine(heat, self.fine(fine)), out_hw)
        elif separate:  # e.g. heatmap = mean of the stages, score = the most unusual stage
            amap = self.upsample(heat, out_hw)
        else:  # the heatmap is the score's map (one group: its max and its mean are the same map)
            return score_map, None, self.score(score_map)
        return amap, score_map, self.score(score_map)

    def global_z(self, f: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor | None:
        """Stage features (B, C, m, m) and the pooled stages' grid (B, P, g, g) or None -> the whole
        image's error at one cell as a z-score (B,), or None without whole_global."""
        if self.whole_global is None:
            return None
        return self.whole_global.z(self.whole_global(self.global_input(f, pooled)))

    def global_input(self, f: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
        """What the single cell averages: the pooled stages' grid with global_stages, else the map."""
        return pooled if self.features.pooled_stages else f

    def reconstruction_map(self, f: torch.Tensor) -> torch.Tensor:
        """Stage features (B, C, m, m) -> the reconstruction errors' map (B, m, m) before the
        nearest-feature term is added (what `NearestOK.calibrate` weighs)."""
        return combine(self.normaliser(self.errors(f)), self.cfg.stage_combine)

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        """Stage features (B, C, m, m) -> what the autoencoder sees."""
        if not self.cfg.feature_standardise:
            return f
        return (f - self.feat_mean.view(1, -1, 1, 1)) / self.feat_std.view(1, -1, 1, 1)

    def errors(self, f: torch.Tensor) -> torch.Tensor:
        """Stage features (B, C, m, m) -> squared reconstruction error per channel (B, C, m, m)."""
        f = self.standardise(f)
        return (self.cae(f) - f) ** 2

    def loss(self, f: torch.Tensor) -> torch.Tensor:
        """Training loss on stage features (B, C, ...) (e.g. from the feature cache): the MSE."""
        f = self.standardise(f)
        return F.mse_loss(self.cae(f), f)

    def upsample(self, m: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """(B, m, m) -> (B, H, W), zero outside the ROI."""
        amap = F.interpolate(m[:, None], size=out_hw, mode="bilinear", align_corners=False)[:, 0]
        return self.apply_roi(amap.float())

    def score(self, amap: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B,): max or top-k mean inside the ROI and away from the border margin."""
        self.check_roi(amap)
        n = amap.shape[-2] * amap.shape[-1] if self.score_index is None else self.score_index.numel()
        k = 1 if self.cfg.score == "max" else max(1, round(self.cfg.topk_ratio * n))
        return self.topk_mean(amap, k, self.score_index)

    def fit_feature_scaling(self, stats: FeatureStats) -> None:
        self.feat_mean.copy_(stats.mean.float())
        self.feat_std.copy_(stats.std.float().clamp_min(1e-6))

    def on_roi_change(self) -> None:
        """Precompute the score's pixels (ROI and border margin) and the median's map positions."""
        s, b = self.cfg.input_size, self.cfg.border_margin
        valid = np.ones((s, s), bool) if self.roi is None else self.roi.cpu().numpy()
        if b > 0:
            inner = np.zeros_like(valid)
            inner[b:-b, b:-b] = True
            valid = valid & inner
        device = self.feat_mean.device
        self.score_index = None if valid.all() else torch.as_tensor(np.flatnonzero(valid), device=device)
        self.normaliser.set_region(roi_cells(self.roi, self.features.map_size))
        region = self.region_at(self.features.map_size)
        for whole in (self.whole, self.whole_global):
            if whole is not None:  # each at its own cells (the single cell of pooled stages: POOLED_GRID)
                whole.set_region(self.region_at(whole.inside.shape[-1]))
        for near in (self.nearest, self.fine):
            if near is not None:
                near.set_region(region)

    def region_at(self, size: int) -> torch.Tensor | None:
        """(size, size) bool of the cells mostly inside the ROI on the model's device (None: no ROI)."""
        cells = roi_cells(self.roi, size)
        return None if cells is None else torch.from_numpy(cells).to(self.feat_mean.device)

    LEGACY = {"err_scale", "pos_mean", "pos_std", "median_cap"}  # were DFR's own buffers before the normaliser

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Older checkpoints load: the statistics moved into the normaliser; statistics added since
        were unused there (identity); the position statistics were (m, m) before stage_norm."""
        for name in self.LEGACY:
            if prefix + name in state_dict:
                state_dict[prefix + "normaliser." + name] = state_dict.pop(prefix + name)
        for name in ("whole", "whole_global"):
            if getattr(self, name) is not None:
                getattr(self, name).resize_for(state_dict, prefix + name + ".")
        for name in ("nearest", "fine"):
            if getattr(self, name) is not None:
                getattr(self, name).resize_for(state_dict, prefix + name + ".")
        for name in ("feat_mean", "feat_std"):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = getattr(self, name).detach().clone()
        for name in ErrorNormaliser.STATS:
            key = prefix + "normaliser." + name
            t = state_dict.get(key)
            if t is None:
                state_dict[key] = getattr(self.normaliser, name).detach().clone()
            elif name.startswith("pos_") and t.dim() == 2:
                state_dict[key] = t.unsqueeze(0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
