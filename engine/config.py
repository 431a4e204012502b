"""Run settings: each declared once (type, default, help, choices), presets as differences.

A field's default is the literal thesis value where the thesis fixed one and a neutral value
otherwise; a preset lists only what it changes. `make_config` = preset + `--set key=value`.
No torch here: the dashboard's Train page reads presets and help texts from this module.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from engine.errors import UserError

MODELS = ("ae", "dfr")
AUTO_PRESET = "auto"  # trains candidates and keeps the best on synthetic defects (engine.training.auto)


def setting(default: Any, help: str, choices: tuple[str, ...] | None = None, *, init: bool = True) -> Any:
    """A config field: its default, its help text (CLI, Train page) and its allowed values."""
    meta: dict[str, Any] = {"help": help}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta, init=init)


@dataclass(frozen=True)
class _Common:
    """Settings of both model families."""

    FAMILY: ClassVar[str] = ""
    model: str = setting("", "Model family: 'ae' (CBAM autoencoder) or 'dfr' (deep feature reconstruction).",
                         MODELS, init=False)
    preset: str = setting("", "Name of the preset these values started from.")
    input_size: int = setting(256, "Images are stretched to input_size x input_size pixels (model input; "
                              "the thesis used 512, 256 keeps CPU training practical).")
    epochs: int = setting(15, "Passes over the training images.")
    batch_size: int = setting(4, "Images per optimisation step.")
    lr: float = setting(1e-3, "Learning rate of the optimiser (thesis: 1e-3 for both families).")
    weight_decay: float = setting(0.0, "Weight decay (L2 / AdamW decoupled) of the optimiser.")
    optimizer: str = setting("adam", "Optimiser: 'adam' or 'adamw'.", ("adam", "adamw"))
    lr_schedule: str = setting("constant", "Learning-rate schedule: 'constant' (thesis) or 'cosine' (to 0 "
                               "over all steps).", ("constant", "cosine"))
    seed: int = setting(0, "Random seed (weights init, shuffling, enhancement choice, hold-out).")
    device: str = setting("auto", "'auto' (CUDA when available), 'cpu' or 'cuda'.", ("auto", "cpu", "cuda"))
    num_workers: int = setting(2, "DataLoader worker processes decoding images in parallel (0 = in-process).")
    gpus: int = setting(1, "GPUs a job of this run takes on a Ray cluster (worker --executor ray); 0 runs it on a "
                        "node's CPU. The local worker ignores it.")
    enhance: bool = setting(False, "Apply the thesis enhancement (CLAHE, gamma 0.8, unsharp mask) at evaluation "
                            "and to a share of training images.")
    enhance_train_share: float = setting(0.15, "Share of training images enhanced when 'enhance' is on "
                                         "(thesis: 15 %).")
    holdout_share: float = setting(0.1, "Share of OK training images held out for the OK-only threshold.")
    target_frr: float = setting(0.01, "False-reject rate the OK-only threshold aims at on held-out OK images.")
    auto_threshold: str = setting("f1_max", "Threshold stored after an evaluation (until someone saves one): "
                                  "'f1_max' (best F1 on the test images; OK-only without NOK images), 'ok_only' "
                                  "(held-out OK images at target_frr) or 'zero_escape' (the lowest NOK score). "
                                  "A retrain carries its parent's rule.", ("f1_max", "ok_only", "zero_escape"))
    auto_review_band: bool = setting(False, "Store the automatic threshold with the suggested review band "
                                     "(REVIEW from the held-out OK scores' 95th percentile, NOK from the NOK "
                                     "scores' 10th). A retrain carries its parent's band.")
    amp: bool = setting(True, "Mixed precision on CUDA (ignored on CPU).")

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", self.FAMILY)


@dataclass(frozen=True)
class AEConfig(_Common):
    """CBAM convolutional autoencoder (thesis `RevisedAutoencoder`)."""

    FAMILY: ClassVar[str] = "ae"
    skip: bool = setting(True, "Skip connection from the 3rd encoder stage into the decoder (thesis: on).")
    dropout: float = setting(0.2, "Dropout inside each CBAM block (thesis: 0.2).")
    mse_weight: float = setting(0.15, "Loss = mse_weight·MSE + (1 − mse_weight)·(1 − SSIM) (thesis: 0.15).")
    topk_at_512: int = setting(1500, "Image score = mean of the k largest pixel errors; k at 512² "
                               "(thesis: 1500), scaled by pixel count.")
    ae_map: str = setting("pixel", "Anomaly map: 'pixel' (thesis: the squared RGB error) or 'features' (input and "
                          "reconstruction compared in a frozen pretrained EfficientNet's stages map_stages: how "
                          "unusual each stage's error is at each position, either way, against the OK training "
                          "images).",
                          ("pixel", "features"))
    map_backbone: str = setting("tf_efficientnet_lite0", "With ae_map=features: the timm EfficientNet that "
                                "compares input and reconstruction (its weights must be available locally).")
    map_weights: str = setting("pretrained", "With ae_map=features: 'pretrained' (packaged / local cache), "
                               "'random' (tests only) or a path to a .pth state_dict; never downloaded.")
    map_stages: tuple[int, ...] = setting((1, 2, 3), "With ae_map=features: the backbone stages (indices into "
                                          "blocks[]) compared, comma separated.")
    map_blur: float = setting(4.0, "With ae_map=features: the map's Gaussian blur, sigma in input pixels (0 = none).")

    def topk(self, height: int, width: int) -> int:
        """k of the image score for a map of height × width pixels."""
        return max(1, round(self.topk_at_512 * height * width / 512**2))


@dataclass(frozen=True)
class DFRConfig(_Common):
    """Deep Feature Reconstruction over a frozen pretrained EfficientNet."""

    FAMILY: ClassVar[str] = "dfr"
    backbone: str = setting("tf_efficientnet_lite0", "timm EfficientNet name (its weights must be available "
                            "locally; Lite0's ship with a pip package).")
    backbone_weights: str = setting("pretrained", "'pretrained' (packaged / local cache), 'random' (tests "
                                    "only) or a path to a .pth state_dict; never downloaded.")
    stages: tuple[int, ...] = setting((0, 1, 2, 3, 4, 5), "Backbone stages (indices into blocks[]) whose "
                                      "outputs are reconstructed, comma separated (thesis: the first six).")
    map_size: int = setting(64, "Side of the feature map all stages are brought to (thesis: 128 or 170 "
                            "at 512²).")
    aggregation: str = setting("ours", "'ours': pool/resize each stage straight to the map; 'thesis': "
                               "upsample to the input size first, then average-pool (slow).", ("ours", "thesis"))
    local_avg: int = setting(3, "Side of the local average applied to each stage on the map (1 = none).")
    feature_standardise: bool = setting(False, "Standardise each feature channel with training mean/std.")
    pca_variance: float = setting(0.9, "Latent width d = PCA components keeping this share of feature "
                                  "variance (thesis: 90 %).")
    pca_samples_per_image: int = setting(1024, "Feature vectors sampled per training image for the PCA.")
    latent_dim: int | None = setting(None, "Fixed latent width d (overrides the PCA rule when set).")
    score: str = setting("max", "Image score: 'max' of the map or 'topk' (mean of the top topk_ratio share).",
                         ("max", "topk"))
    topk_ratio: float = setting(0.01, "Share of map pixels averaged by the 'topk' score.")
    border_margin: int = setting(0, "Pixels (at input size) along the border ignored by the image score.")
    residual_norm: bool = setting(False, "Divide each channel's squared error by its mean on training images "
                                  "before averaging over channels.")
    position_norm: bool = setting(False, "Turn the error map into a z-score per map position, using the mean "
                                  "and std of the OK training images' errors there.")
    stage_norm: bool = setting(False, "With position_norm: z-score each stage's error map separately, so every "
                               "scale weighs the same whatever its channel count.")
    stage_combine: str = setting("mean", "With stage_norm: combine the stages' z-scores at each position by "
                                 "their 'mean' or their 'max' (the most unusual scale).", ("mean", "max"))
    image_median: bool = setting(False, "Subtract from each image's error map (each stage's, with stage_norm) "
                                 "its own median, at most the largest median of an OK training image: what "
                                 "stands out from this part's background.")
    score_combine: str = setting("map", "Image score from the heatmap ('map') or, with stage_norm, from the "
                                 "stages' z-scores combined by their 'mean' or 'max' at each position (without "
                                 "stage_norm all three are the heatmap).", ("map", "mean", "max"))
    whole_grid: int = setting(0, "Also reconstruct each image as a whole: its stage features average-pooled to "
                              "whole_grid x whole_grid and read as one vector, through the principal components "
                              "of the OK images'; the image score then adds that error to the heatmap's peak, "
                              "both as z-scores against held-out OK images (0 = off; must divide map_size).")
    whole_variance: float = setting(0.97, "With whole_grid: principal components of the whole-image vectors kept "
                                    "for this share of their variance.")
    whole_global: bool = setting(False, "With whole_grid: also reconstruct each image's mean stage feature vector "
                                 "(the whole image at one cell) through its principal components; the image "
                                 "score takes the more unusual of the two whole-image errors.")
    global_stages: tuple[int, ...] = setting((), "With whole_global: the backbone stages (indices into blocks[]) "
                                             "whose outputs, each averaged over the image, make that one cell's "
                                             "vector — deeper and shallower than `stages` as well (empty: the "
                                             "map's stages, as until 2026-12-02).")
    nearest_size: int = setting(0, "Also measure how far each place is from the nearest feature of an OK part: "
                                "this many feature vectors of the OK training images are kept (0 = off); the "
                                "heatmap then adds that distance to the reconstruction error, both put on one "
                                "scale by held-out OK images (nearest_scale).")
    nearest_grid: int = setting(16, "With nearest_size: the features are average-pooled to nearest_grid x "
                                "nearest_grid cells for the search (must divide map_size; at least map_size: "
                                "the map's own positions).")
    nearest_pick: str = setting("even", "With nearest_size: which OK cells are kept — 'even': the same share of "
                                "each training image, at random; 'coreset': those that cover all training "
                                "cells best (farthest-first).", ("even", "coreset"))
    nearest_weight: float = setting(1.0, "With nearest_size: weight of the distance's scaled term in the heatmap "
                                    "(the reconstruction's weighs 1).")
    nearest_scale: str = setting("tail", "With nearest_size: how both heatmap terms are put on one scale on held-out "
                                 "OK images — 'tail': less their median, over the spread from there to their 99th "
                                 "percentile; 'std': z-scores (until 2026-12-02).", ("tail", "std"))
    fine_weight: float = setting(0.0, "With nearest_size: sharpen the heatmap with a finer backbone stage "
                                 "(fine_stage): its distance to the nearest OK feature there, on its OK scale "
                                 "(nearest_scale), times this weight, is added to the heatmap — at most the "
                                 "heatmap's own value, so it only sharpens what the heatmap already shows; the "
                                 "image score does not see it (0 = off).")
    fine_stage: int = setting(2, "With fine_weight: the finer backbone stage (index into blocks[]; Lite0's "
                              "blocks.2 has stride 8: twice the resolution of blocks.4).")
    fine_size: int = setting(4096, "With fine_weight: this many fine-stage feature vectors of the OK training "
                             "images are kept (an even share of each, at random) for the search.")
    fine_grid: int = setting(32, "With fine_weight: the fine stage's features are average-pooled to fine_grid x "
                             "fine_grid cells for the search (must divide map_size; at least map_size: the map's own "
                             "positions).")
    train_positions: float = setting(1.0, "Share of map positions (random each step) the autoencoder trains "
                                     "on; the 1×1-conv model treats positions independently.")
    feature_cache_gb: float = setting(8.0, "Bound of the float16 on-disk cache of backbone features, deleted "
                                      "after training (0 = off; above it features are recomputed each epoch; "
                                      "~3.8 GB per 1000 images at the default map).")

    def fine_on(self) -> bool:
        """Whether the fine term sharpens the heatmap (it is fitted and calibrated beside the nearest-feature term)."""
        return self.fine_weight > 0 and self.nearest_size > 0 and self.fine_size > 0

    def fine_cells(self) -> int:
        """Cells a side the fine term's search runs on: fine_grid, at most the map's own positions."""
        return min(self.fine_grid, self.map_size)

    def nearest_cells(self) -> int:
        """Cells a side the nearest-feature search runs on: nearest_grid, at most the map's own positions."""
        return min(self.nearest_grid, self.map_size)


CONFIG_TYPES: dict[str, type[AEConfig] | type[DFRConfig]] = {"ae": AEConfig, "dfr": DFRConfig}
Config = AEConfig | DFRConfig


@dataclass(frozen=True)
class Preset:
    """Named starting values: the family's field defaults with `changes` applied."""

    name: str
    model: str
    description: str  # one line: README, the Train page and `prefilter-qa train --help` show it
    changes: dict[str, Any]

    @property
    def config(self) -> Config:
        return CONFIG_TYPES[self.model](preset=self.name, **self.changes)


_THESIS_AE = {"epochs": 25, "batch_size": 16, "optimizer": "adamw", "weight_decay": 1e-5}
# The `ae` default's map (2026-12-02): the thesis' squared pixel error scored at or below chance on
# three of four datasets (fine texture and strong edges reconstruct badly in OK parts too). Now the
# input and reconstruction are compared in Lite0's blocks.1-3, each stage's error judged per
# position against the OK training images, either way (|z|: a missing label or piece of geometry
# leaves a plain surface that reconstructs too well), the peak of the blurred map the score. The
# same trained autoencoders (seed 0) re-judged through the product, image / pixel AUROC:
#                      tiles          juice          aitex          demo
#   pixel (thesis)     0.481 / 0.482  0.344 / 0.829  0.750 / 0.872  0.506 / 0.81
#   features, z        0.765 / 0.945  0.733 / 0.511  0.831 / 0.964  0.789 / 0.907
#   features, |z|      0.769 / 0.935  0.757 / 0.720  0.836 / 0.961  0.798 / 0.844  <- default
# (z vs |z| from the research re-scoring; |z| for its image AUROC, +0.04 on juice, and juice's
# pixel AUROC, +0.21, at 0.06 of the demo's pixel AUROC. Screened with z on tiles / juice only:
# blur 8 or the top 375 pixels as the score cost the tiles 0.085 / 0.05; blocks.1-4 gave the tiles
# +0.065 and juice -0.015, blocks.1-2 +0.02 / +0.01 — not taken unmeasured on the other two.)
_AE_DEFAULT = _THESIS_AE | {"ae_map": "features", "topk_at_512": 4}
_THESIS_DFR = {"backbone": "tf_efficientnet_b6", "input_size": 512}
# The `dfr` default's additions to the thesis' DFR (every stage's error z-scored per map position
# against the OK training images, each image's own median taken off, capped; the whole image
# reconstructed as one vector beside the positions), weighed on four datasets: magnetic tiles
# (small blowholes, cracks), juice bottles (MVTec LOCO: large logical anomalies), AITEX fabric
# (tiny to medium yarn faults), the demo. Through the product (bench.accuracy, seed 0), image /
# pixel AUROC (AUPRO), train s:
#                                     mag                juice              aitex              demo
#   stages 0-5, heatmap mean, score
#   max of the stages (until 2026-12) 0.909/0.964 (.905)  0.913/0.847 (.787)  0.876/0.964 (.772)  0.995/0.993 (.976)
#                                     75 s               218 s              143 s              105 s
#   stages 4-5, mean of both          0.894/0.952 (.880)  0.918/0.838 (.758)  0.868/0.986 (.892)  1.000/0.992 (.968)
#                                     -                  134 s              97 s               65 s
#   + whole_grid=8                    0.931/0.952 (.880)  0.953/0.838 (.758)  0.884/0.986 (.892)  1.000/0.992 (.968)
#                                     137 s              191 s (load 2.4)   92 s               69 s
#   + nearest_size=16384              0.941/0.954 (.872)  0.954/0.885 (.798)  0.884/0.985 (.873)  1.000/0.992 (.968)
#                                     125 s              141 s              94 s               (load 2.7)
#   + train_positions=0.0625 (then;   0.941/0.955 (.875)  0.951/0.883 (.793)  0.880/0.985 (.872)  1.000/0.992 (.968)
#     NHWC backbone, below)           58 s               71 s               51 s               35 s
#   + whole_global on blocks.3-6      0.939/0.962 (.889)  0.965/0.907 (.834)  0.891/0.986 (.870)  1.000/0.995 (.979)
#     (this; tail scale, sharpening)  30 s               40 s               27 s               21 s
#   best anchor (PaDiM/DFM/PatchCore) 0.921/0.945        0.959/0.888        0.882/0.982        1.000/0.994
# Stages 4-5 against 0-5: a tie on the mean of the four (0.931 against 0.933), each better on two;
# kept for a third less training time, AUPRO on the fabric +0.12, and because the early stages'
# texture noise is what dominated the mean of six stages on large uneven defects of unseen tiles
# (image 0.86 / pixel 0.69 there, where one deep stage reached 0.97 / 0.87). They cost the tiles'
# small cracks 0.015 image AUROC: `auto` keeps the old default as its fine-detail candidate.
# The whole-image term (engine/models/dfr/whole.py) raised the image AUROC on every dataset that
# had room (+0.037, +0.035, +0.016) and leaves the heatmap alone. Screened on cached features of
# the datasets first (stand-in): grids of 4, 8 or 16 cells a side and variances 0.9-0.99 moved
# the image AUROC by less than 0.01; the sum of the two z-scores and their max tie on the mean
# (0.917 / 0.920), the sum ahead on the tiles (0.933 / 0.922), the max on juice and fabric (by
# 0.006 and 0.013) — the sum was kept as the rule that lets both kinds of evidence add up.
# Calibrating on held-out OK images beat the training images' own peaks (in-sample, too low:
# 0.910 against 0.933 on the tiles); without enough held-out images the training images are used.
# Screened first on cached features with a linear stand-in for the autoencoder (140 stage subsets x
# median x combination per dataset, leave-one-dataset-out: stages 4-5 chosen on any three of the
# four but the tiles, where 4-6 was); the stand-in ranked variants like the autoencoder (Spearman
# 0.90 / 0.95 on the tiles) but overrated the deep stages there. No gain from a Mahalanobis distance
# of each stage's residual instead of the z-score (tiles 0.882 / 0.932 in the stand-in), from a
# per-position Gaussian of each channel's residual (0.882 / 0.934), from smoothing the heatmap or a
# top-k score (within 0.003), nor from stages 2-5 (tiles 0.878 / 0.964 through the product).
# The nearest-OK-feature term (engine/models/dfr/nearest.py) is the heatmap's second half: juice's
# pixel AUROC had stopped near 0.85 for every stage subset, because one bottleneck shared by all
# positions reconstructs a feature that is normal anywhere (label, juice) wherever it appears. The
# distance of each 4x4-position cell to the nearest of 16384 OK cells, z-scored and added to the
# reconstruction's z-score, lifted juice's pixel AUROC by +0.047 (AUPRO +0.04), the tiles' image
# AUROC by +0.010; it cost the fabric 0.001 pixel AUROC, and AUPRO 0.019 (tiles 0.008). Screened first (stand-in, cached
# features): the distance alone at the 64² map or at 16² cells gave the same maps (juice 0.910 /
# 0.909 pixel) at a 16th of the cost; 4096 OK cells lost juice 0.03 image AUROC; weight 2 on the
# distance gave juice +0.013 more pixel AUROC but the fabric -0.006 image AUROC through the product
# (0.878, below PaDiM): equal weights kept — also the pick with juice left out.
# nearest_pick=coreset (a farthest-first coreset of all training cells instead of an even random
# share) through the product, seeds 0/1, against the default's same seeds (image / pixel):
#   16384 cells: tiles +0.003/+0.003 / +0.002/+0.001, juice +0.004/0 / -0.001/-0.002, fabric +0.002/0 /
#   -0.001/-0.001 (AUPRO -0.005), demo equal; ~9 s more training (juice). Within the seed spread, gains
#   too: not worth the time. 8192 cells (scoring 20-40 % faster): juice pixel -0.003/-0.006 (0.880, beyond
#   the spread). 8192 with weight 1.5: juice 0.959/0.887 and tiles 0.949, but the fabric 0.880/0.877 image
#   and 0.983 pixel (-0.002 both seeds, AUPRO -0.013): not taken. The even share stays the default.
# nearest_scale=tail (2026-12-02; z-scores before): each heatmap term less its median on held-out OK
# positions, over the spread from there to its 99th percentile — both terms' OK tops at 1, where
# z-scores let a term with a long upper tail (juice's reconstruction: its top 1 % of OK positions
# above z 3.2, the distance's above 1.9) drown the other. From OK images alone it weighs the
# distance 1.8x on juice, 1.2x on the tiles, 0.95x on the fabric — the per-dataset weight that a
# fixed weight 1.5 or 2 could not give. Through the product, seeds 0/1/2, image / pixel (AUPRO):
#   tiles  0.943/0.939/0.934 / 0.954-0.956 (.872-.874)  (z-scores 0.941/0.938/0.933 / 0.955-0.956 (.875-.877))
#   juice  0.950/0.958/0.949 / 0.895/0.897/0.894 (.807-.812)  (0.951/0.957/0.949 / 0.883-0.886 (.793-.800))
#   fabric 0.883/0.880/0.880 / 0.985 (.872-.876)  (0.880/0.880/0.883 / 0.985 (.872-.878)); demo equal.
# Juice's pixel AUROC +0.011 on every seed (past PatchCore's 0.888), every other change within the
# seed spread. Left out, juice is what decides it; each other dataset left out is level (a tie on
# the three without juice). Screened first on the product's own maps re-fused offline: the 95th to
# 99.9th percentiles all lift juice (+0.007 to +0.014 pixel); the 99th costs the tiles' pixel least.
# whole_global (the whole image also at one cell, the larger whole-image z-score counting), seeds
# 0/1/2 against the default's: with the map's stages 4-5 (global_stages empty) juice 0.959/0.968/0.959
# (+0.010 each), but the fabric 0.886/0.876/0.872 (-0.004, -0.008 at seeds 1-2: beyond its spread,
# below PaDiM) and the tiles -0.002 each: an option, off until 2026-12-02. With global_stages=3,4,5,6
# (each stage's output averaged over the image: blocks.6 sees the part's content, blocks.3 its
# surface, neither of which the map holds) it is on (2026-12-02 evening). Image AUROC, seeds 0/1/2,
# against the default's same seeds (pixel figures unchanged: the score alone changes):
#   tiles  0.939/0.934/0.930  (0.943/0.939/0.934: -0.004 each, inside the seed spread; PaDiM 0.917-0.921)
#   juice  0.965/0.972/0.962  (0.951/0.958/0.950: +0.013; PatchCore 0.956-0.959)
#   fabric 0.891/0.890/0.887  (0.883/0.884/0.880: +0.007; PaDiM 0.882-0.887)
#   demo   1.000 (1.000)
# Screened first on the product's own score parts, re-fused offline for seeds 0/1/2 (research): the
# single cell's vector from stages 6, 5-6, 4-5, 4-6, 3-6, 2-6 x PCA error (variance 0.95/0.97/0.99),
# a Mahalanobis distance, the nearest OK image; each added to the score or as the max with the grid.
# 3-6 and 2-6 at 0.97 with the max led (mean 0.9475 / 0.9476 against 0.9435), the distances and the
# sum behind (the sum cost the fabric); left out in turn, each of juice, fabric and demo is picked
# by the other three and gains, the tiles are picked by the others and lose 0.004. Scoring takes
# blocks.6 more (one block at 8x8), training ~1 s more per 100 images.
# fine_weight=2 (2026-12-02): the heatmap sharpened by blocks.2 (stride 8), its distance to the
# nearest of 4096 OK cells (fine_size; 32x32 a side) on its OK tail scale, twice, added — at most
# the heatmap's own value; the image score keeps the map without it. Through the product, seeds
# 0/1/2, pixel AUROC (AUPRO) against the default's same seeds; image AUROC unchanged by construction:
#   tiles  0.962/0.963/0.963 (.889-.890)  (0.954-0.956 (.872-.874))
#   juice  0.907/0.909/0.907 (.834-.836)  (0.894-0.897 (.807-.812))
#   fabric 0.986 (.870-.872)              (0.985 (.872-.876))
#   demo   0.995 (.979)                   (0.992 (.968)): level with PaDiM's / PatchCore's 0.994-0.995.
# 16384 cells instead (seeds 0/1): the same within 0.001, the search 5x slower (57 against 11 ms an image).
# Screened first on the product's maps re-fused offline: the fine distance simply added lost the
# fabric 0.003-0.005 pixel AUROC (its yarn texture at stride 8) and, in the score, 0.012 image
# AUROC; capped at the heatmap's own value it lost nothing anywhere. Stage 3 (stride 16, no finer)
# did less. Weight and cap: x1 capped at 1x the heatmap, x2 at 1x, x2 at 2x — the last two tie on
# the four (mean pixel AUROC within 0.0005); whichever the other three pick, the one left out
# gains; x2 capped at 1x kept: the fabric's texture can raise the heatmap least.
# Scoring: the forward pass 90 against 75 ms an image on 2 cores (demo), and the score map is written
# beside each heatmap.
# train_positions=0.0625 trains on a random sixteenth of the map positions per step (a quarter until
# 2026-12-01 night; the 1x1-conv autoencoder treats positions alone, neighbours are near-copies after
# the local average). Through the product, seeds 0/1/2 (image / pixel), against a quarter (seed 0/1):
#   tiles 0.941/0.938/0.933 / 0.955-0.956 (a quarter 0.941 / 0.954); juice 0.951/0.957/0.949 / 0.883-0.886
#   (0.954, 0.959 / 0.884-0.887); fabric 0.880/0.880/0.883 / 0.985 (0.882, 0.884 / 0.984-0.985); demo 1.0 / 0.992.
# Every difference is inside the seed-to-seed spread (fabric -0.002, juice -0.003 at seed 0), and on
# each dataset left out the other three choose it too; training takes ~1.7x less (500 images ~2 min).
# A 64th (seed 0, before the backbone ran channels-last): the fabric 0.880 against a sixteenth's 0.883
# then, the others within 0.001: not taken. Fewer epochs do not pay: 5 (cosine schedule) lost image AUROC on all four (juice -0.018).
_DFR_DEFAULT = {"stages": (4, 5), "position_norm": True, "stage_norm": True, "image_median": True,
                "train_positions": 0.0625, "whole_grid": 8, "nearest_size": 16384, "fine_weight": 2.0,
                "whole_global": True, "global_stages": (3, 4, 5, 6)}

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("ae", "ae", "CPU default: the thesis autoencoder at 256², 25 epochs, its reconstruction judged in a "
           "pretrained EfficientNet-Lite0's features against the OK training images (the peak is the score).",
           _AE_DEFAULT),
    Preset("ae-512", "ae", "Thesis: the autoencoder at 512² (slow on CPU).", _THESIS_AE | {"input_size": 512}),
    Preset("dfr", "dfr", "CPU default: EfficientNet-Lite0 features (weights ship with the app), 256² input, "
           "64² map, the deep stages blocks.4-5, errors judged per stage and position against the OK training "
           "images, each place's distance to the nearest OK feature added, the heatmap sharpened by blocks.2, plus the "
           "whole image reconstructed as one vector (on a grid, and at one cell from blocks.3-6).",
           _DFR_DEFAULT),
    Preset(AUTO_PRESET, "dfr", "Choose for me: trains a few DFR candidates and keeps the one that best tells synthetic "
           "defects, pasted into held-out OK images, from OK parts (no defect images needed).", _DFR_DEFAULT),
    Preset("dfr-128", "dfr", "Thesis: EfficientNet-B6 at 512², 128² map (needs its weights locally; GPU "
           "advised).", _THESIS_DFR | {"map_size": 128}),
    Preset("dfr-170", "dfr", "Thesis: EfficientNet-B6 at 512², 170² map (needs its weights locally; GPU "
           "advised).", _THESIS_DFR | {"map_size": 170}),
)}


def _parse(cfg_type: type, name: str, raw: Any) -> Any:
    """Parse one value (a `--set` string or a JSON value) into the field's declared type."""
    tp = typing.get_type_hints(cfg_type)[name]
    args = typing.get_args(tp)
    optional = type(None) in args and (typing.get_origin(tp) in (Union, types.UnionType))
    if optional:
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "")):
            return None
        tp = next(a for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(int(str(i).strip()) for i in items if str(i).strip() != "")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        s = str(raw).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {raw!r}")
    if tp is int:
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(f"not an integer: {raw!r}")
        return int(raw) if not isinstance(raw, str) else int(raw.strip())
    if tp is float:
        return float(raw)
    return str(raw)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(f"config: {message}")


def _validate(cfg: Config) -> None:
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        _check(not choices or value in choices, f"{f.name}={value!r} is not one of {', '.join(choices or ())}")
    positive = ["input_size", "epochs", "batch_size"] + (["map_size", "local_avg"] if cfg.model == "dfr" else [])
    for name in positive:
        _check(getattr(cfg, name) >= 1, f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("enhance_train_share", "holdout_share", "target_frr"):
        _check(0.0 <= getattr(cfg, name) < 1.0, f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    _check(cfg.lr > 0, f"lr must be positive, got {cfg.lr}")
    _check(cfg.gpus >= 0, f"gpus must be 0 or more, got {cfg.gpus}")
    if isinstance(cfg, AEConfig):
        _check(cfg.input_size % 16 == 0, f"the autoencoder needs input_size divisible by 16, got {cfg.input_size}")
        _check(bool(cfg.map_stages) and min(cfg.map_stages) >= 0 and len(set(cfg.map_stages)) == len(cfg.map_stages),
               f"map_stages must be distinct non-negative indices, got {cfg.map_stages}")
        _check(cfg.map_blur >= 0, f"map_blur must be 0 or more, got {cfg.map_blur}")
        return
    _check(bool(cfg.stages) and min(cfg.stages) >= 0 and len(set(cfg.stages)) == len(cfg.stages),
           f"stages must be distinct non-negative indices, got {cfg.stages}")
    _check(0.0 < cfg.pca_variance <= 1.0, f"pca_variance must be in (0, 1], got {cfg.pca_variance}")
    _check(cfg.position_norm or not cfg.stage_norm,
           "stage_norm=true needs position_norm=true (it normalises each stage's map per position)")
    _check(cfg.whole_grid >= 0 and (cfg.whole_grid == 0 or cfg.map_size % cfg.whole_grid == 0),
           f"whole_grid must be 0 or divide map_size {cfg.map_size}, got {cfg.whole_grid}")
    _check(not cfg.global_stages or (min(cfg.global_stages) >= 0 and len(set(cfg.global_stages)) ==
                                     len(cfg.global_stages)),
           f"global_stages must be distinct non-negative indices, got {cfg.global_stages}")
    _check(0.0 < cfg.whole_variance <= 1.0, f"whole_variance must be in (0, 1], got {cfg.whole_variance}")
    _check(cfg.nearest_size >= 0, f"nearest_size must be 0 or more, got {cfg.nearest_size}")
    cells = cfg.nearest_cells()
    _check(cfg.nearest_size == 0 or (cells >= 1 and cfg.map_size % cells == 0),
           f"nearest_grid must divide map_size {cfg.map_size} (or be at least it), got {cfg.nearest_grid}")
    _check(cfg.nearest_weight > 0, f"nearest_weight must be positive, got {cfg.nearest_weight}")
    _check(cfg.fine_weight >= 0, f"fine_weight must be 0 (off) or positive, got {cfg.fine_weight}")
    _check(cfg.fine_size >= 0, f"fine_size must be 0 or more, got {cfg.fine_size}")
    _check(not cfg.fine_on() or (cfg.fine_grid >= 1 and cfg.map_size % cfg.fine_cells() == 0),
           f"fine_grid must divide map_size {cfg.map_size} (or be at least it), got {cfg.fine_grid}")
    _check(cfg.fine_stage >= 0, f"fine_stage must be a non-negative stage index, got {cfg.fine_stage}")
    _check(0.0 < cfg.train_positions <= 1.0, f"train_positions must be in (0, 1], got {cfg.train_positions}")
    _check(0.0 < cfg.topk_ratio <= 1.0, f"topk_ratio must be in (0, 1], got {cfg.topk_ratio}")
    _check(cfg.latent_dim is None or cfg.latent_dim >= 1, f"latent_dim must be at least 1, got {cfg.latent_dim}")
    _check(0 <= cfg.border_margin and 2 * cfg.border_margin < cfg.input_size,
           f"border_margin {cfg.border_margin} leaves nothing of a {cfg.input_size}² input")


def _with_values(cfg_type: type, base: dict[str, Any], values: dict[str, Any], what: str) -> Config:
    names = {f.name for f in dataclasses.fields(cfg_type) if f.init}
    merged = dict(base)
    for key, raw in values.items():
        if key == "model":
            continue  # fixed by the config class (checked by the callers)
        if key not in names:
            raise UserError(f"{what}: unknown key {key!r} for model {cfg_type.FAMILY!r} "
                            f"(known: {', '.join(sorted(names))})")
        try:
            merged[key] = _parse(cfg_type, key, raw)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{what}: bad value for {key}: {raw!r} ({exc})") from None
    cfg = cfg_type(**merged)
    _validate(cfg)
    return cfg


def make_config(model: str, preset: str | None = None, overrides: dict[str, str] | None = None) -> Config:
    """The preset (default: the family's CPU default) with `--set key=value` overrides applied."""
    if model not in CONFIG_TYPES:
        raise UserError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
    name = preset or model
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    base = PRESETS[name].config
    if base.model != model:
        raise UserError(f"preset {name!r} belongs to model {base.model!r}, not {model!r}")
    overrides = dict(overrides or {})
    for key in ("model", "preset"):
        if key in overrides and str(overrides[key]) != getattr(base, key):
            raise UserError(f"--set {key}=... cannot change the {key}; use --model / --preset")
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}
    return _with_values(CONFIG_TYPES[model], current, overrides, "--set")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}` (the CLI's repeated --set)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a config stored by `config_to_dict` (a run's config, a checkpoint); fields added since
    it was stored take their defaults, which are the literal behaviour."""
    model = d.get("model")
    if model not in CONFIG_TYPES:
        raise UserError(f"stored config: unknown model {model!r}")
    return _with_values(CONFIG_TYPES[model], {}, dict(d), "stored config")


def config_from_run(stored: dict[str, Any]) -> Config:
    """A run's stored config (`config_to_dict` plus the image rule, see `submit_train`)."""
    return config_from_dict({k: v for k, v in stored.items() if k != "image_rule"})


def default(name: str, cfg_type: type = _Common) -> Any:
    """A field's declared default (e.g. for metrics stored before the field existed)."""
    return next(f.default for f in dataclasses.fields(cfg_type) if f.name == name)


def field_help(cfg_type: type) -> dict[str, str]:
    """Help text per field name, for the CLI and the dashboard's Train page."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cfg_type)}


def field_choices(cfg_type: type) -> dict[str, tuple[str, ...]]:
    """Allowed values of the fields that have a fixed set of choices."""
    return {f.name: f.metadata["choices"] for f in dataclasses.fields(cfg_type) if "choices" in f.metadata}


def score_rule(stored: dict[str, Any]) -> str:
    """How a run's image score comes from its heatmap, in one sentence for the pages ("" when the
    stored config cannot be read)."""
    try:
        cfg = config_from_run(stored)
    except (UserError, ValueError, TypeError):
        return ""
    if isinstance(cfg, AEConfig):
        k = cfg.topk(cfg.input_size, cfg.input_size)
        peak = "largest value" if k == 1 else f"mean of the {k} largest values"
        if cfg.ae_map == "features":
            return ("Heatmap: where the reconstruction differs from the image in a pretrained network's features, "
                    f"more than it does there on OK training parts. Image score: the {peak} of the heatmap.")
        return f"Image score: the {peak} of the heatmap (the squared pixel error of the reconstruction)."
    peak = "largest value" if cfg.score == "max" else f"mean of the top {100 * cfg.topk_ratio:.3g} %"
    separate = cfg.stage_norm and cfg.score_combine not in ("map", cfg.stage_combine)
    sharpened = " before that sharpening" if cfg.fine_on() else ""
    rule = (f"{peak} of the stages' z-scores combined by their {cfg.score_combine}; the heatmap shows them "
            f"combined by their {cfg.stage_combine}") if separate else f"{peak} of the heatmap{sharpened}"
    heat = ("Heatmap: the reconstruction error plus the distance to the nearest feature of an OK part, both on "
            "one scale set by held-out OK parts" + (", sharpened where it is already high by a finer backbone "
            "stage's distance to OK features" if cfg.fine_on() else "") + ". ") if cfg.nearest_size else ""
    if cfg.whole_grid:
        whole = ("its features reconstructed as one vector, laid out on a grid and averaged over the image, the more "
                 "unusual of the two counting") if cfg.whole_global else "its features reconstructed as one vector"
        return (f"{heat}Image score: the {rule} plus how unusual the image is as a whole ({whole}), each as a "
                "z-score against held-out OK parts: a part unusual as a whole scores high with a quiet heatmap.")
    return f"{heat}Image score: {rule}, so its peak is not the score." if separate else f"{heat}Image score: {rule}."
