"""Thresholds page state: one editable threshold per run, shared by slider, number, ROC click,
histogram click and suggestion buttons, and the save with conflict detection.

Session keys (all prefixed `thr{run_id}_`):
- `base`: id of the active threshold when the run was loaded (the `base_id` of the save)
- `value`, `rule`: the edited image threshold and how it was chosen (RULES of engine.evaluation.decisions)
- `px`: pixel threshold (None = none)   - `band_on`, `band`: the review band
- `conflict`: set when a save was refused (someone saved since `base`)   - `flash`: last save
Widget keys (`w_*`) are written only from callbacks (before the script runs), from the
canonical values above, so every input shows the same threshold.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.state import actor, sessions
from dashboard.widgets.results_data import ActiveThreshold
from db import decisions as tq
from db.errors import PermissionDenied, StaleEditError, ValidationError
from engine.evaluation import decisions as D


def k(run_id: int, name: str) -> str:
    return f"thr{run_id}_{name}"


def get(run_id: int, name: str, default: Any = None) -> Any:
    return st.session_state.get(k(run_id, name), default)


def put(run_id: int, name: str, value: Any) -> None:
    st.session_state[k(run_id, name)] = value


def load_active(run_id: int) -> ActiveThreshold | None:
    with sessions().begin() as s:
        return ActiveThreshold.of(tq.active_threshold(s, run_id))


def init(run_id: int, active: ActiveThreshold | None, fallback: float, *, force: bool = False) -> None:
    """Start editing from the active threshold (first visit of the run, or reload)."""
    if get(run_id, "loaded") and not force:
        return
    put(run_id, "loaded", True)
    put(run_id, "base", active.id if active else None)
    put(run_id, "value", float(active.image) if active else float(fallback))
    put(run_id, "rule", (active.rule or "manual") if active else "manual")
    put(run_id, "px", active.pixel if active else None)
    put(run_id, "band_on", bool(active and active.band))
    put(run_id, "band", tuple(active.band) if active and active.band else None)
    put(run_id, "conflict", None)
    push(run_id)


def push(run_id: int) -> None:
    """Copy the canonical values into the widgets' keys (callbacks only). The message of the
    last save goes: it spoke of values that are being changed now."""
    put(run_id, "flash", None)
    v = float(get(run_id, "value"))
    put(run_id, "w_num", v)
    lo, hi = get(run_id, "slider_range", (v, v))
    put(run_id, "w_slider", min(max(v, lo), hi))
    put(run_id, "w_px", get(run_id, "px"))
    put(run_id, "w_band_on", bool(get(run_id, "band_on")))
    band = get(run_id, "band")
    if band:
        put(run_id, "w_lo", float(band[0]))
        put(run_id, "w_hi", float(band[1]))


def ensure_widgets(run_id: int) -> None:
    """Widget keys are dropped when the page is left; rebuild them from the canonical values.
    Keep the slider inside its range (another evaluation has another score range)."""
    if k(run_id, "w_num") not in st.session_state:
        push(run_id)
    lo, hi = get(run_id, "slider_range")
    v = st.session_state.get(k(run_id, "w_slider"))
    if v is not None and not lo <= v <= hi:
        put(run_id, "w_slider", min(max(float(get(run_id, "value")), lo), hi))


def set_value(run_id: int, value: float | None, rule: str) -> None:
    if value is None:
        return
    put(run_id, "value", float(value))
    put(run_id, "rule", rule)
    band = get(run_id, "band")
    if get(run_id, "band_on") and band and D.band_error(float(value), band):
        width = (band[1] - band[0]) / 2.0  # keep the band's width, centred on the new value
        put(run_id, "band", (float(value) - width, float(value) + width))
    push(run_id)


# --- callbacks (run before the script, so they may write widget keys) -----------------------

def on_slider(run_id: int) -> None:
    set_value(run_id, st.session_state[k(run_id, "w_slider")], "manual")


def on_number(run_id: int) -> None:
    v = st.session_state[k(run_id, "w_num")]
    if v is not None:
        set_value(run_id, v, "manual")


def on_roc_select(run_id: int, chart_key: str, thresholds: list[float]) -> None:
    """A click on a point of the ROC curve (trace 0) -> that point's threshold."""
    points = _selection(chart_key).get("points") or []
    for p in points:
        if p.get("curve_number", 0) == 0 and p.get("point_index") is not None:
            set_value(run_id, D.roc_threshold(thresholds, int(p["point_index"])), "roc")
            return


def on_hist_select(run_id: int, chart_key: str, edges: list[float]) -> None:
    """A click on a bar -> its left edge; a box selection -> the box's left x."""
    sel = _selection(chart_key)
    points = [p for p in sel.get("points") or [] if p.get("point_index") is not None]
    if points:
        set_value(run_id, D.bar_threshold(edges, min(int(p["point_index"]) for p in points)), "histogram")
    elif sel.get("box"):
        set_value(run_id, D.box_threshold(sel["box"][0]["x"]), "histogram")


def _selection(chart_key: str) -> dict[str, Any]:
    state = st.session_state.get(chart_key) or {}
    sel = state.get("selection") if isinstance(state, dict) else getattr(state, "selection", None)
    return dict(sel or {})


def on_suggestion(run_id: int, value: float | None, rule: str) -> None:
    set_value(run_id, value, rule)


def on_pixel(run_id: int, value: float | None = None, from_widget: bool = True) -> None:
    put(run_id, "px", st.session_state[k(run_id, "w_px")] if from_widget else value)
    push(run_id)


def on_band_toggle(run_id: int, default: tuple[float, float]) -> None:
    on = bool(st.session_state[k(run_id, "w_band_on")])
    put(run_id, "band_on", on)
    if on and not get(run_id, "band"):
        put(run_id, "band", default)
    push(run_id)


def on_band_edit(run_id: int) -> None:
    put(run_id, "band", (float(st.session_state[k(run_id, "w_lo")]),
                         float(st.session_state[k(run_id, "w_hi")])))
    put(run_id, "flash", None)


def on_band_set(run_id: int, band: tuple[float, float]) -> None:
    put(run_id, "band_on", True)
    put(run_id, "band", (float(band[0]), float(band[1])))
    push(run_id)


def band(run_id: int) -> tuple[float, float] | None:
    return tuple(get(run_id, "band")) if get(run_id, "band_on") and get(run_id, "band") else None


def on_save(run_id: int, evaluation_id: int) -> None:
    """Store the edited threshold; a save by someone else since loading is a conflict. Values
    equal to the active threshold are not saved again (a duplicate entry in the history)."""
    note = (st.session_state.get(k(run_id, "w_note")) or "").strip()
    active = load_active(run_id)
    if active is not None and active.id == get(run_id, "base") and unchanged(run_id, active):
        put(run_id, "flash", None)
        put(run_id, "unchanged", f"Nothing changed: threshold #{active.id} already has these values, so "
                                 "nothing was saved. Change a value first (a note alone is not a new threshold).")
        return
    put(run_id, "unchanged", None)
    try:
        with sessions().begin() as s:
            row = tq.save_threshold(
                s, run_id, base_id=get(run_id, "base"), image_threshold=float(get(run_id, "value")),
                pixel_threshold=get(run_id, "px"), review_band=band(run_id), rule=get(run_id, "rule"),
                actor=actor(), note=note or None, evaluation_id=evaluation_id)
            saved = ActiveThreshold.of(row)
    except StaleEditError as e:
        put(run_id, "conflict", str(e))
        put(run_id, "flash", None)
        return
    except PermissionDenied as e:
        put(run_id, "flash", None)
        st.session_state[k(run_id, "denied")] = str(e)
        return
    except ValidationError as e:  # e.g. a note over the length limit; the database layer says why
        put(run_id, "flash", None)
        st.session_state[k(run_id, "invalid")] = str(e)
        return
    put(run_id, "base", saved.id)
    put(run_id, "conflict", None)
    put(run_id, "flash", f"Saved threshold {saved.image:.4g} (#{saved.id}) as {saved.set_by} — "
                         "it is now the active threshold `prefilter-qa predict` uses.")
    put(run_id, "w_note", "")


def unchanged(run_id: int, active: ActiveThreshold) -> bool:
    """The edited values are the active threshold's (image, pixel and review band)."""
    band_now = band(run_id)
    same_band = (band_now is None and active.band is None) or (
        band_now is not None and active.band is not None
        and all(abs(a - b) <= 1e-12 for a, b in zip(band_now, active.band)))
    px, apx = get(run_id, "px"), active.pixel
    same_px = (px is None and apx is None) or (px is not None and apx is not None and abs(px - apx) <= 1e-12)
    return abs(float(get(run_id, "value")) - float(active.image)) <= 1e-12 and same_px and same_band


def on_reload(run_id: int, fallback: float) -> None:
    """Throw away the edit and start again from the threshold that is active now."""
    init(run_id, load_active(run_id), fallback, force=True)


def on_keep_mine(run_id: int) -> None:
    """Accept that someone else saved, keep the edited values; the next Save replaces theirs."""
    active = load_active(run_id)
    put(run_id, "base", active.id if active else None)
    put(run_id, "conflict", None)


def on_restore(run_id: int, row: ActiveThreshold) -> None:
    """Load an older threshold of the history into the editor (saving makes it active again)."""
    put(run_id, "value", float(row.image))
    put(run_id, "rule", row.rule or "manual")
    put(run_id, "px", row.pixel)
    put(run_id, "band_on", row.band is not None)
    put(run_id, "band", tuple(row.band) if row.band else get(run_id, "band"))
    push(run_id)
