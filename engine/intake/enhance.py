"""The thesis' optional image enhancement: CLAHE on L of LAB, gamma 0.8, unsharp mask (no torch)."""

from __future__ import annotations

import cv2
import numpy as np

CLAHE_CLIP_LIMIT = 2.0  # OpenCV's usual clip limit
CLAHE_TILES = (8, 8)  # tile grid of the CLAHE histogram equalisation
GAMMA = 0.8  # out = 255 · (in / 255) ** GAMMA: < 1 lifts dark regions
UNSHARP_SIGMA = 2.0  # Gaussian blur sigma of the unsharp mask (pixels)
UNSHARP_AMOUNT = 0.5  # out = (1 + amount) · img − amount · blur

_GAMMA_LUT = np.clip(255.0 * (np.arange(256) / 255.0) ** GAMMA + 0.5, 0, 255).astype(np.uint8)


def enhance(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 RGB, enhanced."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"enhance expects an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILES)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    out = cv2.LUT(out, _GAMMA_LUT)
    blur = cv2.GaussianBlur(out, (0, 0), UNSHARP_SIGMA)
    return cv2.addWeighted(out, 1.0 + UNSHARP_AMOUNT, blur, -UNSHARP_AMOUNT, 0)
