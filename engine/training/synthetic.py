"""Synthetic defects pasted into OK images: how `--preset auto` judges candidates without NOK images.

A plant starts with few or no labelled defects. What it has are OK parts, so candidate models are
compared on held-out OK images with defects made up from the image itself — kinds that cover what
real parts show, from small to large:
- scratch: a thin curved line, darker or brighter than the surface around it;
- cutpaste: a patch of the same image copied elsewhere (a local texture that does not belong);
- stain: an uneven, smooth-edged region whose brightness or colour shifts (large areas, burns);
- missing: a region filled with a flat colour from the image (missing geometry, breaks).
Each defect comes with its mask. Deterministic for a seed; numpy + cv2 only.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

KINDS = ("scratch", "cutpaste", "stain", "missing")


def _blob(rng: np.random.Generator, size: int, area: float) -> np.ndarray:
    """A smooth random region covering about `area` of a size × size image: (S, S) bool."""
    noise = cv2.resize(rng.random((6, 6)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    cy, cx = rng.uniform(0.25, 0.75, 2) * size
    yy, xx = np.mgrid[:size, :size]
    radius = size * np.sqrt(area / np.pi)
    dist = np.hypot(yy - cy, xx - cx) / max(radius, 1.0)
    field = dist - 0.6 * (noise - 0.5)  # an irregular outline around the centre
    return field < 1.0


def _scratch(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    pts = rng.uniform(0.1, 0.9, (4, 2)) * s
    t = np.linspace(0, 1, 64)[:, None]
    curve = ((1 - t) ** 3 * pts[0] + 3 * (1 - t) ** 2 * t * pts[1] + 3 * (1 - t) * t**2 * pts[2]
             + t**3 * pts[3]).astype(np.int32)  # a cubic Bezier
    mask = np.zeros((s, s), np.uint8)
    cv2.polylines(mask, [curve[:, None, :]], False, 1, thickness=max(1, round(s / 160)), lineType=cv2.LINE_AA)
    out = img.astype(np.float32)
    shift = rng.choice([-1.0, 1.0]) * rng.uniform(60, 120)
    out[mask > 0] = np.clip(out[mask > 0] + shift, 0, 255)
    return out.astype(np.uint8), mask > 0


def _cutpaste(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    h, w = (rng.uniform(0.08, 0.2, 2) * s).astype(int) + 2
    y0, x0 = rng.integers(0, s - h), rng.integers(0, s - w)
    y1, x1 = rng.integers(0, s - h), rng.integers(0, s - w)
    patch = img[y0:y0 + h, x0:x0 + w].copy()
    if rng.random() < 0.5:
        patch = patch[::-1] if rng.random() < 0.5 else patch[:, ::-1]
    out = img.copy()
    out[y1:y1 + h, x1:x1 + w] = patch
    mask = np.zeros((s, s), bool)
    mask[y1:y1 + h, x1:x1 + w] = np.any(patch != img[y1:y1 + h, x1:x1 + w], axis=-1)
    return out, mask


def _stain(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    mask = _blob(rng, s, rng.uniform(0.03, 0.25))
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), s / 100 + 1)[..., None]
    soft[soft < 0.05] = 0.0  # no invisible tail outside the stain
    tint = rng.uniform(-1, 1, 3) * 20 + rng.choice([-1.0, 1.0]) * rng.uniform(25, 60)
    out = np.clip(img.astype(np.float32) + soft * tint, 0, 255)
    return out.astype(np.uint8), soft[..., 0] > 0.2


def _missing(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = img.shape[0]
    mask = _blob(rng, s, rng.uniform(0.01, 0.08))
    colour = np.percentile(img.reshape(-1, 3), rng.choice([2, 50, 98]), axis=0)
    out = img.copy()
    out[mask] = colour.astype(np.uint8)
    return out, mask


MAKERS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": _scratch, "cutpaste": _cutpaste, "stain": _stain, "missing": _missing}


def add_defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) uint8 OK image -> (defective image, (S, S) bool mask of what changed)."""
    if img.ndim != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square (S, S, 3) image, got {img.shape}")
    out, mask = MAKERS[kind](img, rng)
    if not mask.any():  # a patch pasted onto identical texture: fall back to a stain
        out, mask = _stain(img, rng)
    return out, mask


def synthetic_set(ok_images: list[np.ndarray], seed: int, per_image: int = 2
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Defective copies of OK images, the kinds taking turns: images (N, S, S, 3), masks (N, S, S),
    kinds (N,)."""
    rng = np.random.default_rng(seed)
    images, masks, kinds = [], [], []
    k = 0
    for img in ok_images:
        for _ in range(per_image):
            kind = KINDS[k % len(KINDS)]
            k += 1
            out, mask = add_defect(img, kind, rng)
            images.append(out)
            masks.append(mask)
            kinds.append(kind)
    return np.stack(images), np.stack(masks), kinds
