"""Score images with a verified bundle: image rule -> ONNX graph -> verdict, one Result each.

A file that cannot be judged (missing, empty, truncated, not an image, too many pixels, a
non-finite score, a model failure) gives an ERROR result for that file and never an OK, and
never stops the others. `self_test` re-scores the bundle's golden images through exactly this
path and refuses the bundle on any verdict change or a score outside the parity tolerance.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prefilter_qa_line.backends import BackendError, make_backend
from prefilter_qa_line.bundle import Bundle, BundleError, SelfTestError, load_bundle, verdict
from prefilter_qa_line.heatmap import heatmap_names, write_heatmap
from prefilter_qa_line.imagerule import ImageRuleError, decode_image, model_input, read_bytes
from prefilter_qa_line.results import Result, now_iso

log = logging.getLogger(__name__)

DEFAULT_BATCH = 8  # images per model call: enough to amortise the call, small in memory


@dataclass
class _Item:
    """One input on its way through a batch."""

    path: str
    x: np.ndarray | None = None  # (S, S, 3) uint8 model input
    orig: np.ndarray | None = None  # (H, W, 3) uint8, kept only when a heatmap is wanted
    ms: float = 0.0
    error: str | None = None
    score: float | None = None
    amap: np.ndarray | None = None  # (S, S) float32


class Scorer:
    """A bundle loaded into a backend; not thread-safe (one caller at a time)."""

    def __init__(self, bundle: Bundle, backend: str = "onnxruntime", threads: int | None = None,
                 batch_size: int = DEFAULT_BATCH) -> None:
        self.bundle = bundle
        self.batch_size = max(1, int(batch_size))
        try:
            self._backend = make_backend(bundle.model_bytes, bundle.size, backend, threads)
        except BackendError as e:
            raise BundleError(f"{bundle.path}: {e}") from None
        self.backend = self._backend.name

    @property
    def sha(self) -> str:
        return self.bundle.sha

    def verdict(self, score: float) -> str:
        t = self.bundle.threshold
        return verdict(score, t.image, t.review_band)

    def score_images(self, paths: Sequence[str | Path],
                     heatmaps: str | Path | None = None) -> list[Result]:
        """One Result per path, in order; heatmap PNGs into folder `heatmaps` if given."""
        paths = [Path(p) for p in paths]
        names = heatmap_names(paths)
        out: list[Result] = []
        for start in range(0, len(paths), self.batch_size):
            chunk = paths[start:start + self.batch_size]
            items = [self._prepare(p, None, keep_orig=heatmaps is not None) for p in chunk]
            self._run(items)
            for k, it in enumerate(items):
                png = None
                if heatmaps is not None and it.error is None:
                    png = self._heatmap(Path(heatmaps) / names[start + k], it)
                out.append(self._result(it, png))
        return out

    def self_test(self) -> list[dict]:
        """Score golden/ and raise SelfTestError on any verdict change or parity miss.

        Returns one row per golden image (file, expected and got score/verdict) on success.
        """
        b = self.bundle
        rtol, atol = b.parity["score_rtol"], b.parity["score_atol"]
        items = [self._prepare(Path(g.file), g.data, keep_orig=False) for g in b.golden]
        for start in range(0, len(items), self.batch_size):
            self._run(items[start:start + self.batch_size])
        rows, problems = [], []
        for g, it in zip(b.golden, items, strict=True):
            got = it.score
            row = {"file": g.file, "label": g.label, "score": g.score, "verdict": g.verdict,
                   "got_score": got, "got_verdict": None if got is None else self.verdict(got)}
            rows.append(row)
            if it.error is not None:
                problems.append(f"{g.file}: {it.error}")
                continue
            if self.verdict(g.score) != g.verdict:
                problems.append(f"{g.file}: golden.json says {g.verdict} for score {g.score}, "
                                f"but the bundle's threshold gives {self.verdict(g.score)}")
            if row["got_verdict"] != g.verdict:
                problems.append(f"{g.file}: verdict {row['got_verdict']} (score {got:.9g}), "
                                f"the bundle says {g.verdict} (score {g.score:.9g})")
            elif abs(got - g.score) > atol + rtol * abs(g.score):
                problems.append(f"{g.file}: score {got:.9g} differs from {g.score:.9g} by "
                                f"{abs(got - g.score):.3g} > atol {atol:g} + rtol {rtol:g}")
            if it.amap is None or it.amap.shape != (b.size, b.size) \
                    or not np.isfinite(it.amap).all():
                problems.append(f"{g.file}: map is not a finite ({b.size}, {b.size}) array")
        if problems:
            raise SelfTestError(f"{b.path}: self-test of bundle {b.sha[:12]} failed on "
                                f"{len(problems)} check(s): " + "; ".join(problems))
        log.info("self-test of bundle %s passed (%d golden images)", b.sha[:12], len(rows))
        return rows

    def _prepare(self, path: Path, data: bytes | None, keep_orig: bool) -> _Item:
        """Read + decode + resize (+ enhance); errors become the item's `error`."""
        t0 = time.perf_counter()
        it = _Item(path=str(path))
        try:
            img = decode_image(read_bytes(path) if data is None else data, path)  # (H, W, 3)
            it.x = model_input(img, self.bundle.size, self.bundle.enhance)  # (S, S, 3)
            it.orig = img if keep_orig else None
        except ImageRuleError as e:
            it.error = e.reason
        except MemoryError:
            it.error = "not enough memory to decode the image"
        except Exception as e:  # a decoder bug must cost one image, never the line
            log.exception("unexpected error reading %s", path)
            it.error = f"cannot read image: {type(e).__name__}: {e}"
        it.ms = (time.perf_counter() - t0) * 1000.0
        return it

    def _run(self, items: list[_Item]) -> None:
        """One model call for the good items of a batch; a failure is each item's error."""
        good = [it for it in items if it.error is None]
        if not good:
            return
        t0 = time.perf_counter()
        try:
            scores, maps = self._backend.run(np.stack([it.x for it in good]))  # (B,), (B, S, S)
            if scores.shape != (len(good),) or maps.shape[:1] != (len(good),):
                raise BackendError(f"model returned score {scores.shape}, map {maps.shape}")
        except Exception as e:
            log.exception("model call failed for %d image(s)", len(good))
            for it in good:
                it.error = f"model failed: {e}"
            return
        share = (time.perf_counter() - t0) * 1000.0 / len(good)
        for it, s, m in zip(good, scores, maps, strict=True):
            it.ms += share
            it.x = None
            if not math.isfinite(float(s)):
                it.error = f"model produced a non-finite score ({float(s)})"
                continue
            it.score, it.amap = float(s), m

    def _heatmap(self, png: Path, it: _Item) -> str | None:
        b = self.bundle
        try:
            return str(write_heatmap(png, it.orig, it.amap, b.map_range, b.threshold.pixel))
        except Exception as e:  # the verdict stands without its picture
            log.error("%s: heatmap not written: %s", png, e)
            return None

    def _result(self, it: _Item, heatmap: str | None) -> Result:
        ok = it.error is None
        return Result(path=it.path, verdict=self.verdict(it.score) if ok else "ERROR",
                      score=it.score if ok else None, threshold_id=self.bundle.threshold.id,
                      bundle_sha=self.bundle.sha, ms=round(it.ms, 3), error=it.error,
                      heatmap=heatmap, at=now_iso())


def open_scorer(path: str | Path, backend: str = "onnxruntime", threads: int | None = None,
                batch_size: int = DEFAULT_BATCH, self_test: bool = True) -> Scorer:
    """Verify the bundle folder, load its model and (by default) pass its self-test, or raise
    BundleError / SelfTestError: the only way the CLI gets a Scorer."""
    scorer = Scorer(load_bundle(path), backend=backend, threads=threads, batch_size=batch_size)
    if self_test:
        scorer.self_test()
    return scorer
