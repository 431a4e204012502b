"""What the canvas shows: a view (zoom + centre) of the image with the mask tinted on it.

The background is rendered at exactly the canvas size (area-averaged when shrinking, nearest
neighbour when enlarging so single pixels stay visible), so the contain fit is exact and the
geometry for rasterisation is known here without asking the browser.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import streamlit as st
from PIL import Image

from engine.annotation.rasterise import CanvasGeometry
from engine.intake.images import read_image
from engine.intake.maskfiles import load_mask_file

MAX_CANVAS = (720, 560)  # the canvas' largest size on screen (px)
ZOOMS = (1, 2, 4, 8)
MASK_RGB = (255, 48, 48)  # same red as the brush: saved, drafted and pending look alike
MINIMAP_PX = 220


@dataclass(frozen=True)
class View:
    """A zoom level and the image point at the centre of the view (image px)."""

    zoom: int
    cx: float
    cy: float

    def box(self, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the image shown, kept inside the image."""
        h, w = hw
        vw, vh = max(1, math.ceil(w / self.zoom)), max(1, math.ceil(h / self.zoom))
        x0 = int(min(max(round(self.cx - vw / 2), 0), w - vw))
        y0 = int(min(max(round(self.cy - vh / 2), 0), h - vh))
        return x0, y0, x0 + vw, y0 + vh

    def panned(self, hw: tuple[int, int], dx: float, dy: float) -> View:
        """Move by fractions of the view size (clamped to the image)."""
        x0, y0, x1, y1 = self.box(hw)
        moved = View(self.zoom, (x0 + x1) / 2 + dx * (x1 - x0), (y0 + y1) / 2 + dy * (y1 - y0))
        a0, b0, a1, b1 = moved.box(hw)
        return View(self.zoom, (a0 + a1) / 2, (b0 + b1) / 2)

    def zoomed(self, hw: tuple[int, int], zoom: int) -> View:
        x0, y0, x1, y1 = self.box(hw)
        return View(zoom, (x0 + x1) / 2, (y0 + y1) / 2).panned(hw, 0, 0)


def full_view(hw: tuple[int, int]) -> View:
    return View(1, hw[1] / 2, hw[0] / 2)


def view_of_mask(mask: np.ndarray, hw: tuple[int, int]) -> View | None:
    """The largest zoom whose view holds the mask's bounding box (None: empty mask)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    zoom = max([z for z in ZOOMS if bw * 1.2 <= hw[1] / z and bh * 1.2 <= hw[0] / z], default=1)
    return View(zoom, (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2).panned(hw, 0, 0)


def canvas_size(box: tuple[int, int, int, int], max_wh: tuple[int, int] = MAX_CANVAS) -> tuple[int, int]:
    """Canvas (width, height) for a view: as large as allowed, same aspect ratio."""
    vw, vh = box[2] - box[0], box[3] - box[1]
    s = min(max_wh[0] / vw, max_wh[1] / vh)
    return max(1, round(vw * s)), max(1, round(vh * s))


def geometry(box: tuple[int, int, int, int], size: tuple[int, int]) -> CanvasGeometry:
    return CanvasGeometry.contain(size, box, background_wh=size)


@st.cache_resource(max_entries=6, show_spinner=False)
def load_image(path: str, sha256: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB by the project's image rule; shared read-only across sessions."""
    img = read_image(Path(path))
    img.setflags(write=False)
    return img


@st.cache_resource(max_entries=32, show_spinner=False)
def load_mask(path: str | None, hw: tuple[int, int]) -> np.ndarray:
    """A stored mask version (files are never overwritten, so the path is a good key)."""
    mask = load_mask_file(path, hw)
    mask.setflags(write=False)
    return mask


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    shrink = size[0] < a.shape[1]
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)


def tinted(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
           alpha: float, rgb: tuple[int, int, int] = MASK_RGB) -> np.ndarray:
    """The view of `image` resampled to `size` with `mask` tinted and outlined on it."""
    x0, y0, x1, y1 = box
    view = _resize(np.ascontiguousarray(image[y0:y1, x0:x1]), size).astype(np.float32)
    cover = _resize(mask[y0:y1, x0:x1].astype(np.float32), size)  # share of each screen px
    if alpha > 0 and cover.any():
        a = (alpha * cover)[..., None]
        view = view * (1 - a) + np.array(rgb, np.float32) * a
        edges = cv2.morphologyEx((cover >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        view[edges > 0] = rgb
    return np.clip(view + 0.5, 0, 255).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@st.cache_data(max_entries=24, show_spinner=False)
def background(path: str, sha256: str, mask_token: str, box: tuple[int, int, int, int],
               size: tuple[int, int], alpha: float, _mask: Callable[[], np.ndarray],
               rgb: tuple[int, int, int] = MASK_RGB) -> bytes:
    """PNG bytes of the tinted view; `mask_token` names the mask `_mask()` returns (only called
    on a cache miss). Identical inputs give identical bytes, so the canvas does not reset."""
    return png(tinted(load_image(path, sha256), _mask(), box, size, alpha, rgb))


def minimap(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A small picture of the whole image with the mask and the current view outlined."""
    h, w = image.shape[:2]
    s = MINIMAP_PX / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = tinted(image, mask, (0, 0, w, h), size, 0.5)
    x0, y0, x1, y1 = (round(v * s) for v in box)
    cv2.rectangle(small, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (255, 214, 0), 2)
    return small
