"""The model families as pure nn.Modules returning one `Prediction` (score per image + map at input
size): the CBAM autoencoder (`ae`), DFR (`dfr/`), their backbones and checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.models.base import AnomalyModel, Prediction

if TYPE_CHECKING:
    from engine.config import AEConfig, DFRConfig
    from engine.models.dfr import StageFeatures

__all__ = ["AnomalyModel", "Prediction", "build_ae", "build_features", "build_dfr"]


def build_ae(cfg: AEConfig) -> AnomalyModel:
    from engine.models.ae import RevisedAutoencoder

    return RevisedAutoencoder(cfg)


def build_features(cfg: DFRConfig, weights: str | None = None) -> StageFeatures:
    """The frozen, trimmed backbone of a DFR config (`weights` overrides cfg.backbone_weights)."""
    from engine.models.backbones import create_backbone
    from engine.models.dfr import StageFeatures

    backbone = create_backbone(cfg.backbone, weights or cfg.backbone_weights)
    return StageFeatures(backbone, cfg.stages, cfg.map_size, cfg.aggregation, cfg.local_avg,
                         cfg.fine_stage if cfg.fine_on() else None)


def build_dfr(cfg: DFRConfig, features: StageFeatures, latent_dim: int) -> AnomalyModel:
    from engine.models.dfr import DFR

    return DFR(cfg, features, latent_dim)
