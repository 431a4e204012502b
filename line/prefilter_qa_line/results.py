"""One result per image, as one JSON line, appended durably to a JSONL results file.

The results file is the line's record of what was judged, by which bundle and threshold, and
the memory of `watch` across restarts (a path in it is never scored again by `watch`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESULTS_MODE = 0o640  # owner rw, group r: the MES / dashboard user reads, nobody else


@dataclass(frozen=True)
class Result:
    """The verdict for one image; `verdict` "ERROR" means it was not judged (see `error`)."""

    path: str
    verdict: str  # "OK" | "REVIEW" | "NOK" | "ERROR"
    score: float | None  # None for ERROR
    threshold_id: int | None
    bundle_sha: str
    ms: float  # read + decode + resize (+ enhance) + this image's share of the model call
    error: str | None  # why the image was not judged; None otherwise
    heatmap: str | None  # PNG overlay at the original resolution, when requested
    at: str  # ISO 8601 UTC time of the verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """One line of JSON (keys in the documented order; never NaN)."""
        return json.dumps(self.to_dict(), allow_nan=False, ensure_ascii=False)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ResultsWriteError(OSError):
    """The results file cannot be written: the line must stop rather than judge unrecorded."""


def append_results(path: str | Path, results: Iterable[Result]) -> None:
    """Append lines in one write + fsync, so a crash loses at most whole trailing lines."""
    path = Path(path)
    lines = "".join(r.to_json() + "\n" for r in results)
    if not lines:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, RESULTS_MODE)
        try:
            if _needs_newline(fd):  # a torn last line (crash, full disk) stays one bad line
                lines = "\n" + lines
            os.write(fd, lines.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise ResultsWriteError(f"{path}: cannot append results: {e.strerror or e}") from None


def _needs_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def read_results(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every well-formed result line of a JSONL results file (missing file: nothing).

    Malformed lines (a line torn by a crash) are skipped with a warning.
    """
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                log.warning("%s:%d: skipping a malformed results line", path, n)
                continue
            if isinstance(row, dict) and isinstance(row.get("path"), str):
                yield row


def scored_paths(path: str | Path) -> set[str]:
    """Paths that already have a result (ERROR included: a bad file is reported once)."""
    return {row["path"] for row in read_results(path)}
