"""Watch a folder: score each image file that appears, once, and hot-reload the bundle.

- Once: a file whose path is in the results file is never scored again (restarts included;
  ERROR results count: a bad file is reported once). Replace a part's image by a new name.
- Complete files only: a file is read when its size and mtime did not change between two polls;
  a 0-byte file waits ZERO_BYTE_GRACE_S more (a camera may create the file before writing it).
  Hidden files (".name") and names without an image extension are ignored, so a writer's
  "x.png.tmp" + rename is picked up once renamed. Only DIR itself is watched, not sub-folders.
- Hot reload: before each poll and between two images, BUNDLE/bundle.json is read; a new sha
  is loaded, verified and self-tested, and only a bundle that passes replaces the one serving.
  A refused bundle is logged and not retried until bundle.json or one of its files changes.
  Exporters should write model.onnx and golden/ first and bundle.json last (atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prefilter_qa_line.bundle import BUNDLE_JSON, BundleError
from prefilter_qa_line.imagerule import IMAGE_EXTENSIONS
from prefilter_qa_line.results import Result, append_results, scored_paths
from prefilter_qa_line.scorer import Scorer

log = logging.getLogger(__name__)

ZERO_BYTE_GRACE_S = 30.0  # a file still empty this long after its last change is judged (ERROR)


class Watcher:
    """Poll-driven: `poll_once()` does one pass; `run()` loops until `stop` is set."""

    def __init__(self, scorer: Scorer, folder: str | Path, results: str | Path,
                 load: Callable[[Path], Scorer], heatmaps: str | Path | None = None,
                 emit: Callable[[Result], None] | None = None) -> None:
        self.scorer = scorer
        self.folder = Path(folder).resolve()
        self.results = Path(results)
        self.heatmaps = None if heatmaps is None else Path(heatmaps)
        self._load = load  # bundle folder -> verified + self-tested Scorer, or BundleError
        self._emit = emit or (lambda r: None)
        self._done = scored_paths(self.results)
        self._seen: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) at last poll
        self._refused: tuple | None = None  # signature of the last bundle that failed
        self._unreadable: str | None = None  # last "cannot read bundle.json" logged (once)
        self._stop: threading.Event | None = None
        self.errors = 0  # ERROR results written by this watcher

    def poll_once(self) -> list[Result]:
        """Reload if the bundle changed, then score the files that are complete."""
        self.maybe_reload()
        out = []
        for path in self._ready():
            if self._stop is not None and self._stop.is_set():
                break  # a backlog must not delay a stop: the rest waits for the next start
            self.maybe_reload()  # between two images, never during one
            r = self.scorer.score_images([path], self.heatmaps)[0]
            append_results(self.results, [r])  # ResultsWriteError stops the watcher
            self._done.add(str(path))
            self.errors += r.verdict == "ERROR"
            self._emit(r)
            out.append(r)
        return out

    def run(self, poll: float, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.is_set():
            self.poll_once()
            stop.wait(poll)

    def pending(self) -> int:
        """Files seen but not yet complete (for --once to report what it left)."""
        return sum(1 for p in self._seen if p not in self._done)

    def _ready(self) -> list[Path]:
        now = time.time()
        files = []
        try:
            entries = list(os.scandir(self.folder))
        except OSError as e:
            log.error("%s: cannot list folder: %s", self.folder, e.strerror or e)
            return []
        for e in entries:
            ext = os.path.splitext(e.name)[1].lower()
            if e.name.startswith(".") or ext not in IMAGE_EXTENSIONS:
                continue
            key = str(self.folder / e.name)
            if key in self._done:
                continue
            try:
                st = e.stat()
            except OSError:  # vanished between listing and stat
                continue
            if not e.is_file():
                continue
            sig = (st.st_size, st.st_mtime_ns)
            stable = self._seen.get(key) == sig
            self._seen[key] = sig
            if stable and (st.st_size > 0 or now - st.st_mtime >= ZERO_BYTE_GRACE_S):
                files.append((st.st_mtime_ns, e.name, Path(key)))
        live = {str(self.folder / e.name) for e in entries}
        self._seen = {k: v for k, v in self._seen.items() if k in live}
        return [p for _, _, p in sorted(files)]  # arrival order

    def maybe_reload(self) -> None:
        """Switch to a new bundle only if it verifies and passes its self-test."""
        root = self.scorer.bundle.path
        try:
            raw = (root / BUNDLE_JSON).read_bytes()
        except OSError as e:
            if self._unreadable != str(e):  # once, not on every poll
                self._unreadable = str(e)
                log.warning("%s: cannot read %s (%s); still serving %s", root, BUNDLE_JSON,
                            e.strerror or e, self.scorer.sha[:12])
            return
        self._unreadable = None
        sha = hashlib.sha256(raw).hexdigest()
        if sha == self.scorer.sha:
            return
        signature = (sha, _files_signature(root, raw))
        if signature == self._refused:
            return
        try:
            new = self._load(root)
        except BundleError as e:
            self._refused = signature
            log.error("new bundle %s refused, still serving %s: %s", sha[:12],
                      self.scorer.sha[:12], e)
            return
        except Exception:  # a reload must never take down the bundle that is serving
            self._refused = signature
            log.exception("new bundle %s could not be loaded, still serving %s", sha[:12],
                          self.scorer.sha[:12])
            return
        log.warning("switched from bundle %s to %s (threshold %s)", self.scorer.sha[:12],
                    new.sha[:12], new.bundle.threshold.id)
        self.scorer = new


def _files_signature(root: Path, raw: bytes) -> tuple:
    """(name, size, mtime) of the files bundle.json lists: a refused bundle whose files are
    then completed (an exporter writing in the wrong order) is tried again."""
    try:
        names = sorted(json.loads(raw).get("files", {}))
    except Exception:
        return ()
    sig = []
    for n in names:
        try:
            st = (root / str(n)).stat()
            sig.append((str(n), st.st_size, st.st_mtime_ns))
        except (OSError, ValueError):
            sig.append((str(n), -1, -1))
    return tuple(sig)
