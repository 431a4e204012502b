"""A release bundle: the folder the line scorer (`prefilter-qa-line`) serves from.

    model.onnx           the graph (engine.release.graph)
    golden/golden.json   a few OK and NOK images with the scores and verdicts they must get,
    golden/<images>      copied byte for byte
    bundle.json          run, checkpoint sha256, config, image rule, ROI, score rule, threshold +
                         review band + pixel threshold, map range, file hashes, versions, parity

Before anything is written the exported graph is run with onnxruntime on the golden and check
images and compared with torch: a drift beyond the tolerance refuses the release. The folder is
assembled under a temporary name beside `out`, self-tested with the line scorer itself, and only
then renamed to `out`; bundle.json is its last file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.evaluation.metrics import verdicts
from engine.fsutil import atomic_write_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SCORE_RTOL = 1e-5  # |onnx - torch| <= SCORE_RTOL * |torch| + SCORE_ATOL_OF_SPREAD * score spread
SCORE_ATOL_OF_SPREAD = 1e-5
MAP_ATOL_OF_RANGE = 1e-4  # max |onnx - torch| of the maps, as a share of the map range
GOLDEN_PER_LABEL = 3
VERDICT_MARGIN_OF_SPREAD = 1e-3  # golden images keep this distance from the threshold and band edges


@dataclass(frozen=True)
class Candidate:
    """A labelled test image the release may use as a golden or check image."""

    path: Path
    label: str  # "ok" | "nok"


@dataclass(frozen=True)
class ReleaseSpec:
    """Everything a bundle says, gathered from the run, its evaluation and the chosen threshold."""

    run_id: int
    checkpoint: Path
    config: dict[str, Any]  # the run's stored config
    threshold: dict[str, Any]  # {"id", "image", "pixel", "review_band", "set_by", "at"}
    map_range: tuple[float, float] | None  # the evaluation's heatmap colour range
    score_rule: str
    candidates: list[Candidate]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode(candidates: list[Candidate], size: int, enhanced: bool) -> tuple[list[Candidate], np.ndarray]:
    """The candidates the image rule can read, as the line scorer will see them (N, S, S, 3)."""
    from prefilter_qa_line.imagerule import ImageRuleError, model_input, read_image

    kept, arrays = [], []
    for c in candidates:
        try:
            arrays.append(model_input(read_image(c.path), size, enhanced))
        except (ImageRuleError, OSError) as exc:
            log.warning("release: %s left out (%s)", c.path, exc)
            continue
        kept.append(c)
    if not kept:
        raise UserError("no readable test image to check the export with: every candidate file is missing or "
                        "broken")
    return kept, np.stack(arrays)


def _batched(fn, images: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    parts = [fn(images[i:i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def parity(torch_out: tuple[np.ndarray, np.ndarray], onnx_out: tuple[np.ndarray, np.ndarray],
           map_range: tuple[float, float] | None) -> dict[str, float]:
    """How far the exported graph is from torch; raises UserError beyond the tolerance."""
    (ts, tm), (os_, om) = torch_out, onnx_out
    spread = float(max(ts.max() - ts.min(), 1e-12))
    score_excess = np.abs(os_ - ts) - (SCORE_RTOL * np.abs(ts) + SCORE_ATOL_OF_SPREAD * spread)
    lo, hi = map_range if map_range else (float(tm.min()), float(tm.max()))
    map_err = float(np.abs(om - tm).max()) / max(hi - lo, 1e-12)
    figures = {"n_images": int(ts.size), "score_max_abs_diff": float(np.abs(os_ - ts).max()),
               "score_spread": spread, "map_max_diff_of_range": map_err}
    if not (np.all(np.isfinite(os_)) and np.all(np.isfinite(om))):
        raise UserError("export refused: the ONNX graph produced non-finite scores or maps")
    if float(score_excess.max()) > 0 or map_err > MAP_ATOL_OF_RANGE:
        raise UserError(f"export refused: onnxruntime drifts from torch (scores up to "
                        f"{figures['score_max_abs_diff']:.3g}"
                        f" apart on a spread of {spread:.3g}; maps up to {map_err:.2e} of their range, allowed "
                        f"{MAP_ATOL_OF_RANGE:g})")
    return figures


def pick_golden(labels: list[str], scores: np.ndarray, threshold: float,
                band: tuple[float, float] | None) -> list[int]:
    """Up to GOLDEN_PER_LABEL OK and NOK images (lowest, middle, highest score of each label), none
    so close to the threshold or a band edge that float noise could flip its verdict."""
    spread = float(max(scores.max() - scores.min(), 1e-12))
    edges = np.array([threshold, *(band or ())])
    safe = np.min(np.abs(scores[:, None] - edges[None, :]), axis=1) > VERDICT_MARGIN_OF_SPREAD * spread
    chosen: list[int] = []
    for label in ("ok", "nok"):
        idx = [i for i in np.argsort(scores) if labels[i] == label and safe[i]]
        if idx:
            picks = {idx[0], idx[len(idx) // 2], idx[-1]}
            chosen += sorted(picks, key=lambda i: scores[i])[:GOLDEN_PER_LABEL]
    if not chosen:
        raise UserError("no test image scores clearly away from the threshold: cannot pick golden images")
    return chosen


def _versions() -> dict[str, str]:
    import cv2
    import onnx
    import onnxruntime
    import PIL
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "opencv": cv2.__version__,
            "python": platform.python_version()}


def _golden(folder: Path, kept: list[Candidate], picks: list[int], scores: np.ndarray,
            verdict: np.ndarray) -> list[dict[str, Any]]:
    (folder / "golden").mkdir()
    rows, counts = [], {"ok": 0, "nok": 0}
    for i in picks:
        c = kept[i]
        name = f"{c.label}_{counts[c.label]}{c.path.suffix.lower()}"
        counts[c.label] += 1
        shutil.copyfile(c.path, folder / "golden" / name)
        rows.append({"file": name, "label": c.label, "score": float(scores[i]), "verdict": str(verdict[i]),
                     "source": str(c.path)})
    atomic_write_text(folder / "golden" / "golden.json", json.dumps(rows, indent=2))
    return rows


def write_bundle(spec: ReleaseSpec, out: Path) -> dict[str, Any]:
    """Export, check and write the bundle folder `out` (which must not exist or be empty).

    Returns bundle.json's content plus "sha256" (of bundle.json) and "info" (parity figures, sizes).
    """
    from prefilter_qa_line import open_scorer
    from prefilter_qa_line.imagerule import IMAGE_RULE

    from engine.models.checkpoint import load_model
    from engine.release.graph import OPSET, export_onnx, onnx_outputs, torch_outputs

    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: already exists and is not an empty folder; choose a new folder for the bundle")
    model, cfg = load_model(spec.checkpoint, device="cpu")
    kept, images = _decode(spec.candidates, cfg.input_size, cfg.enhance)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        t = spec.threshold
        band = tuple(t["review_band"]) if t.get("review_band") else None
        export_onnx(model, cfg.input_size, tmp / "model.onnx")
        ref = _batched(lambda x: torch_outputs(model, x), images)
        figures = parity(ref, _batched(lambda x: onnx_outputs(tmp / "model.onnx", x), images), spec.map_range)
        verdict = verdicts(ref[0], float(t["image"]), band)
        picks = pick_golden([c.label for c in kept], ref[0], float(t["image"]), band)
        golden = _golden(tmp, kept, picks, ref[0], verdict)
        files = {p.relative_to(tmp).as_posix(): sha256_bytes(p.read_bytes())
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        meta = {
            "format_version": FORMAT_VERSION, "created_at": datetime.now(timezone.utc).isoformat(),
            "run_id": spec.run_id, "model": cfg.model, "preset": cfg.preset, "config": spec.config,
            "checkpoint_sha256": sha256_bytes(Path(spec.checkpoint).read_bytes()),
            "input": {"size": cfg.input_size, "layout": "NHWC", "dtype": "uint8", "image_rule": IMAGE_RULE,
                      "enhance": bool(cfg.enhance)},
            "roi": model.roi is not None, "score_rule": spec.score_rule,
            "threshold": {"id": t.get("id"), "image": float(t["image"]), "pixel": t.get("pixel"),
                          "review_band": list(band) if band else None, "set_by": t.get("set_by"), "at": t.get("at")},
            "map_range": list(spec.map_range) if spec.map_range else None, "files": files,
            "exporter": _versions() | {"opset": OPSET},
            "parity": {"score_rtol": SCORE_RTOL, "score_atol": SCORE_ATOL_OF_SPREAD * figures["score_spread"],
                       "map_atol_of_range": MAP_ATOL_OF_RANGE},
        }
        text = json.dumps(meta, indent=2)
        atomic_write_text(tmp / "bundle.json", text)
        open_scorer(tmp, self_test=True)  # the line scorer accepts it: files, rule, golden verdicts
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info = figures | {"golden": len(golden), "model_bytes": (out / "model.onnx").stat().st_size}
    return meta | {"sha256": sha256_bytes(text.encode()), "info": info}
