"""Editable run configuration: the preset's values as widgets, returning only what changed.

Defaults and help texts come from engine.config (the same metadata `prefilter-qa train --set`
uses), so the form always matches the engine.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import streamlit as st

from engine.config import CONFIG_TYPES, PRESETS, field_choices, field_help

HIDDEN = ("model", "preset")
MAIN = {"ae": ("input_size", "epochs", "batch_size", "lr", "ae_map", "device", "enhance"),
        "dfr": ("input_size", "epochs", "batch_size", "lr", "backbone", "map_size", "score", "device", "enhance")}
LABELS = {
    "input_size": "Input size (px)", "lr": "Learning rate", "map_size": "Feature map size",
    "batch_size": "Batch size", "backbone_weights": "Backbone weights", "topk_at_512": "Top-k at 512²",
    "pca_samples_per_image": "PCA samples per image", "pca_variance": "PCA variance kept",
    "feature_cache_gb": "Feature cache (GB)", "num_workers": "Loader workers", "lr_schedule": "LR schedule",
    "mse_weight": "MSE weight", "topk_ratio": "Top-k ratio", "amp": "Mixed precision (CUDA)",
    "target_frr": "Target false-reject rate", "holdout_share": "Held-out OK share",
    "enhance_train_share": "Enhanced training share", "latent_dim": "Latent width d",
    "local_avg": "Local average (px)", "feature_standardise": "Standardise features",
    "residual_norm": "Normalise residuals", "border_margin": "Border margin (px)",
    "weight_decay": "Weight decay", "stages": "Backbone stages", "position_norm": "Z-score per position",
    "stage_norm": "Z-score per stage", "stage_combine": "Combine stages by", "train_positions": "Positions per step",
    "image_median": "Subtract image median", "score_combine": "Score: combine stages by",
    "auto_threshold": "Automatic threshold rule", "auto_review_band": "Automatic review band",
    "ae_map": "Anomaly map", "map_backbone": "Map backbone", "map_weights": "Map backbone weights",
    "map_stages": "Map backbone stages", "map_blur": "Map blur (px)",
}


def _kind(cfg_type: type, name: str) -> str:
    """"bool" | "int" | "optint" | "float" | "tuple" | "str" from the field's annotation."""
    tp = typing.get_type_hints(cfg_type)[name]
    args = typing.get_args(tp)
    if type(None) in args:
        return "optint"
    if typing.get_origin(tp) is tuple:
        return "tuple"
    return {bool: "bool", int: "int", float: "float"}.get(tp, "str")


def to_text(value: Any) -> str:
    """A value as `--set key=value` text (what engine.config parses back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


def _widget(cfg_type: type, name: str, default: Any, key: str) -> Any:
    label = LABELS.get(name, name.replace("_", " ").capitalize())
    help_text = field_help(cfg_type).get(name, "") + f"  \nPreset value: `{to_text(default)}`"
    choices = field_choices(cfg_type).get(name)
    kind = _kind(cfg_type, name)
    if choices:
        return st.selectbox(label, list(choices), index=list(choices).index(default), help=help_text, key=key)
    if kind == "bool":
        return st.toggle(label, value=bool(default), help=help_text, key=key)
    if kind == "int":
        return int(st.number_input(label, value=int(default), step=1, help=help_text, key=key))
    if kind == "optint":
        v = st.number_input(label, value=default, step=1, min_value=1, help=help_text, key=key,
                            placeholder="automatic")
        return None if v is None else int(v)
    if kind == "float":
        step = 1e-4 if 0 < abs(default) < 1e-2 else 0.01 if abs(default) < 1 else 0.5
        return float(st.number_input(label, value=float(default), step=step, format="%g",
                                     help=help_text, key=key))
    if kind == "tuple":
        return st.text_input(label, value=to_text(default), help=help_text, key=key)
    return st.text_input(label, value=str(default), help=help_text, key=key)


def _same(value: Any, default: Any) -> bool:
    return to_text(value).replace(" ", "") == to_text(default).replace(" ", "")


def config_form_ui(model: str, preset: str, *, key: str, columns: int = 4) -> dict[str, str]:
    """Main fields, then an "Advanced" expander with the rest; returns the changed fields as text.

    Widget keys include the preset, so choosing another preset shows its values.
    """
    cfg_type = CONFIG_TYPES[model]
    base = PRESETS[preset].config
    names = [f.name for f in dataclasses.fields(cfg_type) if f.name not in HIDDEN]
    main = [n for n in MAIN[model] if n in names]
    rest = [n for n in names if n not in main]
    values: dict[str, Any] = {}

    def grid(fields: list[str]) -> None:
        cols = st.columns(columns)
        for i, name in enumerate(fields):
            with cols[i % columns]:
                values[name] = _widget(cfg_type, name, getattr(base, name), f"{key}_{preset}_{name}")

    grid(main)
    with st.expander(f"Advanced settings ({len(rest)})", icon=":material/tune:"):
        grid(rest)
    return {n: to_text(v) for n, v in values.items() if not _same(v, getattr(base, n))}
