"""Plotly figures of Results / Thresholds: ROC, precision-recall, score histogram, confusion.

Figures only (no Streamlit calls). Clickable figures keep their data trace first
(`curve_number` 0) so a selection's `point_index` indexes the caller's threshold array.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

OK_COLOR = "#2e7d32"
NOK_COLOR = "#c62828"
REVIEW_COLOR = "#f9a825"
THRESHOLD_COLOR = "#1565c0"
SERIES = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00")
HEIGHT = 340


@dataclass(frozen=True)
class Curve:
    """One curve; `thresholds[i]` is the score threshold of point i (descending)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    thresholds: Sequence[float] | None = None


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, unit_axes: bool = True) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.0, font=dict(size=15)), height=HEIGHT,
        margin=dict(l=10, r=10, t=40, b=10), xaxis_title=x_title, yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="bottom", y=0.01, xanchor="right", x=0.99),
        hovermode="closest", template="plotly_white",
    )
    if unit_axes:
        fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%")
        fig.update_yaxes(range=[-0.02, 1.04], tickformat=".0%")
    return fig


def _curve_traces(fig: go.Figure, curves: Sequence[Curve], markers: bool) -> None:
    for i, c in enumerate(curves):
        thr = list(c.thresholds) if c.thresholds is not None else None
        fig.add_trace(go.Scatter(
            x=list(c.x), y=list(c.y), name=c.name, mode="lines+markers" if markers else "lines",
            line=dict(color=SERIES[i % len(SERIES)], width=2),
            marker=dict(size=9 if markers else 4, color=SERIES[i % len(SERIES)]),
            customdata=thr,
            hovertemplate=("threshold %{customdata:.4g}<br>" if thr is not None else "")
            + "x %{x:.1%}<br>y %{y:.1%}<extra>" + c.name + "</extra>",
        ))


def _operating_marker(fig: go.Figure, point: tuple[float, float] | None, label: str) -> None:
    if point is None:
        return
    fig.add_trace(go.Scatter(
        x=[point[0]], y=[point[1]], mode="markers", name=label, hoverinfo="name",
        marker=dict(size=15, color="rgba(0,0,0,0)", line=dict(color="black", width=2.5)),
    ))


def roc_figure(curves: Sequence[Curve], *, title: str = "ROC", point: tuple[float, float] | None = None,
               point_label: str = "threshold", markers: bool = True, unit: str = "parts") -> go.Figure:
    """ROC in the plant's words: x = OK parts rejected, y = NOK parts caught (unit "pixels" for
    pixel curves)."""
    fig = go.Figure()
    _curve_traces(fig, curves, markers)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", hoverinfo="skip",
                             line=dict(color="#bbbbbb", dash="dot", width=1), showlegend=False))
    _operating_marker(fig, point, point_label)
    if unit == "pixels":
        return _layout(fig, title, "false-positive rate (normal pixels flagged)",
                       "true-positive rate (defect pixels flagged)")
    return _layout(fig, title, "false-reject rate (OK parts rejected)", "detection rate (NOK parts caught)")


def pr_figure(curves: Sequence[Curve], *, title: str = "Precision-recall",
              point: tuple[float, float] | None = None, markers: bool = True, unit: str = "parts") -> go.Figure:
    """x = recall (NOK caught), y = precision (share of rejected parts that are NOK)."""
    fig = go.Figure()
    _curve_traces(fig, curves, markers)
    _operating_marker(fig, point, "active threshold")
    if unit == "pixels":
        return _layout(fig, title, "recall (defect pixels flagged)", "precision (flagged pixels truly defect)")
    return _layout(fig, title, "recall (NOK parts caught)", "precision (rejected parts truly NOK)")


def histogram_figure(ok_counts: np.ndarray, nok_counts: np.ndarray, edges: np.ndarray, *,
                     threshold: float | None, band: tuple[float, float] | None = None,
                     title: str = "Score distribution") -> go.Figure:
    """OK and NOK bars over the same bins (trace 0 = OK, 1 = NOK; point_index = bar index),
    the threshold as a line and the review band shaded."""
    centers = (edges[:-1] + edges[1:]) / 2.0
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    # the outer bars hold every score beyond them (engine.evaluation.decisions.score_bins)
    spans = [f"{a:.4g} – {b:.4g}" for a, b in zip(edges[:-1], edges[1:])]
    if spans:
        spans[0], spans[-1] = f"up to {edges[1]:.4g}", f"{edges[-2]:.4g} and above"
    fig = go.Figure()
    for name, counts, color in (("OK", ok_counts, OK_COLOR), ("NOK", nok_counts, NOK_COLOR)):
        fig.add_trace(go.Bar(
            x=centers, y=counts, width=width, name=f"{name} ({int(np.sum(counts))})",
            marker=dict(color=color, line=dict(width=0)), opacity=0.65, customdata=spans,
            hovertemplate=f"{name}: %{{y}} images<br>scores %{{customdata}}<extra></extra>",
        ))
    if band is not None:
        fig.add_vrect(x0=band[0], x1=band[1], fillcolor=REVIEW_COLOR, opacity=0.18, line_width=0,
                      annotation_text="review", annotation_position="bottom left")
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(color=THRESHOLD_COLOR, width=2.5, dash="dash"),
                      annotation_text=f"threshold {threshold:.4g}", annotation_position="top right")
    fig.update_layout(barmode="overlay", bargap=0.0)
    top = int(max(np.max(ok_counts, initial=0), np.max(nok_counts, initial=0)))
    fig.update_yaxes(dtick=max(1, -(-top // 6)), rangemode="tozero")
    marks = [float(edges[0]), float(edges[-1])] + ([threshold] if threshold is not None else []) \
        + (list(band) if band is not None else [])
    pad = 0.5 * width
    fig.update_xaxes(range=[min(marks) - pad, max(marks) + pad])
    fig = _layout(fig, title, "anomaly score (NOK at or above the threshold)", "images", unit_axes=False)
    fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
                      margin=dict(l=10, r=10, t=56, b=10))
    return fig


def confusion_figure(counts: dict[str, float | int | None], *, band: bool,
                     title: str = "Confusion at the threshold") -> go.Figure:
    """True class (rows) x verdict (columns); escapes and false rejects in red."""
    cols = ["NOK", "REVIEW", "OK"] if band else ["NOK", "OK"]
    nok = {"NOK": ("caught", counts["tp"], 0.0), "REVIEW": ("to review", counts["review_nok"], 0.5),
           "OK": ("escaped", counts["fn"], 1.0)}
    ok = {"NOK": ("false reject", counts["fp"], 1.0), "REVIEW": ("to review", counts["review_ok"], 0.5),
          "OK": ("passed", counts["tn"], 0.0)}
    rows = [("true NOK", nok), ("true OK", ok)]
    z = [[r[c][2] for c in cols] for _, r in rows]
    text = [[f"<b>{int(r[c][1] or 0)}</b><br>{r[c][0]}" for c in cols] for _, r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"verdict {c}" for c in cols], y=[n for n, _ in rows], text=text,
        texttemplate="%{text}", textfont=dict(size=15), showscale=False, zmin=0, zmax=1, xgap=3, ygap=3,
        colorscale=[[0, "#e8f5e9"], [0.5, "#fff8e1"], [1, "#ffebee"]], hoverinfo="skip",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=dict(text=title, x=0.0, font=dict(size=15)), height=260,
                      margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig
