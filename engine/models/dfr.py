"""DFR (Deep Feature Reconstruction) as a pure nn.Module over a frozen timm EfficientNet.

Features: the outputs of the chosen stages (`blocks[i]`, reached by running conv_stem, bn1 and
the blocks in order) each brought to one map size — adaptive average pooling for larger maps,
bilinear resizing for smaller ones ("ours"), or the thesis' way: upsample every stage to the
input size, then average-pool to the map ("thesis", slow) — then a 3×3 local average, then
concatenated: (B, C, m, m). A 1×1-conv autoencoder C → (C+2d)/2 → 2d → d → 2d → (C+2d)/2 → C
reconstructs them. Anomaly map: squared error averaged over channels, upsampled to the input.
Options (all off in the literal thesis presets): per-channel feature standardisation, error
scaled per channel (residual_norm), and a z-score per map position judged by the OK training
images (position_norm) — of the whole map, or of each stage's map, averaged over the stages
(stage_norm: every scale weighs the same, whatever its channel count; combined by mean or max);
each image's own median taken off its map (image_median: what stands out from this part's
background); and an image score from a different combination of the stages than the heatmap
(score_combine, e.g. heatmap = mean of the stages, score = max of the most unusual stage).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.base import AnomalyModel, Prediction


def stage_channels(stage: nn.Module) -> int:
    """Output channels of a backbone stage, read from its last BatchNorm (timm blocks end in one)."""
    norms = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise ValueError(f"cannot read the output channels of stage {type(stage).__name__}: no BatchNorm2d")
    return int(norms[-1].num_features)


class StageFeatures(nn.Module):
    """Frozen backbone trimmed to the stages used: (B, 3, H, W) in [0, 1] -> (B, C, m, m)."""

    def __init__(self, backbone: nn.Module, stages: tuple[int, ...], map_size: int,
                 aggregation: str = "ours", local_avg: int = 3) -> None:
        super().__init__()
        for name in ("conv_stem", "bn1", "blocks"):
            if not hasattr(backbone, name):
                raise ValueError(f"backbone {type(backbone).__name__} has no '{name}': not a timm EfficientNet")
        n = len(backbone.blocks)
        bad = [s for s in stages if not 0 <= s < n]
        if bad:
            raise ValueError(f"backbone has stages 0..{n - 1}; unknown stage(s) {bad}")
        if aggregation not in ("ours", "thesis"):
            raise ValueError(f"unknown aggregation {aggregation!r}")
        self.stages, self.map_size = tuple(sorted(stages)), map_size
        self.aggregation, self.local_avg = aggregation, local_avg
        self.conv_stem, self.bn1 = backbone.conv_stem, backbone.bn1
        self.blocks = nn.ModuleList(list(backbone.blocks)[: max(self.stages) + 1])
        self.channels = [stage_channels(self.blocks[s]) for s in self.stages]
        mean = torch.tensor(getattr(backbone, "norm_mean", (0.485, 0.456, 0.406)), dtype=torch.float32)
        std = torch.tensor(getattr(backbone, "norm_std", (0.229, 0.224, 0.225)), dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    @property
    def out_channels(self) -> int:
        return sum(self.channels)

    def train(self, mode: bool = True) -> StageFeatures:
        return super().train(False)  # frozen: BatchNorm statistics stay the pretrained ones

    def _to_map(self, f: torch.Tensor, in_hw: tuple[int, int]) -> torch.Tensor:
        """(B, c, h, w) -> (B, c, m, m)."""
        m = self.map_size
        if self.aggregation == "thesis":
            f = F.interpolate(f, size=in_hw, mode="bilinear", align_corners=False)  # (B, c, H, W)
            f = F.adaptive_avg_pool2d(f, m)
        elif f.shape[-2] > m or f.shape[-1] > m:
            f = F.adaptive_avg_pool2d(f, m)
        elif f.shape[-2] < m or f.shape[-1] < m:
            f = F.interpolate(f, size=(m, m), mode="bilinear", align_corners=False)
        if self.local_avg > 1:
            k = self.local_avg
            f = F.avg_pool2d(f, k, stride=1, padding=k // 2, count_include_pad=False)
            f = f[..., :m, :m]  # even k pads one extra row/column
        return f

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The raw outputs of the used stages, at their own resolutions."""
        h = self.bn1(self.conv_stem((x - self.mean) / self.std))
        out = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i in self.stages:
                out.append(h)
        return out

    def aggregate(self, outs: list[torch.Tensor], in_hw: tuple[int, int]) -> torch.Tensor:
        """Stage outputs -> (B, C, m, m): each brought to the map, then concatenated."""
        return torch.cat([self._to_map(f, in_hw) for f in outs], dim=1).float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregate(self.stage_outputs(x), tuple(x.shape[-2:]))  # (B, C, m, m)


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


class DFR(AnomalyModel):
    """Input (B, 3, H, W) RGB in [0, 1]. `features` is frozen; only `cae` trains."""

    def __init__(self, features: StageFeatures, latent_dim: int, score: str = "max", topk_ratio: float = 0.01,
                 border_margin: int = 0, feature_standardise: bool = False, residual_norm: bool = False,
                 position_norm: bool = False, stage_norm: bool = False, stage_combine: str = "mean",
                 image_median: bool = False, score_combine: str = "map") -> None:
        super().__init__()
        if score not in ("max", "topk"):
            raise ValueError(f"unknown score rule {score!r}")
        self.features, self.latent_dim = features, latent_dim
        self.cae = FeatureCAE(features.out_channels, latent_dim)
        self.score, self.topk_ratio, self.border_margin = score, topk_ratio, border_margin
        self.feature_standardise, self.residual_norm = feature_standardise, residual_norm
        if stage_combine not in ("mean", "max"):
            raise ValueError(f"unknown stage_combine {stage_combine!r}")
        if score_combine not in ("map", "mean", "max"):
            raise ValueError(f"unknown score_combine {score_combine!r}")
        if stage_norm and not position_norm:
            raise ValueError("stage_norm refines position_norm: switch position_norm on too")
        self.position_norm, self.stage_norm, self.stage_combine = position_norm, stage_norm, stage_combine
        self.image_median, self.score_combine = image_median, score_combine
        c, m = features.out_channels, features.map_size
        g = len(features.channels) if stage_norm else 1  # error maps normalised separately
        # Training statistics (set by training; identity until then).
        self.register_buffer("feat_mean", torch.zeros(c))  # (C,)
        self.register_buffer("feat_std", torch.ones(c))  # (C,)
        self.register_buffer("err_scale", torch.ones(c))  # (C,) mean training squared error per channel
        self.register_buffer("pos_mean", torch.zeros(g, m, m))  # (G, m, m) training error maps: mean per position
        self.register_buffer("pos_std", torch.ones(g, m, m))  # (G, m, m) ... and their standard deviation
        self.register_buffer("median_cap", torch.full((g,), float("inf")))  # (G,) largest OK training median

    STATS = ("feat_mean", "feat_std", "err_scale", "pos_mean", "pos_std", "median_cap")  # identity until trained

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Older checkpoints load: statistics added since then were unused there (identity), and
        the position statistics were (m, m) before stage_norm."""
        for name in self.STATS:
            t = state_dict.get(prefix + name)
            if t is None:
                state_dict[prefix + name] = getattr(self, name).detach().clone()
            elif name.startswith("pos_") and t.dim() == 2:
                state_dict[prefix + name] = t.unsqueeze(0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(mean.to(self.feat_mean))
        self.feat_std.copy_(std.clamp_min(1e-6).to(self.feat_std))

    def normalise(self, f: torch.Tensor) -> torch.Tensor:
        """Raw stage features (B, C, m, m) -> what the autoencoder sees."""
        if not self.feature_standardise:
            return f
        return (f - self.feat_mean.view(1, -1, 1, 1)) / self.feat_std.view(1, -1, 1, 1)

    def loss_on_features(self, f: torch.Tensor) -> torch.Tensor:
        """MSE of the reconstruction of raw stage features (B, C, m, m) (e.g. from a feature cache)."""
        f = self.normalise(f)
        return F.mse_loss(self.cae(f), f)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.loss_on_features(self.features(x))

    def channel_errors(self, f: torch.Tensor) -> torch.Tensor:
        """Raw features (B, C, m, m) -> squared error per channel (B, C, m, m)."""
        f = self.normalise(f)
        return (self.cae(f) - f) ** 2

    def raw_maps(self, f: torch.Tensor) -> torch.Tensor:
        """Raw features (B, C, m, m) -> squared error averaged over the channels of each group (B, G, m, m).

        One group (all channels) unless stage_norm, then one per stage.
        """
        err = self.channel_errors(f)
        if self.residual_norm:
            err = err / self.err_scale.view(1, -1, 1, 1)
        if not self.stage_norm:
            return err.mean(dim=1, keepdim=True)
        return torch.stack([part.mean(dim=1) for part in err.split(self.features.channels, dim=1)], dim=1)

    def stage_maps(self, f: torch.Tensor, subtract_median: bool = True) -> torch.Tensor:
        """Raw features (B, C, m, m) -> the normalised error maps of the groups (B, G, m, m).

        With position_norm a z-score per map position (how unusual this error is *here*, judged
        by the OK training images), which removes the CNN's border artefacts and any fixed layout
        of the part; with image_median, minus the image's own median per group, capped at the
        largest median of an OK training image: a part whose whole surface is noisier (lighting,
        focus, texture) is judged against its own background, while a surface more unusual
        overall than any OK part keeps the excess.
        """
        maps = self.raw_maps(f)  # (B, G, m, m)
        if self.position_norm:
            maps = (maps - self.pos_mean) / self.pos_std
        if self.image_median and subtract_median:
            med = torch.minimum(self.image_medians(maps), self.median_cap.to(maps.dtype))  # (B, G)
            maps = maps - med[..., None, None]
        return maps

    def image_medians(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, G, m, m) -> (B, G): median of each map over the positions inside the ROI."""
        flat = maps.flatten(2)  # (B, G, m*m)
        if self.roi is not None:
            inside = F.adaptive_avg_pool2d(self.roi.float()[None, None], maps.shape[-2:])[0, 0] >= 0.5
            if bool(inside.any()):
                flat = flat[..., inside.flatten()]
        return flat.median(dim=-1).values

    def _combined(self, maps: torch.Tensor, how: str, out_hw: tuple[int, int]) -> torch.Tensor:
        """(B, G, m, m) -> (B, H, W): groups combined by their mean or max, upsampled, ROI applied."""
        amap = maps.amax(dim=1) if how == "max" else maps.mean(dim=1)  # (B, m, m)
        amap = F.interpolate(amap[:, None], size=out_hw, mode="bilinear", align_corners=False)[:, 0]  # (B, H, W)
        return self.apply_roi(amap.float())

    def map_from_features(self, f: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """Raw features (B, C, m, m) -> anomaly map (B, H, W) at `out_hw`, ROI applied.

        With stage_norm the stages' z-scores are combined by their mean or their max (the most
        unusual scale at each position).
        """
        return self._combined(self.stage_maps(f), self.stage_combine, out_hw)

    def predict_features(self, f: torch.Tensor, out_hw: tuple[int, int]) -> Prediction:
        """Raw features (B, C, m, m) -> Prediction: the heatmap, and the score from the heatmap or
        from the stages combined by `score_combine`."""
        maps = self.stage_maps(f)
        amap = self._combined(maps, self.stage_combine, out_hw)
        same = self.score_combine in ("map", self.stage_combine)
        score_map = amap if same else self._combined(maps, self.score_combine, out_hw)
        return Prediction(score=self.score_from_map(score_map), anomaly_map=amap)

    def score_from_map(self, amap: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B,): max or top-k mean inside the ROI and away from the border margin."""
        valid = self._valid(amap)
        b = self.border_margin
        if b > 0:
            inner = torch.zeros(amap.shape[-2:], dtype=torch.bool, device=amap.device)
            inner[b:-b, b:-b] = True
            valid = inner if valid is None else valid & inner
        n = int(valid.sum()) if valid is not None else amap.shape[-1] * amap.shape[-2]
        k = 1 if self.score == "max" else max(1, round(self.topk_ratio * n))
        return self.topk_mean(amap, k, valid)

    def forward(self, x: torch.Tensor) -> torch.Tensor | Prediction:
        """Training mode: the loss. Eval mode: a Prediction (computed without autograd)."""
        if self.training:
            return self.loss(x)
        with torch.no_grad():  # inference only: no autograd graph kept
            return self.predict_features(self.features(x), tuple(x.shape[-2:]))


class FeatureStats:
    """Streaming per-channel mean/std and covariance of feature vectors, in float64.

    Feed it (N, C) batches of vectors sampled across the training images; only C×C sums are
    kept, never the vectors themselves.
    """

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.outer = torch.zeros(channels, channels, dtype=torch.float64)

    def update(self, vectors: torch.Tensor) -> None:
        v = vectors.detach().to("cpu", torch.float64)  # (N, C)
        self.n += v.shape[0]
        self.sum += v.sum(dim=0)
        self.outer += v.T @ v

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.n, 1)  # (C,)

    def covariance(self) -> torch.Tensor:
        if self.n < 2:
            raise ValueError("need at least two feature vectors for a covariance")
        mu = self.mean
        return (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)  # (C, C)

    @property
    def std(self) -> torch.Tensor:
        return self.covariance().diagonal().clamp_min(0).sqrt()  # (C,)

    def latent_dim(self, variance: float, standardised: bool = False) -> int:
        """Smallest number of principal components keeping `variance` of the total."""
        cov = self.covariance()
        if standardised:  # PCA of the standardised features = of the correlation matrix
            s = cov.diagonal().clamp_min(1e-12).sqrt()
            cov = cov / torch.outer(s, s)
        eig = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0)  # descending
        ratio = eig.cumsum(0) / eig.sum().clamp_min(1e-30)
        return int(torch.searchsorted(ratio, torch.tensor(variance - 1e-12, dtype=ratio.dtype)).item()) + 1
