"""How unusual a reconstruction error is: DFR's squared errors judged against the OK training images.

Squared errors per channel (B, C, m, m) become one map per group of channels (B, G, m, m) — all
channels (G = 1), or each backbone stage (stage_norm) — and then, each step optional:
1. residual_norm: each channel's error divided by its mean on the training images first;
2. position_norm: a z-score per map position, with the mean and std of the training images'
   errors there (removes the CNN's border artefacts and any fixed layout of the part);
3. image_median: the image's own median (over the ROI's positions) taken off each map, at most
   the largest median an OK training image had: a part whose whole surface is noisier is judged
   against its own background, a surface more unusual than any OK part keeps the excess.
`fit` computes the statistics of the steps that are on, in that order, from the training images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

# Each position's error variance is shrunk towards the map-wide one as if that were this many
# images: with a few dozen training images a single position's std could otherwise be tiny.
PRIOR_IMAGES = 10.0


class ErrorNormaliser(nn.Module):
    def __init__(self, group_channels: list[int], map_size: int, *, residual_norm: bool = False,
                 position_norm: bool = False, image_median: bool = False) -> None:
        super().__init__()
        self.group_channels = list(group_channels)
        self.residual_norm, self.position_norm, self.image_median = residual_norm, position_norm, image_median
        c, g, m = sum(group_channels), len(group_channels), map_size
        self.register_buffer("err_scale", torch.ones(c))  # (C,) mean training squared error per channel
        self.register_buffer("pos_mean", torch.zeros(g, m, m))  # (G, m, m) training error maps: mean per position
        self.register_buffer("pos_std", torch.ones(g, m, m))  # (G, m, m) ... and their standard deviation
        self.register_buffer("median_cap", torch.full((g,), float("inf")))  # (G,) largest OK training median
        # Map positions the median is taken over (inside the ROI); None = all. Set by `set_region`.
        self.register_buffer("median_index", None, persistent=False)

    STATS = ("err_scale", "pos_mean", "pos_std", "median_cap")  # identity until fitted

    def set_region(self, inside: np.ndarray | None) -> None:
        """(m, m) bool of the map positions inside the ROI (None or empty: all positions)."""
        if inside is None or not inside.any():
            self.median_index = None
        else:
            self.median_index = torch.as_tensor(np.flatnonzero(inside), device=self.pos_mean.device)

    def group_maps(self, err: torch.Tensor) -> torch.Tensor:
        """Squared errors (B, C, m, m) -> mean over each group's channels (B, G, m, m)."""
        if self.residual_norm:
            err = err / self.err_scale.view(1, -1, 1, 1)
        if len(self.group_channels) == 1:
            return err.mean(dim=1, keepdim=True)
        return torch.stack([part.mean(dim=1) for part in err.split(self.group_channels, dim=1)], dim=1)

    def medians(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, G, m, m) -> (B, G): the lower median of each map over the region's positions."""
        flat = maps.flatten(2)  # (B, G, m*m)
        if self.median_index is not None:
            flat = flat.index_select(2, self.median_index)
        n = flat.shape[-1]
        return flat.sort(dim=-1).values[..., (n - 1) // 2]  # as torch.median, but exportable

    def forward(self, err: torch.Tensor, subtract_median: bool = True) -> torch.Tensor:
        """Squared errors (B, C, m, m) -> normalised error maps (B, G, m, m)."""
        maps = self.position_z(self.group_maps(err))
        if self.image_median and subtract_median:
            med = torch.minimum(self.medians(maps), self.median_cap.to(maps.dtype))  # (B, G)
            maps = maps - med[..., None, None]
        return maps

    def position_z(self, maps: torch.Tensor) -> torch.Tensor:
        """Group maps (B, G, m, m) -> z-scores per position (position_norm; else as they are)."""
        return (maps - self.pos_mean) / self.pos_std if self.position_norm else maps

    @property
    def passes(self) -> int:
        """Passes `fit` makes over the training images' errors."""
        return int(self.residual_norm) + int(self.position_norm or self.image_median)

    @torch.no_grad()
    def fit(self, errors: Callable[[], Iterable[torch.Tensor]], n: int) -> None:
        """The statistics of the steps that are on, in their order, from the training images'
        squared errors (`errors()` yields (B, C, m, m) batches over all n images, once per pass).
        One pass gives the per-position statistics; the medians come from its maps, kept in memory."""
        if self.residual_norm:
            total = torch.zeros(self.err_scale.shape[0], dtype=torch.float64)
            for err in errors():
                total += err.double().mean(dim=(2, 3)).sum(dim=0).cpu()
            self.err_scale.copy_((total / n).clamp_min(1e-12).float())
        if not (self.position_norm or self.image_median):
            return
        kept = [self.group_maps(err).cpu() for err in errors()]  # (B, G, m, m) each; ~32 KB per image at the default
        if self.position_norm:
            s1 = torch.zeros(self.pos_mean.shape, dtype=torch.float64)  # (G, m, m)
            s2 = torch.zeros_like(s1)
            for maps in kept:
                s1 += maps.double().sum(dim=0)
                s2 += (maps.double() ** 2).sum(dim=0)
            mean = s1 / n
            var = ((s2 - n * mean**2) / max(n - 1, 1)).clamp_min(0)
            var = (n * var + PRIOR_IMAGES * var.mean(dim=(1, 2), keepdim=True)) / (n + PRIOR_IMAGES)
            floor = 1e-6 * mean.abs().mean(dim=(1, 2), keepdim=True) + 1e-12
            self.pos_mean.copy_(mean.float())
            self.pos_std.copy_(torch.maximum(var.sqrt(), floor).float())
        if self.image_median:
            cap = torch.full(self.median_cap.shape, -float("inf"), dtype=torch.float64)
            for maps in kept:
                z = self.position_z(maps.to(self.pos_mean.device))
                cap = torch.maximum(cap, self.medians(z).double().amax(dim=0).cpu())
            self.median_cap.copy_(cap.float())
