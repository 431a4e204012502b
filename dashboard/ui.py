"""Small display helpers shared by the pages: number/time formatting, status badges, log tails."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from db.models import JobStatus

STATUS_COLORS = {JobStatus.QUEUED: "gray", JobStatus.RUNNING: "blue", JobStatus.SUCCEEDED: "green",
                 JobStatus.FAILED: "red", JobStatus.CANCELLED: "orange"}
STATUS_ICONS = {JobStatus.QUEUED: ":material/schedule:", JobStatus.RUNNING: ":material/autorenew:",
                JobStatus.SUCCEEDED: ":material/check_circle:", JobStatus.FAILED: ":material/error:",
                JobStatus.CANCELLED: ":material/cancel:"}
LABEL_COLORS = {"ok": "green", "nok": "red", "unknown": "gray"}
MODEL_NAMES = {"dfr": "DFR (deep feature reconstruction)", "ae": "CBAM autoencoder"}


def status_badge(status: str) -> str:
    """Markdown badge for a job/run status (for st.markdown, dataframes show plain text)."""
    return f":{STATUS_COLORS.get(status, 'gray')}-badge[{status}]"


def fmt_num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_auroc(v: float | None, ci: Sequence[float] | None = None) -> str:
    """"0.912 (0.85–0.96)": the point estimate with its 95% bootstrap interval."""
    if v is None:
        return "–"
    if ci and len(ci) == 2 and ci[0] is not None and ci[1] is not None:
        return f"{v:.3f} ({ci[0]:.2f}–{ci[1]:.2f})"
    return f"{v:.3f}"


def fmt_duration(seconds: float | None) -> str:
    """"45 s", "3 min 05 s", "2 h 10 min"."""
    if seconds is None:
        return "–"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_when(at: datetime | None, now: datetime | None = None) -> str:
    """Local time plus how long ago, e.g. "14:03 (5 min ago)"."""
    if at is None:
        return "–"
    now = now or datetime.now(timezone.utc)
    ago = (now - at).total_seconds()
    local = at.astimezone()
    stamp = local.strftime("%H:%M") if ago < 20 * 3600 else local.strftime("%Y-%m-%d %H:%M")
    if ago < 60:
        return f"{stamp} (just now)"
    if ago < 3600:
        return f"{stamp} ({int(ago // 60)} min ago)"
    if ago < 48 * 3600:
        return f"{stamp} ({int(ago // 3600)} h ago)"
    return f"{stamp} ({int(ago // 86400)} days ago)"


def elapsed(start: datetime | None, end: datetime | None = None) -> float | None:
    if start is None:
        return None
    return ((end or datetime.now(timezone.utc)) - start).total_seconds()


def tail_lines(path: str | Path | None, n: int = 30, max_bytes: int = 64 * 1024) -> list[str] | None:
    """The last `n` lines of a (possibly large, growing) log file; None if it does not exist."""
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return None
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is probably cut
    return lines[-n:]


def query_int(name: str) -> int | None:
    """An integer query parameter (deep links like ?image=12), None if absent or malformed."""
    raw = st.query_params.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


_FLASH = "_flash_messages"


def flash(message: str, icon: str = ":material/check_circle:") -> None:
    """A toast shown on the next run (a toast just before st.rerun or st.switch_page is lost)."""
    st.session_state.setdefault(_FLASH, []).append((message, icon))


def show_flashes() -> None:
    for message, icon in st.session_state.pop(_FLASH, []):
        st.toast(message, icon=icon)
