"""Procedural renderer of pre-filter-like parts for the demo dataset (numpy + cv2, no torch).

A part is a glossy dark-grey moulded grid: a raised frame, ribs between rectangular cells, cell
floors below. Geometry is an analytic height field in part coordinates, sampled through a small
random pose (shift, rotation, scale), then shaded in camera space (key light, cast shadows,
ambient occlusion, softbox reflections that move with the surface normal, uneven illumination,
vignetting), so that nuisance variation is global and realistic while defects are local.

A defective image is the clean render plus one defect, drawn from the same scene: the mask is
exactly the set of pixels the defect changed by more than `MASK_TOL` (before noise; both images
get the same noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

DEFECT_TYPES: tuple[str, ...] = ("scratch", "burn", "missing")
MASK_TOL = 6.0 / 255.0  # a pixel belongs to the mask when the defect moved a channel by more
MIN_AREA, MAX_AREA = 0.0005, 0.02  # allowed defect area, share of the image (0.05–2 %)

_VIEW = 1.2  # half-width of the camera view in part units: the part (edge at 1.0) never leaves it
_GRID = 0.86  # half-width of the ribbed grid inside the frame
_CELLS = 6  # cells per side
_PITCH = 2 * _GRID / _CELLS
_RIB_W = 0.028  # rib half-width (part units)
_EDGE = 0.014  # half-width of the rounded flank


@dataclass(frozen=True)
class RenderedPart:
    """One rendered image; `clean`/`defective` are kept so tests can check the mask."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, final (defect + sensor noise)
    mask: np.ndarray | None  # (H, W) uint8 0/255, None for an OK part
    clean: np.ndarray  # (H, W, 3) float32 in [0, 1], no defect, no noise
    defective: np.ndarray  # (H, W, 3) float32 in [0, 1], with the defect, no noise


@dataclass(frozen=True)
class _Scene:
    """Everything random about one OK part (shared by its clean and defective renders)."""

    u: np.ndarray  # (H, W) part coordinates of each pixel
    v: np.ndarray  # (H, W)
    px: float  # pixels per part unit
    albedo: np.ndarray  # (3,) linear plastic colour
    texture: np.ndarray  # (H, W) multiplicative surface grain
    light: np.ndarray  # (3,) unit key-light direction
    illum: np.ndarray  # (H, W) low-frequency illumination gain (incl. vignetting)
    boxes: tuple[tuple[float, ...], ...]  # softboxes: (cx, cy, angle, sx, sy, intensity)
    noise_sigma: float


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Hermite ramp 0→1 between e0 and e1 (either order): soft, anti-aliased edges."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x, y coordinates (H, W) float32, shared read-only between renders."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about size/cells px wide (cheap: resize up)."""
    small = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _draw_scene(rng: np.random.Generator, size: int) -> _Scene:
    """Pose, material and lighting of one part: the nuisance the baseline has to live with."""
    s = size / 256.0
    tx, ty = rng.uniform(-4.0, 4.0, 2) * s  # translation, px
    rot = np.deg2rad(rng.uniform(-2.5, 2.5))
    scale = rng.uniform(0.97, 1.03)
    px = float(size / (2 * _VIEW) * scale)
    c = (size - 1) / 2.0
    xs, ys = _pixel_grid(size)
    x, y = xs - float(c + tx), ys - float(c + ty)
    cr, sr = float(np.cos(rot)), float(np.sin(rot))
    u = (cr * x + sr * y) / px
    v = (-sr * x + cr * y) / px
    grey = rng.uniform(0.018, 0.03)  # linear reflectance of dark-grey plastic
    albedo = grey * np.array([1.0, 1.0, rng.uniform(1.0, 1.08)], np.float32)
    grain = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 0.6 * s + 0.3)
    texture = 1.0 + 0.05 * grain + 0.05 * _smooth_noise(rng, size, 6)
    az = rng.normal(-2.2, 0.3)  # key light from the upper left
    el = np.deg2rad(rng.uniform(35.0, 60.0))
    light = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)], np.float32)
    xn, yn = (xs - c) / c, (ys - c) / c  # camera-centred, [-1, 1]
    gx, gy, gr = (float(g) for g in rng.normal(0.0, 0.12, 3))
    vignette = 1.0 - (0.25 + 0.1 * gr) * (xn**2 + yn**2) / 2
    illum = (1.0 + gx * xn + gy * yn + 0.1 * _smooth_noise(rng, size, 3)) * vignette
    # the station's two softboxes, reflected in the gloss; they move and change a little per part
    boxes = ((rng.normal(-0.25, 0.07), rng.normal(-0.3, 0.07), rng.normal(0.6, 0.1),
              rng.uniform(0.5, 0.8), rng.uniform(0.07, 0.14), rng.uniform(0.5, 0.9)),
             (rng.normal(0.45, 0.07), rng.normal(0.55, 0.07), rng.normal(-0.5, 0.1),
              rng.uniform(0.2, 0.4), rng.uniform(0.05, 0.09), rng.uniform(0.15, 0.35)))
    boxes = tuple(tuple(float(x) for x in box) for box in boxes)
    noise_sigma = float(rng.uniform(1.5, 3.0)) / 255.0
    return _Scene(u, v, px, albedo, texture.astype(np.float32), light, illum.astype(np.float32),
                  boxes, noise_sigma)


def _rib(d: np.ndarray) -> np.ndarray:
    """Cross-section of a rib at distance d from its centre line: flat-ish top, rounded flanks."""
    return _smoothstep(_RIB_W + _EDGE, _RIB_W - _EDGE, d) * (1.0 - 0.15 * np.clip(d / _RIB_W, 0, 1) ** 2)


@dataclass(frozen=True)
class _Missing:
    """Missing geometry (part units): a rib span that did not fill, leaving a ragged low stub, or
    a cell opening partly closed by flash with a ragged front."""

    flash: bool  # True: flash in cell (line, row); False: rib span on interior rib `line`
    vertical: bool  # rib: the line runs along v; flash: enters from a side parallel to v
    line: int  # rib line (1.._CELLS-1) or cell column
    row: int  # cell row (flash only)
    a: float  # rib: removed span along the rib; flash: a = covered depth (0..1), b = sign of side
    b: float
    knots: tuple[float, ...]  # raggedness along the span: stub height (rib) or front wobble (flash)


def _ragged(knots: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    """Piecewise-linear random profile over t in [0, 1]."""
    return np.interp(t, np.linspace(0.0, 1.0, len(knots)), np.asarray(knots)).astype(np.float32)


def _height(scene: _Scene, missing: _Missing | None) -> tuple[np.ndarray, np.ndarray]:
    """Height field (1 = rib/frame top, 0 = cell floor) and the part's silhouette (1 on the part)."""
    u, v = scene.u, scene.v
    ku, kv = np.round((u + _GRID) / _PITCH), np.round((v + _GRID) / _PITCH)
    rib_u = _rib(np.abs(u + _GRID - ku * _PITCH))  # ribs along v (vertical lines)
    rib_v = _rib(np.abs(v + _GRID - kv * _PITCH))
    if missing is not None and not missing.flash:
        along, k, rib = (v, ku, rib_u) if missing.vertical else (u, kv, rib_v)
        gap = (_smoothstep(missing.a - _EDGE, missing.a + _EDGE, along)
               * _smoothstep(missing.b + _EDGE, missing.b - _EDGE, along))
        stub = _ragged(missing.knots, np.clip((along - missing.a) / (missing.b - missing.a), 0, 1))
        rib *= 1.0 - gap * (1.0 - stub) * (k == missing.line)
    box = np.maximum(np.abs(u), np.abs(v))
    frame = _smoothstep(_GRID, _GRID + 2 * _EDGE, box)
    silhouette = _smoothstep(1.0 + _EDGE, 1.0 - _EDGE, box)
    h = np.maximum(np.maximum(rib_u, rib_v), frame)
    if missing is not None and missing.flash:
        u0, v0 = -_GRID + missing.line * _PITCH, -_GRID + missing.row * _PITCH  # cell corner
        cu, cv = (u - u0) / _PITCH, (v - v0) / _PITCH  # 0..1 inside the cell
        depth, along = (cu, cv) if missing.vertical else (cv, cu)
        depth = depth if missing.b > 0 else 1.0 - depth
        inside = (np.abs(cu - 0.5) < 0.5) & (np.abs(cv - 0.5) < 0.5)
        front = missing.a + _ragged(missing.knots, np.clip(along, 0, 1))
        e = _EDGE / _PITCH
        sheet = _smoothstep(front + e, front - e, depth) * inside * (0.85 - 0.25 * depth)
        h = np.maximum(h, sheet)
    h = h * silhouette
    return h.astype(np.float32), silhouette.astype(np.float32)


def _shadow(hp: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Soft cast shadow (0..1) of a height field in px: is there higher ground toward the light?"""
    planar = float(np.hypot(light[0], light[1]))
    slope = float(light[2]) / max(planar, 1e-3)  # height lost per px walked toward the light
    steps = int(np.ceil(float(hp.max()) / slope)) if planar > 1e-3 else 0
    block = np.zeros_like(hp)
    for t in range(1, min(steps, 24) + 1):
        m = np.float32([[1, 0, t * light[0] / planar], [0, 1, t * light[1] / planar]])
        ahead = cv2.warpAffine(hp, m, hp.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)
        np.maximum(block, ahead - t * slope, out=block)
    return np.clip((block - hp) / 1.5, 0.0, 1.0)


def _shade(scene: _Scene, h: np.ndarray, silhouette: np.ndarray) -> np.ndarray:
    """Camera image (sRGB float, no noise) of a height field under the scene's lighting."""
    depth = 0.06 * scene.px  # rib height in px
    gy, gx = np.gradient(h * depth)
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    nx, ny, nz = -gx * inv, -gy * inv, inv
    sigma = max(0.03 * scene.px, 1.0)
    occluded = np.clip(cv2.GaussianBlur(h, (0, 0), sigma) - h, 0.0, 1.0)  # floor next to ribs
    ao = (0.2 + 0.8 * h) * (1.0 - 0.8 * occluded)  # deep cells are dark
    lx, ly, lz = scene.light
    lit = 1.0 - 0.75 * _shadow(h * depth, scene.light)
    diffuse = 0.3 + 2.4 * np.clip(nx * lx + ny * ly + nz * lz, 0.0, None) * lit
    size = h.shape[0]
    c = (size - 1) / 2.0
    xs, ys = _pixel_grid(size)
    # reflections: the highlight position shifts with the surface normal (glossy surface)
    rx, ry = (xs - c) / c + 1.6 * nx, (ys - c) / c + 1.6 * ny
    gloss = 0.6 + 0.4 * h  # rib tops are more polished than floors
    spec = np.zeros_like(h)
    for cx, cy, ang, sx, sy, k in scene.boxes:
        ca, sa = float(np.cos(ang)), float(np.sin(ang))
        a, b = (rx - cx) * ca + (ry - cy) * sa, -(rx - cx) * sa + (ry - cy) * ca
        spec += k * np.exp(-0.5 * ((a / sx) ** 4 + (b / sy) ** 2))
    lin = (scene.albedo[None, None, :] * (diffuse * ao * scene.texture)[..., None]
           + ((0.5 * spec + 0.02 * h) * gloss * scene.texture)[..., None])  # + sheen on rib tops
    lin *= scene.illum[..., None]
    background = 0.004 * scene.illum
    lin = lin * silhouette[..., None] + (background * (1.0 - silhouette))[..., None]
    return np.power(np.clip(lin, 0.0, 1.0), np.float32(1.0 / 2.2))


def _stroke(size: int, pts: np.ndarray, width: float, level: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (0..1) of a polyline whose strength varies along it, 4× supersampled."""
    ss = 4
    canvas = np.zeros((size * ss, size * ss), np.uint8)
    p = np.round(pts * ss * 16).astype(np.int32)
    thick = max(1, int(round(width * ss)))
    for i in range(len(p) - 1):
        grey = int(round(255 * level[i]))
        a, b = (int(p[i, 0]), int(p[i, 1])), (int(p[i + 1, 0]), int(p[i + 1, 1]))
        cv2.line(canvas, a, b, grey, thick, cv2.LINE_AA, 4)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _scratch(rng: np.random.Generator, img: np.ndarray, on_part: np.ndarray) -> np.ndarray:
    """A thin curved line, whitish (scattering) or dark, uneven along its length, fading at its ends."""
    size = img.shape[0]
    s = max(size / 256.0, 0.5)
    length = rng.uniform(0.2, 0.42) * size
    p0 = rng.uniform(0.15, 0.85, 2) * size
    ang = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    bend = rng.normal(0.0, 0.25) * length * np.array([-d[1], d[0]])
    n = 40
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = p0 + t * length * d + 4 * t * (1 - t) * bend + rng.normal(0, 0.2 * s, (n, 2))
    wobble = np.convolve(rng.uniform(0.7, 1.0, n + 6), np.ones(7) / 7, mode="valid")
    level = np.clip(np.minimum(t[:, 0], 1 - t[:, 0]) * 8, 0.4, 1.0) * wobble
    alpha = _stroke(size, pts, rng.uniform(1.5, 2.5) * s, level) * rng.uniform(0.85, 1.0)
    if rng.random() < 0.8:
        colour = np.full(3, rng.uniform(0.65, 0.85), np.float32)
    else:
        colour = np.full(3, rng.uniform(0.0, 0.04), np.float32)
    alpha = alpha * on_part  # only the part is scratched, not the table
    return img * (1 - alpha[..., None]) + alpha[..., None] * colour


def _burn(rng: np.random.Generator, img: np.ndarray, on_part: np.ndarray) -> np.ndarray:
    """An irregular brownish-dark blotch with a soft edge and a charred, matte core."""
    size = img.shape[0]
    r = rng.uniform(0.025, 0.06) * size
    cx, cy = (float(c) for c in rng.uniform(0.15, 0.85, 2) * size)
    xs, ys = _pixel_grid(size)
    ang = rng.uniform(0, np.pi)
    e = rng.uniform(1.0, 1.8)  # elongation
    ca, sa, r = float(np.cos(ang)), float(np.sin(ang)), float(r)
    a = ((xs - cx) * ca + (ys - cy) * sa) / (r * float(e))
    b = (-(xs - cx) * sa + (ys - cy) * ca) / r
    field = 1.0 - (a * a + b * b) + 0.45 * _smooth_noise(rng, size, max(4, int(size / r * 1.5)))
    alpha = _smoothstep(0.0, 0.6, field) * rng.uniform(0.8, 1.0)
    core = _smoothstep(0.4, 0.9, field)
    brown = np.array([0.42, 0.24, 0.11], np.float32) * rng.uniform(0.8, 1.1)
    char = np.array([0.10, 0.07, 0.05], np.float32)
    target = brown * (1 - core[..., None]) + char * core[..., None]
    target = target * (0.85 + 0.3 * img.mean(axis=2, keepdims=True))  # keeps a little shading
    alpha = alpha * on_part
    return img * (1 - alpha[..., None]) + alpha[..., None] * target


def _draw_missing(rng: np.random.Generator) -> _Missing:
    """Flash closing part of a cell, or most of one or two rib spans absent (short shot)."""
    if rng.random() < 0.4:
        knots = tuple(float(x) for x in rng.normal(0.0, 0.08, 7))
        vertical = bool(rng.random() < 0.5)
        col, row = int(rng.integers(0, _CELLS)), int(rng.integers(0, _CELLS))
        return _Missing(True, vertical, col, row, float(rng.uniform(0.55, 0.95)),
                        float(rng.choice([-1.0, 1.0])), knots)
    line = int(rng.integers(1, _CELLS))
    cells = 2 if rng.random() < 0.4 else 1
    cell = int(rng.integers(0, _CELLS - cells + 1))
    lo = -_GRID + cell * _PITCH + _RIB_W
    span = cells * _PITCH - 2 * _RIB_W
    frac = rng.uniform(0.85, 1.0)
    a = lo + rng.uniform(0.0, 1.0 - frac) * span
    knots = tuple(float(x) for x in np.clip(rng.normal(0.1, 0.12, 9), 0.0, 0.4))
    return _Missing(False, bool(rng.random() < 0.5), line, 0, float(a), float(a + frac * span), knots)


def render_part(rng: np.random.Generator, size: int, defect: str | None = None) -> RenderedPart:
    """Render one part; with `defect` also its exact mask (redrawn until 0.05–2 % of the image)."""
    if defect is not None and defect not in DEFECT_TYPES:
        raise ValueError(f"unknown defect type {defect!r}; expected one of {DEFECT_TYPES}")
    scene = _draw_scene(rng, size)
    h, sil = _height(scene, None)
    clean = _shade(scene, h, sil).astype(np.float32)
    noise = rng.standard_normal(clean.shape).astype(np.float32) * scene.noise_sigma  # (H, W, 3)
    noise *= 0.7 + 0.6 * np.sqrt(clean)  # shot noise grows with brightness; drawn before the
    defective, mask = clean, None        # defect so an OK and a NOK render share scene and noise
    if defect is not None:
        for _ in range(50):
            if defect == "scratch":
                defective = _scratch(rng, clean, sil)
            elif defect == "burn":
                defective = _burn(rng, clean, sil)
            else:
                defective = _shade(scene, *_height(scene, _draw_missing(rng)))
            defective = np.clip(defective, 0.0, 1.0).astype(np.float32)
            changed = np.abs(defective - clean).max(axis=2) > MASK_TOL
            if MIN_AREA <= changed.mean() <= MAX_AREA:
                mask = changed.astype(np.uint8) * 255
                break
        else:  # pragma: no cover - the parameter ranges make this practically impossible
            raise RuntimeError(f"could not place a {defect} of allowed size at {size}px")
    image = np.clip(np.round((defective + noise) * 255.0), 0, 255).astype(np.uint8)
    return RenderedPart(image=image, mask=mask, clean=clean, defective=defective)
