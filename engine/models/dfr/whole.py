"""DFR at the scale of the whole image: the second half of the image score (`whole_grid`).

The stage features the autoencoder reconstructs position by position are also average-pooled to
a grid × grid layout and read as one vector per image; that vector is reconstructed through its
principal components (as many as keep `whole_variance` of the OK images' variance) and the mean
squared error says how unusual the part is as a whole: a wrong layout, a missing or extra
component, a large uneven area — defects where each position on its own still looks like some
OK position, so the heatmap's peak stays low. The image score adds the heatmap's peak and this
error, each as a z-score against OK images the model was not fitted on (`calibrate`).

With `whole_global` the image is also read at one cell — its mean feature vector, what the part
holds regardless of where — and the larger of the two errors' z-scores counts: the grid sees a
wrong layout, the single cell a wrong amount (fill level, a colour, a large uneven area) that the
grid's many dimensions dilute. The single cell reads the backbone stages `global_stages` (the
default: blocks.3-6, shallower and deeper than the map's), each averaged over the image from a
POOLED_GRID² grid (features.py); without them, the map's stages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.models.dfr.pca import kept_components

CROSS_FOLDS = 5  # without held-out OK images, the error of each training image comes from the other folds' fit


def principal_basis(vectors: torch.Tensor, variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (N, D) -> their mean (D,) and the principal directions (D, d) keeping `variance`."""
    v = vectors.double()
    mean = v.mean(dim=0)
    _, s, vt = torch.linalg.svd(v - mean, full_matrices=False)
    d = kept_components(s**2, variance)  # squared singular values: the variances, descending
    return mean.float(), vt[:min(d, vt.shape[0])].T.float().contiguous()


class WholeImage(nn.Module):
    """Stage features (B, C, m, m) -> reconstruction error of the whole image (B,)."""

    def __init__(self, channels: int, map_size: int, grid: int) -> None:
        super().__init__()
        self.kernel = map_size // grid
        dims = channels * grid * grid
        self.register_buffer("mean", torch.zeros(dims))  # (D,) OK images' mean vector
        self.register_buffer("basis", torch.zeros(dims, 0))  # (D, d) principal directions; d set by `fit`
        # The ROI at map size (1, 1, m, m); set from the checkpoint's ROI, not stored.
        self.register_buffer("inside", torch.ones(1, 1, map_size, map_size), persistent=False)
        self.register_buffer("calib_mean", torch.zeros(2))  # (peak, whole error) on OK images
        self.register_buffer("calib_std", torch.ones(2))

    def vectors(self, f: torch.Tensor) -> torch.Tensor:
        """(B, C, m, m) -> (B, D): each image's features pooled to the grid, outside the ROI zero."""
        return F.avg_pool2d(f * self.inside, self.kernel).flatten(1)

    @staticmethod
    def error(v: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """Vectors (B, D) -> mean squared error of their reconstruction through `basis` (B,)."""
        c = v - mean
        r = c - (c @ basis) @ basis.T
        return (r * r).mean(dim=1)  # (B,)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.error(self.vectors(f), self.mean, self.basis)

    def fuse(self, peak: torch.Tensor, whole: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """The image score: the heatmap's peak and the whole-image error as z-scores, added (B,).
        `other`: another whole-image error's z-score (B,) (`whole_global`); the larger one counts."""
        z = self.z(whole)
        if other is not None:
            z = torch.maximum(z, other)
        return (peak - self.calib_mean[0]) / self.calib_std[0] + z

    def z(self, whole: torch.Tensor) -> torch.Tensor:
        """The whole-image error (B,) as a z-score against the OK images it was calibrated on."""
        return (whole - self.calib_mean[1]) / self.calib_std[1]

    @torch.no_grad()
    def fit(self, vectors: torch.Tensor, variance: float) -> None:
        """Mean and principal directions from the OK training images' vectors (N, D)."""
        mean, basis = principal_basis(vectors.cpu(), variance)
        self.mean, self.basis = mean.to(self.calib_mean.device), basis.to(self.calib_mean.device)

    @torch.no_grad()
    def cross_errors(self, vectors: torch.Tensor, variance: float) -> torch.Tensor:
        """Each training image's error under a fit without its fold (N,): what an unseen OK image
        scores, where the error under the fit on all of them would be too small. Vectors on the CPU."""
        n = vectors.shape[0]
        if n < 2:  # nothing to leave out: the fit on all of them
            return self.error(vectors.to(self.mean), self.mean, self.basis)
        fold = torch.arange(n) % CROSS_FOLDS
        out = torch.empty(n)
        for k in range(min(CROSS_FOLDS, n)):
            held = fold == k
            mean, basis = principal_basis(vectors[~held], variance)
            out[held] = self.error(vectors[held].float(), mean, basis)
        return out

    @torch.no_grad()
    def calibrate(self, peaks: torch.Tensor, errors: torch.Tensor) -> None:
        """Both parts' mean and std on OK images (N,) each."""
        for i, values in enumerate((peaks.double(), errors.double())):
            self.calib_mean[i] = values.mean()
            self.calib_std[i] = values.std().clamp_min(1e-12) if values.numel() > 1 else 1.0

    def set_region(self, inside: torch.Tensor | None) -> None:
        """(m, m) bool of the map positions inside the ROI (None: all)."""
        self.inside = torch.ones_like(self.inside) if inside is None else \
            inside.to(self.inside)[None, None].clone()

    def resize_for(self, state_dict: dict, prefix: str) -> None:
        """A checkpoint's basis has its own d: take its shape before loading."""
        basis = state_dict.get(prefix + "basis")
        if basis is not None:
            self.basis = torch.zeros_like(basis, device=self.mean.device)
