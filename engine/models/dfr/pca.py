"""The latent width of DFR's autoencoder: principal components of the training features.

Streamed in float64 over (N, C) batches of feature vectors sampled across the training images;
only C × C sums are kept, never the vectors.
"""

from __future__ import annotations

import torch


class FeatureStats:
    """Per-channel mean/std and covariance of feature vectors."""

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
        return kept_components(torch.linalg.eigvalsh(cov).flip(0), variance)


def kept_components(eigenvalues: torch.Tensor, variance: float) -> int:
    """Smallest number of the leading (descending) eigenvalues that keep `variance` of their sum."""
    eig = eigenvalues.clamp_min(0)
    ratio = eig.cumsum(0) / eig.sum().clamp_min(1e-30)
    return int(torch.searchsorted(ratio, torch.tensor(variance - 1e-12, dtype=ratio.dtype)).item()) + 1
