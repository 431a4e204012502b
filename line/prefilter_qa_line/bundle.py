"""Load and verify a released bundle (model.onnx + bundle.json + golden/) before it may serve.

A bundle is trusted only as a whole: every file listed in bundle.json must hash to its
recorded sha256, the image rule it was exported with must be exactly ours, and its threshold
must be usable by the verdict rule. The bytes that were hashed are the bytes kept and used
(model, golden images), so a file swapped after verification cannot slip in.

The bundle's identity ("bundle sha") is the sha256 of the bytes of bundle.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from prefilter_qa_line.imagerule import IMAGE_RULE

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
MODEL_FILE = "model.onnx"
GOLDEN_JSON = "golden/golden.json"
VERDICTS = ("OK", "REVIEW", "NOK")
_DEFAULT_PARITY = {"score_rtol": 1e-5, "score_atol": 1e-6, "map_atol_of_range": 1e-4}


class BundleError(Exception):
    """The bundle cannot be served (bad format, tampered file, foreign image rule, ...)."""


class SelfTestError(BundleError):
    """The bundle's golden images do not score as the bundle says they must."""


@dataclass(frozen=True)
class Threshold:
    """The released decision: verdicts follow engine's `verdicts` exactly."""

    id: int | None
    image: float
    pixel: float | None  # outline of pixels >= this on heatmaps; None: no outline
    review_band: tuple[float, float] | None  # (lo, hi), lo <= image <= hi


@dataclass(frozen=True)
class GoldenImage:
    """One image of golden/: its verified bytes and what the bundle says it must score."""

    file: str
    label: str
    score: float
    verdict: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, held in memory (the folder may change under us: hot reload)."""

    path: Path
    sha: str  # sha256 of the bytes of bundle.json
    meta: dict[str, Any]  # bundle.json as parsed
    size: int  # model input side S
    enhance: bool
    threshold: Threshold
    map_range: tuple[float, float] | None
    parity: dict[str, float]
    golden: tuple[GoldenImage, ...]
    model_bytes: bytes = field(repr=False)


def verdict(score: float, threshold: float, review_band: tuple[float, float] | None) -> str:
    """engine's verdict rule for one score: NOK iff >= threshold; band: OK < lo <= REVIEW < hi."""
    s = float(score)
    if review_band is None:
        return "NOK" if s >= threshold else "OK"
    lo, hi = float(review_band[0]), float(review_band[1])
    if not lo <= threshold <= hi:
        raise BundleError(f"review band [{lo}, {hi}] must contain the threshold {threshold}")
    return "NOK" if s >= hi else ("OK" if s < lo else "REVIEW")


def bundle_sha(path: str | Path) -> str:
    """The identity of the bundle in folder `path` (sha256 of bundle.json), without verifying."""
    return hashlib.sha256((Path(path) / BUNDLE_JSON).read_bytes()).hexdigest()


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify the bundle in folder `path`; raises BundleError saying what is wrong."""
    root = Path(path)
    try:
        raw = (root / BUNDLE_JSON).read_bytes()
    except OSError as e:
        raise BundleError(f"{root}: cannot read {BUNDLE_JSON}: {e.strerror or e}") from None
    sha = hashlib.sha256(raw).hexdigest()
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{root / BUNDLE_JSON}: not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{root / BUNDLE_JSON}: expected a JSON object")
    where = f"{root / BUNDLE_JSON}"
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{where}: format_version {version!r} is not supported "
                          f"(this scorer reads {FORMAT_VERSION})")
    inp = _obj(meta, "input", where)
    size = inp.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise BundleError(f"{where}: input.size must be a positive integer, got {size!r}")
    if inp.get("layout") != "NHWC" or inp.get("dtype") != "uint8":
        raise BundleError(f"{where}: input must be NHWC uint8, got "
                          f"{inp.get('layout')!r} {inp.get('dtype')!r}")
    if inp.get("image_rule") != IMAGE_RULE:
        raise BundleError(f"{where}: the bundle was exported with the image rule "
                          f"{inp.get('image_rule')!r}, this scorer implements {IMAGE_RULE!r}; "
                          f"a model must never see pixels decoded differently")
    if not isinstance(inp.get("enhance"), bool):
        raise BundleError(f"{where}: input.enhance must be true or false")
    threshold = _threshold(_obj(meta, "threshold", where), where)
    map_range = _pair(meta.get("map_range"), "map_range", where)
    parity = dict(_DEFAULT_PARITY)
    if not isinstance(meta.get("parity") or {}, dict):
        raise BundleError(f"{where}: parity must be an object")
    for k, v in (meta.get("parity") or {}).items():
        if not _finite(v) or v < 0:
            raise BundleError(f"{where}: parity.{k} must be a number >= 0, got {v!r}")
        parity[k] = float(v)
    blobs = _verified_files(root, _obj(meta, "files", where), where)
    golden = _golden(blobs, where)
    exporter = meta.get("exporter")
    _warn_version_drift(exporter if isinstance(exporter, dict) else {})  # informational only
    log.info("bundle %s verified (%s, run %s, threshold %s)", sha[:12], root, meta.get("run_id"),
             threshold.id)
    return Bundle(path=root, sha=sha, meta=meta, size=size, enhance=inp["enhance"],
                  threshold=threshold, map_range=map_range, parity=parity, golden=golden,
                  model_bytes=blobs[MODEL_FILE])


def _obj(meta: dict, key: str, where: str) -> dict:
    value = meta.get(key)
    if not isinstance(value, dict):
        raise BundleError(f"{where}: missing or malformed {key!r}")
    return value


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pair(v: Any, name: str, where: str) -> tuple[float, float] | None:
    if v is None:
        return None
    if not (isinstance(v, list) and len(v) == 2 and all(_finite(x) for x in v) and v[0] <= v[1]):
        raise BundleError(f"{where}: {name} must be null or [lo, hi] with lo <= hi, got {v!r}")
    return float(v[0]), float(v[1])


def _threshold(t: dict, where: str) -> Threshold:
    if not _finite(t.get("image")):
        raise BundleError(f"{where}: threshold.image must be a finite number, got "
                          f"{t.get('image')!r}")
    pixel = t.get("pixel")
    if pixel is not None and not _finite(pixel):
        raise BundleError(f"{where}: threshold.pixel must be null or a finite number")
    band = _pair(t.get("review_band"), "threshold.review_band", where)
    image = float(t["image"])
    if band is not None and not band[0] <= image <= band[1]:
        raise BundleError(f"{where}: review band [{band[0]}, {band[1]}] must contain the "
                          f"threshold {image}")
    return Threshold(id=t.get("id"), image=image, pixel=None if pixel is None else float(pixel),
                     review_band=band)


def _safe_name(name: Any, where: str) -> str:
    """A listed file must be a plain relative path inside the bundle folder."""
    p = PurePosixPath(name) if isinstance(name, str) else None
    if p is None or not name or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise BundleError(f"{where}: file name {name!r} is not a relative path inside the bundle")
    return str(p)


def _verified_files(root: Path, files: dict, where: str) -> dict[str, bytes]:
    """Every listed file's bytes, each checked against its sha256 (tampering, partial copies)."""
    for required in (MODEL_FILE, GOLDEN_JSON):
        if required not in files:
            raise BundleError(f"{where}: files does not list {required}")
    blobs: dict[str, bytes] = {}
    for name, expected in files.items():
        name = _safe_name(name, where)
        try:
            data = (root / name).read_bytes()
        except OSError as e:
            raise BundleError(f"{root / name}: listed in {BUNDLE_JSON} but cannot be read: "
                              f"{e.strerror or e}") from None
        got = hashlib.sha256(data).hexdigest()
        if not isinstance(expected, str) or got != expected.lower():
            raise BundleError(f"{root / name}: sha256 {got} does not match {BUNDLE_JSON} "
                              f"({expected}); the file was changed after export")
        blobs[name] = data
    return blobs


def _golden(blobs: dict[str, bytes], where: str) -> tuple[GoldenImage, ...]:
    try:
        entries = json.loads(blobs[GOLDEN_JSON])
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{GOLDEN_JSON}: not valid JSON: {e}") from None
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{GOLDEN_JSON}: must be a non-empty list (the self-test needs images)")
    out = []
    for e in entries:
        ok = (isinstance(e, dict) and isinstance(e.get("file"), str) and _finite(e.get("score"))
              and e.get("verdict") in VERDICTS and e.get("label") in ("ok", "nok"))
        if not ok:
            raise BundleError(f"{GOLDEN_JSON}: malformed entry {e!r}")
        name = "golden/" + _safe_name(e["file"], where)
        if name not in blobs:
            raise BundleError(f"{where}: golden image {name} is not listed in files (unverified)")
        out.append(GoldenImage(file=name, label=e["label"], score=float(e["score"]),
                               verdict=e["verdict"], data=blobs[name]))
    return tuple(out)


def _warn_version_drift(exporter: dict) -> None:
    """Different Pillow/OpenCV may decode differently; the self-test decides, this explains."""
    from prefilter_qa_line import versions

    for name, here in versions().items():
        there = exporter.get(name)
        if there is not None and str(there) != here:
            log.warning("bundle was exported with %s %s, this scorer has %s", name, there, here)
