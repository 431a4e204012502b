"""Benchmark: the Datasets page with a page of 48 thumbnails of a 10,000-image dataset.

Target: a page renders in < 2 s after its first visit.

    .venv/bin/python bench/dashboard_thumbnails.py [--n 10000] [--browser]

Uses bench/thumbnails.py's generated images (256²..1024², 2/3 JPEG, made once and reused),
registers them in a private workspace (70% train OK, 15% test OK, 15% test NOK with masks),
empties the thumbnail cache, then times whole runs of the Datasets page through the real
router with AppTest (server side: queries, cache lookups, st.image of 48 files):

- page 1, cold: first visit (thumbnails made), including the app's first-run imports;
- pages 2..6 via "Next": first visits; then "Previous" back over them: second visits;
- a new session opening page 1 again (second visit, as after a reload);
- a deep page (offset ~9,000) first and second visit.

With --browser also the wall time in headless Chromium from clicking "Next" until all 48
images have loaded (server run + websocket + image downloads), first and second visit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.thumbnails import dataset  # noqa: E402

NAME = "bench10k"


def _mask(args: tuple[str, int, int, int]) -> str:
    """A mask PNG (one blob) of the image's size."""
    out, w, h, i = args
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, (w // 3 + i % 50, h // 2), max(4, min(w, h) // 20), 255, -1)
    cv2.imwrite(out, m)
    return out


def build_workspace(home: Path, n: int, data: Path) -> None:
    """Register the generated images (no re-probe: sizes from headers) and NOK masks."""
    from db import datasets as dq
    from db.auth import system_actor
    from db.models import Image
    from engine.services.masks import save_mask
    from engine.services.store import open_workspace

    rows = dataset(data, n)
    ws, sessions = open_workspace(str(home))
    with sessions.begin() as s:
        if any(c.name == NAME and c.total == n for c in dq.dataset_counts(s)):
            return
    t = time.perf_counter()
    types = ("scratch", "burn", "missing")
    nok: list[tuple[int, Path, int, int]] = []
    with sessions.begin() as s:
        ds = dq.get_or_create_dataset(s, NAME, str(data), "seed")
        for i, (path, sha, _) in enumerate(rows):
            with PILImage.open(path) as im:
                w, h = im.size
                mode = im.mode
            split, label = ("train", "ok") if i % 20 < 14 else ("test", "ok") if i % 20 < 17 else ("test", "nok")
            img = Image(dataset_id=ds.id, path=str(path), rel_path=str(path.relative_to(data)), sha256=sha,
                        size_bytes=path.stat().st_size, width=w, height=h, mode=mode, split=split,
                        label=label, defect_type=types[i % 3] if label == "nok" else None, tags=[])
            s.add(img)
            if label == "nok":
                s.flush()
                nok.append((img.id, path, w, h))
    tmp = home / "bench-masks"
    tmp.mkdir(exist_ok=True)
    with ProcessPoolExecutor() as pool:
        files = list(pool.map(_mask, [(str(tmp / f"{i}.png"), w, h, i) for i, _, w, h in nok], chunksize=32))
    with sessions.begin() as s:
        for (image_id, _, _, _), f in zip(nok, files):
            mask = cv2.imread(f, cv2.IMREAD_GRAYSCALE) > 127
            save_mask(s, ws.masks_dir, image_id, mask, base_version=None, actor=system_actor("bench"),
                      source="imported")
    shutil.rmtree(tmp)
    print(f"registered {n} images ({len(nok)} NOK with masks) in {time.perf_counter() - t:.0f} s")


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def apptest_figures(home: Path) -> None:
    from streamlit.testing.v1 import AppTest

    def session() -> AppTest:
        at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=120)
        at.switch_page("dashboard/pages/datasets.py")
        return at

    def check(at: AppTest) -> None:
        assert not at.exception, at.exception
        assert len(at.get("image")) == 48, len(at.get("image"))

    at = session()
    cold1 = _timed(at.run)
    check(at)
    firsts, seconds = [], []
    for _ in range(5):
        firsts.append(_timed(at.button(key="datasets_page_next").click().run))
        check(at)
    for _ in range(5):
        seconds.append(_timed(at.button(key="datasets_page_prev").click().run))
        check(at)
    again = session()
    reload1 = _timed(again.run)
    check(again)
    again.session_state["datasets_page"] = 187  # images 8977..9024; the filter signature is kept
    deep1 = _timed(again.run)
    check(again)
    deep2 = _timed(again.run)
    print("AppTest, Datasets page of 48 (server run incl. DB, thumbnail cache, st.image):")
    print(f"  page 1 first visit (cold, incl. first-run imports): {cold1:.2f} s")
    print(f"  pages 2-6 first visit : median {statistics.median(firsts):.2f} s, max {max(firsts):.2f} s")
    print(f"  pages 5-1 second visit: median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s")
    print(f"  page 1 in a new session (second visit): {reload1:.3f} s")
    print(f"  page 188 (offset 8976) first visit {deep1:.2f} s, second visit {deep2:.3f} s")
    print(f"  target < 2 s after the first visit: {'met' if max(seconds + [reload1, deep2]) < 2 else 'NOT met'}")


_STATE_JS = """() => [document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img').length,
                       document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state'),
                       document.body.innerText.slice(0, 300)]"""


def browser_figures(home: Path) -> None:
    """Wall time in Chromium from clicking Next/Previous to all 48 images loaded."""
    from playwright.sync_api import sync_playwright

    port = 8765
    env = os.environ | {"PREFILTER_QA_HOME": str(home), "PREFILTER_QA_AUTOSTART_WORKER": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless",
                             "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.fileWatcherType", "none"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    loaded = """() => { const im = Array.from(document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img'));
                       return im.length === 48 && im.every(i => i.complete && i.naturalWidth > 0) &&
                              document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]'); }"""
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless",
                                                                            "--disable-gpu"])
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            for _ in range(100):
                try:
                    page.goto(f"http://127.0.0.1:{port}/datasets")
                    break
                except Exception:  # noqa: BLE001 (server still starting)
                    time.sleep(0.3)
            try:
                page.wait_for_function(loaded, timeout=180_000)
            except Exception:
                print("page did not finish loading:", page.evaluate(_STATE_JS))
                raise

            def click(name: str, number: int) -> tuple[float, float]:
                """(seconds until the page number shows, seconds until all 48 images loaded)"""
                t = time.perf_counter()
                page.get_by_role("button", name=name).click()
                page.wait_for_function(f"() => document.body.innerText.includes('Page {number} of')")
                shown = time.perf_counter() - t
                page.wait_for_function(loaded, timeout=120_000)
                return shown, time.perf_counter() - t

            firsts = [click("Next", k) for k in range(2, 7)]
            seconds = [click("Previous", k) for k in range(5, 0, -1)]
            b.close()
        print("Chromium, click -> new page number shown / all 48 images loaded:")
        for what, xs in (("first visit ", firsts), ("second visit", seconds)):
            print(f"  {what}: median {statistics.median(x[0] for x in xs):.2f} / "
                  f"{statistics.median(x[1] for x in xs):.2f} s, max {max(x[1] for x in xs):.2f} s")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "prefilter-qa-bench-thumbs")
    ap.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "prefilter-qa-bench-dashboard")
    ap.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    args = ap.parse_args()
    os.environ["PREFILTER_QA_HOME"] = str(args.home)
    os.environ["PREFILTER_QA_AUTOSTART_WORKER"] = "0"
    build_workspace(args.home, args.n, args.data)
    con = sqlite3.connect(args.home / "prefilter-qa.db")
    print("dataset:", con.execute("SELECT count(*) FROM images").fetchone()[0], "images")
    con.close()
    shutil.rmtree(args.home / "cache" / "thumbs", ignore_errors=True)  # every page's first visit is cold
    apptest_figures(args.home)
    if args.browser:
        shutil.rmtree(args.home / "cache" / "thumbs", ignore_errors=True)
        browser_figures(args.home)


if __name__ == "__main__":
    main()
