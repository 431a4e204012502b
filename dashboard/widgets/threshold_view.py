"""Thresholds page widgets: inputs, suggestions, clickable ROC / histogram, live counts, save,
history. State and callbacks live in `threshold_state` (imported as S)."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from dashboard.state import can, role_note, sessions
from dashboard.widgets import charts
from dashboard.widgets import threshold_state as S
from dashboard.widgets.results_data import RULE_NAMES, ActiveThreshold, EvalData
from db import decisions as tq
from db.auth import Permission
from engine.config import default
from engine.evaluation import decisions as D
from engine.evaluation.metrics import roc_points


def slider_range(data: EvalData, active: float | None = None) -> tuple[float, float]:
    """The scores that matter: the OK spread around the threshold and the suggestions, not a far
    NOK tail (which squeezed the useful range into a few pixels); the number input takes any value."""
    m = data.metrics
    marks = [active, m.get("f1_threshold"), m.get("ok_only_threshold"),
             float(data.scores[data.y_nok].min()) if data.y_nok.any() else None]
    return D.slider_span(data.y_nok, data.scores, data.holdout_scores(), marks)


def inputs_ui(run_id: int, data: EvalData) -> None:
    """Slider and number for the image threshold, the review band, the pixel threshold."""
    lo, hi = S.get(run_id, "slider_range")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.slider("Image threshold (NOK at or above)", lo, hi, step=(hi - lo) / 1000, key=S.k(run_id, "w_slider"),
              on_change=S.on_slider, args=(run_id,), format="%.4g")
    c2.number_input("Exact value", key=S.k(run_id, "w_num"), on_change=S.on_number, args=(run_id,),
                    format="%.6g", step=(hi - lo) / 100)
    value = float(S.get(run_id, "value"))
    suggested = D.suggest_band(value, data.y_nok, data.scores, data.holdout_scores())
    b1, b2, b3, b4 = st.columns([1.1, 1, 1, 0.9], vertical_alignment="bottom")
    b1.toggle("Review band", key=S.k(run_id, "w_band_on"), on_change=S.on_band_toggle,
              args=(run_id, (suggested.low, suggested.high)),
              help="OK below the band, REVIEW inside it (a person decides), NOK at or above its upper end.")
    if S.get(run_id, "band_on"):
        b2.number_input("REVIEW from", key=S.k(run_id, "w_lo"), on_change=S.on_band_edit, args=(run_id,),
                        format="%.6g", step=(hi - lo) / 100)
        b3.number_input("NOK from", key=S.k(run_id, "w_hi"), on_change=S.on_band_edit, args=(run_id,),
                        format="%.6g", step=(hi - lo) / 100)
        b4.button("Suggested band", key=S.k(run_id, "band_suggest"), on_click=S.on_band_set,
                  args=(run_id, (suggested.low, suggested.high)), width="stretch",
                  help="REVIEW from / NOK from as the sentence below says, for the edited threshold.")
        st.caption(f"Suggested band {suggested.low:.4g} – {suggested.high:.4g}. {suggested.why}")
        err = D.band_error(value, S.band(run_id))
        if err:
            st.error(f"Review band: {err}. Adjust it to save.", icon=":material/error:")


def pixel_ui(run_id: int, data: EvalData) -> None:
    px = data.metrics.get("pixel_threshold") or {}
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    c1.number_input("Pixel threshold (predicted defect masks)", key=S.k(run_id, "w_px"),
                    on_change=S.on_pixel, args=(run_id,), format="%.6g", placeholder="none",
                    help="Heatmap pixels at or above it form the predicted mask (Results image detail, "
                         "`predict` heatmaps). It does not change image verdicts.")
    for col, key, label in ((c2, "f1_max", "pixel F1-max"), (c3, "ok_quantile", "OK pixel quantile")):
        v = px.get(key)
        col.button(f"{label}: {v:.4g}" if v is not None else f"{label}: –", disabled=v is None,
                   key=S.k(run_id, f"px_{key}"), on_click=S.on_pixel, args=(run_id, v, False),
                   width="stretch")


def suggestions_ui(run_id: int, data: EvalData) -> None:
    m = data.metrics
    stored_target = float(m.get("target_frr") or default("target_frr"))
    c0, *cols = st.columns([1.1, 1, 1, 1], vertical_alignment="bottom")
    target = c0.number_input("Target false-reject rate (%)", min_value=0.01, max_value=50.0,
                             value=stored_target * 100, step=0.5, format="%.2f", key=S.k(run_id, "w_target"),
                             help="For the OK-only suggestion: the share of OK parts you accept to reject.")
    sugg = D.suggestions(data.y_nok, data.scores, target_frr=target / 100, ok_reference=data.holdout_scores())
    if abs(target / 100 - stored_target) < 1e-12 and m.get("ok_only_threshold") is not None:
        src = m.get("ok_only_source")
        sugg[2] = D.Suggestion("ok_only", f"OK-only @ {stored_target:.1%} FRR", float(m["ok_only_threshold"]),
                               f"from the evaluation ({m.get('n_holdout', 0)} {src or ''} OK images)")
    for col, sg in zip(cols, sugg):
        text = f"{sg.label}: {sg.value:.4g}" if sg.value is not None else f"{sg.label}: –"
        col.button(text, key=S.k(run_id, f"sg_{sg.rule}"), help=sg.why, disabled=sg.value is None,
                   on_click=S.on_suggestion, args=(run_id, sg.value, sg.rule), width="stretch")


def live_ui(run_id: int, data: EvalData, active: ActiveThreshold | None) -> dict:
    """Counts and rates at the edited threshold, with the change against the active one."""
    value, band = float(S.get(run_id, "value")), S.band(run_id)
    if D.band_error(value, band):
        band = None
    c = D.live_counts(data.y_nok, data.scores, value, band)
    ref = D.live_counts(data.y_nok, data.scores, active.image, active.band) if active else None

    def delta(name: str) -> int | None:
        d = None if ref is None else int(c[name]) - int(ref[name])
        return d or None

    m1, m2 = st.columns(2)
    m3, m4 = st.columns(2)
    m1.metric("Escapes (NOK passed)", f"{c['fn']} of {c['n_nok']}", delta(("fn")), delta_color="inverse",
              help="Defective parts the rule lets through (false negatives).")
    m2.metric("False rejects (OK rejected)", f"{c['fp']} of {c['n_ok']}", delta("fp"), delta_color="inverse",
              help="Good parts the rule rejects (false positives).")
    m3.metric("To review", f"{c['review_count']} ({(c['review_rate'] or 0):.0%})", delta("review_count"),
              delta_color="off", help="Parts in the review band, decided by a person.")
    m4.metric("Escape / false-reject rate",
              f"{_pct(c['escape_rate'])} / {_pct(c['false_reject_rate'])}",
              help="Share of NOK test images passed / share of OK test images rejected.")
    if ref is not None:
        st.caption("Arrows: change against the active (saved) threshold.")
    return c


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def confusion_ui(run_id: int, counts: dict) -> None:
    st.plotly_chart(charts.confusion_figure(counts, band=S.band(run_id) is not None,
                                            title="Confusion at the edited threshold"),
                    key=S.k(run_id, "conf"))


def charts_ui(run_id: int, data: EvalData) -> None:
    """Clickable ROC (a point = its threshold) and histogram (a bar = its left edge)."""
    value, band = float(S.get(run_id, "value")), S.band(run_id)
    c1, c2 = st.columns(2)
    roc = roc_points(data.y_nok, data.scores)
    with c1:
        if roc:
            key = S.k(run_id, f"roc_{data.evaluation_id}")
            fig = charts.roc_figure([charts.Curve("ROC", roc["fpr"], roc["tpr"], roc["thresholds"])],
                                    title="ROC — click a point to use its threshold",
                                    point=D.operating_point(data.y_nok, data.scores, value),
                                    point_label="edited threshold")
            st.plotly_chart(fig, key=key, selection_mode="points",
                            on_select=partial(S.on_roc_select, run_id, key, roc["thresholds"]))
        else:
            st.info("The ROC curve needs both OK and NOK test images.")
    with c2:
        edges = D.score_bins(data.scores, data.y_nok, data.holdout_scores())  # bars from the OK spread
        ok, nok = D.histogram_counts(data.y_nok, data.scores, edges)
        key = S.k(run_id, f"hist_{data.evaluation_id}")
        fig = charts.histogram_figure(ok, nok, edges, threshold=value, band=band if not D.band_error(value, band) else None,
                                      title="Scores — click a bar: threshold at its left edge")
        st.plotly_chart(fig, key=key, selection_mode=("points", "box"),
                        on_select=partial(S.on_hist_select, run_id, key, edges.tolist()))


def conflict_ui(run_id: int, active: ActiveThreshold | None, fallback: float) -> None:
    """Someone saved since this run was loaded: say who, offer reload or keep."""
    base = S.get(run_id, "base")
    if (active.id if active else None) == base and not S.get(run_id, "conflict"):
        return
    who = f"**{active.set_by}** at {active.at} (image threshold {active.image:.4g}" + \
        (f", note: “{active.note}”)" if active.note else ")") if active else "someone"
    if S.get(run_id, "conflict"):
        st.error(f"Not saved: the threshold of this run was changed by {who} since you loaded it. "
                 "Reload to see theirs, or keep your values and save again to replace it.",
                 icon=":material/sync_problem:")
    else:
        st.warning(f"The threshold of this run was changed by {who} since you loaded it.",
                   icon=":material/sync_problem:")
    c1, c2, _ = st.columns([1, 1, 2])
    c1.button("Reload the active threshold", key=S.k(run_id, "reload"), on_click=S.on_reload,
              args=(run_id, fallback), type="primary")
    c2.button("Keep my values", key=S.k(run_id, "keep"), on_click=S.on_keep_mine, args=(run_id,))


def save_ui(run_id: int, evaluation_id: int) -> None:
    value = float(S.get(run_id, "value"))
    err = D.band_error(value, S.band(run_id))
    rule = S.get(run_id, "rule") or "manual"
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.text_input("Note (why this threshold)", key=S.k(run_id, "w_note"),
                  placeholder="e.g. agreed with quality: no escapes on the March batch")
    c2.button("Save threshold", type="primary", key=S.k(run_id, "save"),
              disabled=err is not None or not can(Permission.THRESHOLDS),
              on_click=S.on_save, args=(run_id, evaluation_id), icon=":material/save:", width="stretch")
    px = S.get(run_id, "px")
    st.caption(f"Will save image threshold **{value:.6g}** ({RULE_NAMES.get(rule, rule)})"
               + (f", pixel threshold {px:.4g}" if px is not None else "")
               + (f", review band {S.band(run_id)[0]:.4g} – {S.band(run_id)[1]:.4g}" if S.band(run_id) else "")
               + ". The latest saved threshold is the active one: `prefilter-qa predict` uses it.")
    role_note(Permission.THRESHOLDS, "save thresholds (engineer or admin)")
    if denied := st.session_state.pop(S.k(run_id, "denied"), None):
        st.error(f"Not saved: {denied}", icon=":material/lock:")
    if invalid := st.session_state.pop(S.k(run_id, "invalid"), None):
        st.error(f"Not saved: {invalid}", icon=":material/error:")
    flash = S.get(run_id, "flash")
    if flash:
        st.success(flash, icon=":material/check_circle:")
    if nothing := S.get(run_id, "unchanged"):
        st.warning(nothing, icon=":material/info:")
        S.put(run_id, "unchanged", None)


def history_ui(run_id: int) -> None:
    with sessions().begin() as s:
        rows = [ActiveThreshold.of(t) for t in tq.threshold_history(s, run_id)]
    if not rows:
        st.caption("No threshold saved yet.")
        return
    df = pd.DataFrame({
        "": ["active" if i == 0 else "" for i in range(len(rows))],
        "id": [r.id for r in rows], "image": [r.image for r in rows],
        "pixel": [r.pixel for r in rows],
        "review band": [f"{r.band[0]:.4g} – {r.band[1]:.4g}" if r.band else "" for r in rows],
        "rule": [RULE_NAMES.get(r.rule or "manual", r.rule) for r in rows],
        "set by": [r.set_by for r in rows], "at": [r.at for r in rows], "note": [r.note or "" for r in rows],
    })
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "image": st.column_config.NumberColumn(format="%.6g"),
        "pixel": st.column_config.NumberColumn(format="%.4g")})
    by_id = {r.id: r for r in rows}
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    active_id = rows[0].id  # the latest saved threshold is the active one
    pick = c1.selectbox("Load an earlier threshold into the editor", list(by_id), key=S.k(run_id, "w_hist"),
                        index=0, format_func=lambda i: f"#{i} · {by_id[i].image:.6g} · {by_id[i].set_by} · "
                                                       f"{by_id[i].at}" + (" · active" if i == active_id else ""))
    c2.button("Load", key=S.k(run_id, "restore"), on_click=S.on_restore, args=(run_id, by_id[pick]),
              width="stretch")
