"""The model families as pure nn.Modules returning one `Prediction` (score per image + map at input
size): the CBAM autoencoder (`ae`), DFR (`dfr/`), their backbones and checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.models.base import AnomalyModel, Prediction

if TYPE_CHECKING:
    from engine.config import AEConfig, DFRConfig
    from engine.models.dfr import StageFeatures

__all__ = ["AnomalyModel", "Prediction", "build_ae", "build_features", "build_dfr"]


def build_ae(cfg: AEConfig, weights: str | None = None) -> AnomalyModel:
    """The autoencoder; with ae_map=features its judge's frozen backbone too (`weights` overrides
    cfg.map_weights)."""
    from engine.models.ae import FeatureJudge, RevisedAutoencoder

    if cfg.ae_map != "features":
        return RevisedAutoencoder(cfg)
    from engine.models.backbones import create_backbone
    from engine.models.dfr import StageFeatures

    backbone = create_backbone(cfg.map_backbone, weights or cfg.map_weights)
    features = StageFeatures(backbone, cfg.map_stages, cfg.input_size // 4, local_avg=1)
    return RevisedAutoencoder(cfg, FeatureJudge(features, cfg.map_blur))


def build_features(cfg: DFRConfig, weights: str | None = None) -> StageFeatures:
    """The frozen, trimmed backbone of a DFR config (`weights` overrides cfg.backbone_weights)."""
    from engine.models.backbones import create_backbone
    from engine.models.dfr import StageFeatures

    backbone = create_backbone(cfg.backbone, weights or cfg.backbone_weights)
    pooled = cfg.global_stages if cfg.whole_grid and cfg.whole_global else ()
    return StageFeatures(backbone, cfg.stages, cfg.map_size, cfg.aggregation, cfg.local_avg,
                         cfg.fine_stage if cfg.fine_on() else None, pooled)


def build_dfr(cfg: DFRConfig, features: StageFeatures, latent_dim: int) -> AnomalyModel:
    from engine.models.dfr import DFR

    return DFR(cfg, features, latent_dim)
