"""Benchmark: a dashboard grid page of 48 thumbnails, first visit vs. later visits.

Target (dashboard grid): a page of 48 renders in < 2 s after its first visit.

    .venv/bin/python bench/thumbnails.py [--n 10000] [--data /tmp/prefilter-qa-bench-thumbs]

Generates (once, reused afterwards) N images of 256²..1024² (random, non-square), two thirds
JPEG and one third PNG, then times pages of 48 with a fresh cache: first visit (decode + shrink
+ write), second visit (cache hits), and the worst page (only the largest PNGs). The OS page
cache is warm for freshly generated files, so first-visit figures are a lower bound for a
cold disk.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.intake.thumbnails import get_thumbnails  # noqa: E402

PAGE = 48


def _make_one(args: tuple[Path, int]) -> tuple[str, str, int]:
    """One synthetic part photo: smooth shading, a few blobs, mild sensor noise."""
    folder, i = args
    rng = np.random.default_rng(i)
    w, h = (int(v) for v in rng.integers(256, 1025, size=2))
    low = rng.integers(60, 200, size=(6, 6, 1), dtype=np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.repeat(img[..., None] if img.ndim == 2 else img, 3, axis=2)
    for _ in range(3):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, c, int(rng.integers(5, 40)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    ext = ".png" if i % 3 == 0 else ".jpg"
    if ext == ".jpg":  # noise makes JPEG sizes realistic; PNGs stay compressible and quick
        img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    path = folder / f"{i // 1000:02d}" / f"img_{i:05d}{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 90]
    cv2.imwrite(str(path), img, params)
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest(), w * h


def dataset(folder: Path, n: int) -> list[tuple[Path, str, int]]:
    """Make (or reuse, via the index file) the N-image dataset; returns (path, sha256, pixels)."""
    index = folder / f"index-{n}.tsv"
    if index.exists():
        rows = [line.split("\t") for line in index.read_text().splitlines()]
        return [(Path(p), s, int(px)) for p, s, px in rows]
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with ProcessPoolExecutor() as pool:
        rows = list(pool.map(_make_one, [(folder, i) for i in range(n)], chunksize=64))
    index.write_text("".join(f"{p}\t{s}\t{px}\n" for p, s, px in rows))
    print(f"generated {n} images in {time.perf_counter() - t:.1f} s under {folder}")
    return [(Path(p), s, int(px)) for p, s, px in rows]


def _time_page(cache: Path, page: list[tuple[Path, str]]) -> float:
    t = time.perf_counter()
    get_thumbnails(cache, page)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "prefilter-qa-bench-thumbs")
    ap.add_argument("--pages", type=int, default=5, help="random pages to time")
    args = ap.parse_args()
    rows = dataset(args.data, args.n)
    size_mb = sum(p.stat().st_size for p, _, _ in rows) / 1e6
    print(f"dataset: {len(rows)} images, {size_mb:.0f} MB")

    cache = Path(tempfile.mkdtemp(prefix="prefilter-qa-thumbcache-"))
    try:
        rng = random.Random(0)
        firsts, seconds = [], []
        for k in rng.sample(range(len(rows) // PAGE), min(args.pages, len(rows) // PAGE)):
            start = k * PAGE  # distinct pages, so every first visit is really a first
            page = [(p, s) for p, s, _ in rows[start:start + PAGE]]
            firsts.append(_time_page(cache, page))
            seconds.append(_time_page(cache, page))
        worst = sorted((r for r in rows if r[0].suffix == ".png"), key=lambda r: -r[2])[:PAGE]
        worst_page = [(p, s) for p, s, _ in worst]
        w1, w2 = _time_page(cache, worst_page), _time_page(cache, worst_page)
        print(f"page of {PAGE}, first visit : median {statistics.median(firsts):.3f} s, "
              f"max {max(firsts):.3f} s over {args.pages} pages")
        print(f"page of {PAGE}, second visit: median {statistics.median(seconds) * 1000:.1f} ms, "
              f"max {max(seconds) * 1000:.1f} ms")
        print(f"worst page (48 largest PNGs, ~{worst[-1][2] / 1e6:.2f}-{worst[0][2] / 1e6:.2f} MP): "
              f"first {w1:.3f} s, second {w2 * 1000:.1f} ms")
        print(f"target: < 2 s after the first visit -> "
              f"{'met' if max(seconds + [w2]) < 2.0 else 'NOT met'}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
