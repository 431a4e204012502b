"""Run configurations: frozen dataclasses, named presets and `--set key=value` parsing.

No torch here: the dashboard's Train page reads presets and help texts from this module.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from engine.errors import UserError

MODELS = ("ae", "dfr")


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with its help text (and allowed values) in the metadata."""
    meta: dict[str, Any] = {"help": help}
    if choices:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class _Common:
    """Fields shared by both model families."""

    model: str = _f("ae", "Model family: 'ae' (CBAM autoencoder) or 'dfr' (deep feature reconstruction).",
                    MODELS)  # which family; fixed by the config class
    preset: str = _f("ae", "Name of the preset these values started from.")  # informational
    input_size: int = _f(256, "Images are stretched to input_size x input_size pixels (model input).")  # 256² on CPU
    epochs: int = _f(10, "Passes over the training images.")  # family-specific, see presets
    batch_size: int = _f(8, "Images per optimisation step.")  # family-specific, see presets
    lr: float = _f(1e-3, "Learning rate of the optimiser.")  # thesis: 1e-3 for both families
    weight_decay: float = _f(0.0, "Weight decay (L2 / AdamW decoupled) of the optimiser.")  # thesis AE: 1e-5
    optimizer: str = _f("adam", "Optimiser: 'adam' or 'adamw'.", ("adam", "adamw"))  # thesis DFR: Adam
    lr_schedule: str = _f("constant", "Learning-rate schedule: 'constant' or 'cosine' (to 0 over all steps).",
                          ("constant", "cosine"))  # the thesis used a constant rate
    seed: int = _f(0, "Random seed (weights init, shuffling, enhancement choice).")  # fixed for reproducibility
    device: str = _f("auto", "'auto' (CUDA when available), 'cpu' or 'cuda'.",
                     ("auto", "cpu", "cuda"))  # GPU when there is one
    num_workers: int = _f(2, "DataLoader worker processes decoding images in parallel (0 = in-process).")  # 2 cores
    enhance: bool = _f(False, "Apply the thesis enhancement (CLAHE, gamma 0.8, unsharp mask) at evaluation "
                       "and to a share of training images.")  # off: optional in the thesis
    enhance_train_share: float = _f(0.15, "Share of training images enhanced when 'enhance' is on.")  # thesis: 15%
    holdout_share: float = _f(0.1, "Share of OK training images held out for the OK-only threshold.")  # 10%
    target_frr: float = _f(0.01, "False-reject rate the OK-only threshold aims at on held-out OK images.")  # 1%
    amp: bool = _f(True, "Mixed precision on CUDA (ignored on CPU).")  # faster on GPUs, no effect on CPU


@dataclass(frozen=True)
class AEConfig(_Common):
    """CBAM convolutional autoencoder (thesis `RevisedAutoencoder`)."""

    model: str = _f("ae", "Model family (always 'ae' here).", ("ae",))  # fixed
    preset: str = _f("ae", "Name of the preset these values started from.")  # informational
    input_size: int = _f(256, "Images are stretched to input_size² (multiple of 16).")  # CPU default; thesis 512
    epochs: int = _f(25, "Passes over the training images.")  # thesis: 25
    batch_size: int = _f(16, "Images per optimisation step.")  # thesis: 16
    lr: float = _f(1e-3, "Learning rate.")  # thesis: AdamW 1e-3
    weight_decay: float = _f(1e-5, "AdamW weight decay.")  # thesis: 1e-5
    optimizer: str = _f("adamw", "Optimiser: 'adam' or 'adamw'.", ("adam", "adamw"))  # thesis: AdamW
    skip: bool = _f(True, "Skip connection from the 3rd encoder stage into the decoder.")  # thesis: on
    dropout: float = _f(0.2, "Dropout inside each CBAM block.")  # thesis: 0.2
    mse_weight: float = _f(0.15, "Loss = mse_weight·MSE + (1 − mse_weight)·(1 − SSIM).")  # thesis: 0.15 / 0.85
    topk_at_512: int = _f(1500, "Image score = mean of the k largest pixel errors; k at 512², "
                          "scaled by pixel count.")  # thesis: 1500 (375 at 256²)


@dataclass(frozen=True)
class DFRConfig(_Common):
    """Deep Feature Reconstruction over a frozen pretrained EfficientNet."""

    model: str = _f("dfr", "Model family (always 'dfr' here).", ("dfr",))  # fixed
    preset: str = _f("dfr", "Name of the preset these values started from.")  # informational
    input_size: int = _f(256, "Images are stretched to input_size² before the backbone.")  # CPU default
    epochs: int = _f(15, "Passes over the training feature maps.")  # CPU default, see PRESETS
    batch_size: int = _f(4, "Images (feature maps) per optimisation step.")  # thesis: 4
    lr: float = _f(1e-3, "Learning rate.")  # thesis: Adam 1e-3
    weight_decay: float = _f(0.0, "Weight decay.")  # thesis: none
    optimizer: str = _f("adam", "Optimiser: 'adam' or 'adamw'.", ("adam", "adamw"))  # thesis: Adam
    backbone: str = _f("tf_efficientnet_lite0", "timm EfficientNet name (its weights must be available "
                       "locally).")  # Lite0 ships with a pip package: works offline
    backbone_weights: str = _f("pretrained", "'pretrained' (packaged / local cache), 'random' (tests only) "
                               "or a path to a .pth state_dict.")  # never downloaded
    stages: tuple[int, ...] = _f((0, 1, 2, 3, 4, 5), "Backbone stages (indices into blocks[]) whose outputs "
                                 "are reconstructed, comma separated.")  # thesis: first six
    map_size: int = _f(64, "Side of the feature map all stages are brought to.")  # thesis: 128 / 170 at 512²
    aggregation: str = _f("ours", "'ours': pool/resize each stage straight to the map; 'thesis': upsample "
                          "to the input size first, then average-pool (slow).", ("ours", "thesis"))  # cheaper
    local_avg: int = _f(3, "Side of the local average applied to each stage on the map (1 = none).")  # 3×3
    feature_standardise: bool = _f(False, "Standardise each feature channel with training mean/std.")  # literal: off
    pca_variance: float = _f(0.9, "Latent width d = PCA components keeping this share of feature "
                             "variance.")  # thesis: 90%
    pca_samples_per_image: int = _f(1024, "Feature vectors sampled per training image for the PCA.")  # plenty
    latent_dim: int | None = _f(None, "Fixed latent width d (overrides the PCA rule when set).")  # None: PCA
    score: str = _f("max", "Image score: 'max' of the map or 'topk' (mean of the top topk_ratio share).",
                    ("max", "topk"))  # thesis: max
    topk_ratio: float = _f(0.01, "Share of map pixels averaged by the 'topk' score.")  # top 1%
    border_margin: int = _f(0, "Pixels (at input size) along the border ignored by the image score.")  # off
    residual_norm: bool = _f(False, "Divide each channel's squared error by its mean on training images "
                             "before averaging over channels.")  # literal: off
    position_norm: bool = _f(False, "Turn the error map into a z-score per map position, using the mean and "
                             "std of the OK training images' errors there.")  # literal: off
    stage_norm: bool = _f(False, "With position_norm: z-score each stage's error map separately and average "
                          "them, so every scale weighs the same whatever its channel count.")  # literal: off
    stage_combine: str = _f("mean", "With stage_norm: combine the stages' z-scores at each position by their "
                            "'mean' or their 'max' (the most unusual scale).", ("mean", "max"))  # see PRESETS
    image_median: bool = _f(False, "Subtract from each image's error map (each stage's, with stage_norm) its own "
                            "median, at most the largest median of an OK training image: what stands out from "
                            "this part's background.")  # literal: off
    score_combine: str = _f("map", "Image score from the heatmap ('map') or, with stage_norm, from the stages' "
                            "z-scores combined by their 'mean' or 'max' at each position (without stage_norm "
                            "all three are the heatmap).",
                            ("map", "mean", "max"))  # literal: the heatmap
    train_positions: float = _f(1.0, "Share of map positions (random each step) the autoencoder trains on; "
                                "the 1×1-conv model treats positions independently.")  # literal: all
    feature_cache_gb: float = _f(8.0, "Bound of the float16 on-disk cache of backbone features, deleted after "
                                 "training (0 = off; above it features are recomputed each "
                                 "epoch).")  # ~2100 images at 64² maps of 464 channels


CONFIG_TYPES: dict[str, type] = {"ae": AEConfig, "dfr": DFRConfig}

PRESETS: dict[str, AEConfig | DFRConfig] = {
    # CPU default: the thesis architecture and optimiser at 256² (4x fewer pixels than the thesis).
    "ae": AEConfig(preset="ae", input_size=256, epochs=25, batch_size=16),
    # Thesis: AdamW lr 1e-3 wd 1e-5, 25 epochs, batch 16, 512².
    "ae-512": AEConfig(preset="ae-512", input_size=512, epochs=25, batch_size=16, lr=1e-3, weight_decay=1e-5),
    # CPU default: the thesis' DFR (Lite0, stages 0-5, PCA-90% latent, Adam 1e-3, batch 4,
    # 15 epochs, max score) at 256² with a 64² map, plus per-stage, per-position z-scores of the
    # error taken from the OK training images, each image's own median taken off each stage,
    # heatmap = mean of the stages, image score = max over positions of the most unusual stage.
    # Measured on the magnetic-tile sample (200 OK train, 224 test; 2 seeds), image / pixel AUROC:
    #   literal (no normalisation)                      0.72-0.73 / 0.95   (top-1% score: 0.79)
    #   + position_norm (one z-score per position)      0.87-0.88 / 0.95
    #   + stage_norm, mean of the stages                0.88-0.89 / 0.95
    #   + stage_norm, max of the stages                 0.90-0.91 / 0.94
    #   + image_median, mean of the stages              0.90      / 0.96
    #   + image_median, max of the stages               0.91      / 0.94-0.95
    #   + image_median, heatmap mean, score max (this)  0.91      / 0.96   (AUPRO 0.84 -> 0.90)
    # Not worth it there: 32² map (0.87 / 0.95), 384² input, per-channel standardisation, PCA
    # 97%, fewer stages, blurring the map, a border margin, a 1x1 or 5x5 local average (1x1 with
    # the mean of the stages: pixel 0.957, image 0.87), mixes of the stages' mean and max in one
    # map (between the two). train_positions=0.25 trains on a random quarter of the map positions
    # per step: same accuracy, ~4x faster epochs.
    # About 3.8 GB of float16 feature cache per 1000 images while training (bound: feature_cache_gb).
    "dfr": DFRConfig(preset="dfr", input_size=256, map_size=64, epochs=15, batch_size=4, position_norm=True,
                     stage_norm=True, stage_combine="mean", image_median=True, score_combine="max",
                     train_positions=0.25),
    # Thesis, literal: tf_efficientnet_b6 at 512², map 128², Adam lr 1e-3, batch 4.
    "dfr-128": DFRConfig(preset="dfr-128", backbone="tf_efficientnet_b6", input_size=512, map_size=128,
                         epochs=15, batch_size=4, lr=1e-3, optimizer="adam", score="max"),
    # Thesis, literal: as dfr-128 with a 170² map.
    "dfr-170": DFRConfig(preset="dfr-170", backbone="tf_efficientnet_b6", input_size=512, map_size=170,
                         epochs=15, batch_size=4, lr=1e-3, optimizer="adam", score="max"),
}


def _hints(cfg_type: type) -> dict[str, Any]:
    return typing.get_type_hints(cfg_type)


def _parse(cfg_type: type, name: str, raw: Any) -> Any:
    """Parse one value (a `--set` string or a JSON value) into the field's declared type."""
    tp = _hints(cfg_type)[name]
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


def _validate(cfg: AEConfig | DFRConfig) -> None:
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise UserError(f"config: {f.name}={getattr(cfg, f.name)!r} is not one of {', '.join(choices)}")
    positive = ["input_size", "epochs", "batch_size"] + (["map_size", "local_avg"] if cfg.model == "dfr" else [])
    for name in positive:
        if getattr(cfg, name) < 1:
            raise UserError(f"config: {name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("enhance_train_share", "holdout_share", "target_frr"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise UserError(f"config: {name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise UserError(f"config: lr must be positive, got {cfg.lr}")
    if isinstance(cfg, AEConfig) and cfg.input_size % 16:
        raise UserError(f"config: the autoencoder needs input_size divisible by 16, got {cfg.input_size}")
    if isinstance(cfg, DFRConfig):
        if not cfg.stages or min(cfg.stages) < 0 or len(set(cfg.stages)) != len(cfg.stages):
            raise UserError(f"config: stages must be distinct non-negative indices, got {cfg.stages}")
        if not 0.0 < cfg.pca_variance <= 1.0:
            raise UserError(f"config: pca_variance must be in (0, 1], got {cfg.pca_variance}")
        if cfg.stage_norm and not cfg.position_norm:
            raise UserError("config: stage_norm=true needs position_norm=true "
                            "(it normalises each stage's map per position)")
        if not 0.0 < cfg.train_positions <= 1.0:
            raise UserError(f"config: train_positions must be in (0, 1], got {cfg.train_positions}")
        if not 0.0 < cfg.topk_ratio <= 1.0:
            raise UserError(f"config: topk_ratio must be in (0, 1], got {cfg.topk_ratio}")
        if cfg.latent_dim is not None and cfg.latent_dim < 1:
            raise UserError(f"config: latent_dim must be at least 1, got {cfg.latent_dim}")
        if cfg.border_margin < 0 or 2 * cfg.border_margin >= cfg.input_size:
            raise UserError(f"config: border_margin {cfg.border_margin} leaves nothing of a {cfg.input_size}² input")


def _with_values(cfg_type: type, base: dict[str, Any], values: dict[str, Any], what: str) -> AEConfig | DFRConfig:
    names = {f.name for f in dataclasses.fields(cfg_type)}
    merged = dict(base)
    for key, raw in values.items():
        if key not in names:
            raise UserError(f"{what}: unknown key {key!r} for model {base.get('model')!r} "
                            f"(known: {', '.join(sorted(names))})")
        try:
            merged[key] = _parse(cfg_type, key, raw)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{what}: bad value for {key}: {raw!r} ({exc})") from None
    cfg = cfg_type(**merged)
    _validate(cfg)
    return cfg


def make_config(model: str, preset: str | None = None,
                overrides: dict[str, str] | None = None) -> AEConfig | DFRConfig:
    """The preset (default: the family's CPU default) with `--set key=value` overrides applied."""
    if model not in CONFIG_TYPES:
        raise UserError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
    name = preset or model
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    if base.model != model:
        raise UserError(f"preset {name!r} belongs to model {base.model!r}, not {model!r}")
    overrides = dict(overrides or {})
    for key in ("model", "preset"):
        if key in overrides and str(overrides[key]) != getattr(base, key):
            raise UserError(f"--set {key}=... cannot change the {key}; use --model / --preset")
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
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


def config_to_dict(cfg: AEConfig | DFRConfig) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(d: dict[str, Any]) -> AEConfig | DFRConfig:
    """Rebuild a config stored by `config_to_dict` (e.g. a run's config.json or a checkpoint)."""
    model = d.get("model")
    if model not in CONFIG_TYPES:
        raise UserError(f"stored config: unknown model {model!r}")
    cfg_type = CONFIG_TYPES[model]
    return _with_values(cfg_type, {}, dict(d), "stored config")


def config_from_run(stored: dict[str, Any]) -> AEConfig | DFRConfig:
    """A run's stored config (`config_to_dict` plus the image rule, see `submit_train`)."""
    return config_from_dict({k: v for k, v in stored.items() if k != "image_rule"})


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
        k = max(1, round(cfg.topk_at_512 * (cfg.input_size / 512) ** 2))
        return f"Image score: mean of the {k} largest pixel errors of the heatmap."
    peak = "largest value" if cfg.score == "max" else f"mean of the top {100 * cfg.topk_ratio:.3g} %"
    if cfg.stage_norm and cfg.score_combine not in ("map", cfg.stage_combine):
        return (f"Image score: {peak} of the stages' z-scores combined by their {cfg.score_combine}; the "
                f"heatmap shows them combined by their {cfg.stage_combine}, so its peak is not the score.")
    return f"Image score: {peak} of the heatmap."
