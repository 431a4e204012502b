"""Image detail: original, heatmap overlay, ground truth and predicted mask side by side.

Heatmaps are stored at the model input size and stretched back onto the original pixel grid
(`viz.to_original_grid`, the inverse of the input rule's stretch); colours use the evaluation's
fixed `map_range`, so the same colour means the same value on every image of an evaluation.
Large images are shown on a reduced grid of the same aspect (the browser would shrink them anyway).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import streamlit as st
from PIL import Image as PILImage

from dashboard.state import workspace
from dashboard.widgets.results_data import EvalData
from engine.errors import InputFileError
from engine.evaluation import heatmaps as viz
from engine.fsutil import atomic_write
from engine.intake.images import read_image, read_mask, resize_mask
from engine.intake.thumbnails import get_thumbnail

DISPLAY_MAX = 900  # longest side shown in the detail view
GT_COLOR = (255, 40, 40)
PRED_COLOR = (0, 200, 255)


@st.cache_data(show_spinner=False, max_entries=48)
def _display_image(path: str, sha256: str) -> tuple[np.ndarray | None, str | None]:
    """(image reduced to DISPLAY_MAX, None) or (None, why it cannot be shown)."""
    try:
        img = read_image(Path(path))  # (H, W, 3) uint8
    except InputFileError as e:
        return None, str(e)
    h, w = img.shape[:2]
    f = DISPLAY_MAX / max(h, w)
    if f < 1:
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return img, None


@st.cache_data(show_spinner=False, max_entries=256)
def load_map(path: str) -> np.ndarray | None:
    """A stored heatmap (model input size) or None if its file is gone."""
    try:
        return viz.load_heatmap(path)
    except (OSError, ValueError):
        return None


@st.cache_data(show_spinner=False, max_entries=48)
def _display_mask(path: str, hw: tuple[int, int]) -> np.ndarray | None:
    try:
        return resize_mask(read_mask(Path(path)), hw)
    except InputFileError:
        return None


def heat_thumbnail(data: EvalData, i: int, size: int = 160, alpha: float = 0.45) -> Path:
    """Grid thumbnail with the heatmap blended over it, written once to the workspace cache
    (an evaluation's maps never change); the plain thumbnail if there is no map."""
    cache = workspace().cache_dir
    thumb = get_thumbnail(cache, Path(data.paths[i]), data.sha256[i], size)
    hm = data.heatmaps[i]
    out = cache / "heat" / str(data.evaluation_id) / f"{data.image_ids[i]}-{size}-{round(alpha * 100)}.jpg"
    if out.exists():
        return out
    amap = load_map(hm) if hm else None
    if amap is None or thumb.name.startswith("_placeholder"):
        return thumb
    img = np.asarray(PILImage.open(thumb).convert("RGB"))  # (h, w, 3)
    vmin, vmax = data.map_range
    blended = PILImage.fromarray(viz.overlay(img, amap, vmin, vmax, alpha))
    atomic_write(out, lambda tmp: blended.save(tmp, format="JPEG", quality=85))
    return out


SCORE_MAP = "Score map"  # the panel of the map the score came from, when it is not the heatmap


def _ringed(img: np.ndarray, amap: np.ndarray, margin: int) -> np.ndarray:
    """`img` (display grid) with a ring where `amap` (input size) has the maximum the score saw."""
    r, c, _ = viz.score_peak(amap, margin)
    return viz.mark_peak(img, (r + 0.5) * img.shape[0] / amap.shape[0], (c + 0.5) * img.shape[1] / amap.shape[1])


def detail_images(data: EvalData, i: int, *, alpha: float, mask_path: str | None,
                  pixel_threshold: float | None) -> dict[str, np.ndarray | str]:
    """Panels of the detail view: an array to show, or a string saying why there is none.

    The score is the peak of one map: the heatmap, or (DFR with score_combine=max, auto's
    fine-detail candidate: heatmap = mean of the stages, score = the most unusual stage) a
    separate score map shown beside it. That map carries a ring at its maximum, so a rejected
    part with a calm heatmap still shows why. With DFR's whole-image term (the `dfr` default) the
    peak is the score's local part; the other part has no map (the score rule says so)."""
    img, err = _display_image(data.paths[i], data.sha256[i])
    if img is None:
        return {"Original": err or "unreadable"}
    hw = img.shape[:2]
    out: dict[str, np.ndarray | str] = {"Original": img}
    amap = load_map(data.heatmaps[i]) if data.heatmaps[i] else None
    smap_path = data.score_maps[i] if i < len(data.score_maps) else None
    smap = load_map(smap_path) if smap_path else None
    if amap is None:
        out["Heatmap"] = "no heatmap file for this image"
    else:
        big = viz.to_original_grid(amap, hw)  # (H, W) on the (display) original grid
        vmin, vmax = data.map_range
        out["Heatmap"] = viz.overlay(img, big, vmin, vmax, alpha)
        if smap_path is None:  # the heatmap is the score's map: ring its peak there
            out["Heatmap"] = _ringed(out["Heatmap"], amap, data.border_margin)
    if smap_path is not None:
        if smap is None:
            out[SCORE_MAP] = "no score map file for this image"
        else:
            vmin, vmax = data.score_map_range or (float(np.percentile(smap, 1)), float(np.percentile(smap, 99.9)))
            ov = viz.overlay(img, viz.to_original_grid(smap, hw), vmin, vmax, alpha)
            out[SCORE_MAP] = _ringed(ov, smap, data.border_margin)
    gt = _display_mask(mask_path, hw) if mask_path else None
    out["Ground truth"] = viz.mask_overlay(img, gt, GT_COLOR) if gt is not None else (
        "no mask" if not data.y_nok[i] else "NOK image without a mask")
    if amap is not None and pixel_threshold is not None:
        pred = viz.predicted_mask(viz.to_original_grid(amap, hw), pixel_threshold)
        out["Predicted mask"] = viz.mask_overlay(img, pred, PRED_COLOR)
    else:
        out["Predicted mask"] = "no pixel threshold set" if amap is not None else "no heatmap"
    return out


def show_panels(panels: dict[str, np.ndarray | str], captions: dict[str, str] | None = None) -> None:
    """One column per panel; text panels become an info box."""
    cols = st.columns(len(panels))
    for col, (name, val) in zip(cols, panels.items()):
        with col:
            st.markdown(f"**{name}**")
            if isinstance(val, str):
                st.info(val)
            else:
                st.image(val, width="stretch")
            if captions and captions.get(name):
                st.caption(captions[name])


def detail_ui(data: EvalData, i: int, *, mask_path: str | None, pixel_threshold: float | None,
              key: str) -> None:
    """Original | heatmap overlay (opacity slider) | ground truth | predicted mask."""
    if pixel_threshold is None:  # no saved pixel threshold: the evaluation's suggestion
        pixel_threshold = (data.metrics.get("auto_threshold") or {}).get("pixel")
    c1, c2 = st.columns([2, 1])
    alpha = c1.slider("Heatmap opacity", 0.0, 1.0, 0.5, 0.05, key=f"{key}_alpha")
    px = c2.number_input("Pixel threshold (predicted mask)", value=pixel_threshold, format="%.4f",
                         key=f"{key}_px_{data.evaluation_id}",
                         help="Pixels with an anomaly value at or above it form the predicted mask. "
                              "Defaults to the run's active pixel threshold.")
    panels = detail_images(data, i, alpha=alpha, mask_path=mask_path, pixel_threshold=px)
    vmin, vmax = data.map_range
    srng = data.score_map_range
    show_panels(panels, {
        "Heatmap": f"colour scale {vmin:.3g} (dark blue) – {vmax:.3g} (red), same for all images"
                   + ("" if SCORE_MAP in panels else "; ring: its peak (the score, or the score's local part "
                                                      "when the whole image counts too: see the score rule)"),
        SCORE_MAP: "the map the image score was taken from (see the score rule above); ring: its maximum, "
                   f"the score {data.scores[i]:.4g}" + (f" (scale {srng[0]:.3g} – {srng[1]:.3g})" if srng else ""),
        "Ground truth": "red: annotated defect", "Predicted mask": "cyan: pixels ≥ pixel threshold",
    })
