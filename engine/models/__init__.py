"""Model families as pure nn.Modules returning one `Prediction` (score per image + map at input size)."""

from __future__ import annotations

from engine.models.base import AnomalyModel, Prediction

__all__ = ["AnomalyModel", "Prediction", "build_ae", "build_features", "build_dfr"]


def build_ae(cfg: "AEConfig") -> AnomalyModel:  # noqa: F821
    from engine.models.ae import RevisedAutoencoder

    return RevisedAutoencoder(skip=cfg.skip, dropout=cfg.dropout, mse_weight=cfg.mse_weight,
                              topk_at_512=cfg.topk_at_512)


def build_features(cfg: "DFRConfig", weights: str | None = None) -> "StageFeatures":  # noqa: F821
    """The frozen, trimmed backbone of a DFR config (`weights` overrides cfg.backbone_weights)."""
    from engine.models.backbones import create_backbone
    from engine.models.dfr import StageFeatures

    backbone = create_backbone(cfg.backbone, weights or cfg.backbone_weights)
    feats = StageFeatures(backbone, cfg.stages, cfg.map_size, cfg.aggregation, cfg.local_avg)
    feats.weights_sha256 = backbone.weights_sha256
    feats.weights_source = backbone.weights_source
    return feats


def build_dfr(cfg: "DFRConfig", features: "StageFeatures", latent_dim: int) -> AnomalyModel:  # noqa: F821
    from engine.models.dfr import DFR

    return DFR(features, latent_dim, score=cfg.score, topk_ratio=cfg.topk_ratio, border_margin=cfg.border_margin,
               feature_standardise=cfg.feature_standardise, residual_norm=cfg.residual_norm,
               position_norm=cfg.position_norm, stage_norm=cfg.stage_norm,
               stage_combine=cfg.stage_combine, image_median=cfg.image_median, score_combine=cfg.score_combine)
