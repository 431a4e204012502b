"""The PDF evaluation report an engineer files for change control (matplotlib's PDF backend).

Pages: 1 summary (run, dataset snapshot, metrics with intervals, active threshold and its
confusion), 2 ROC and score histogram, 3 the worst false rejects and escapes with their heatmaps
(and the map the score came from, with its peak), 4 the threshold history. Only `Figure` and
`PdfPages` are used (no pyplot): nothing global changes in the process that renders it, and no
torch is imported (the dashboard offers the download).
"""

from __future__ import annotations

import io
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InputFileError
from engine.evaluation import heatmaps as viz
from engine.evaluation.decisions import histogram_counts, score_bins
from engine.evaluation.metrics import confusion, roc_points
from engine.evaluation.report import ReportInput, fmt, history_lines, metric_lines, worst
from engine.intake.images import read_image

A4 = (8.27, 11.69)
THUMB = 360  # longest side of the images on the worst-cases page
OK_COLOR, NOK_COLOR = "#2e7d32", "#c62828"


def pdf_bytes(inp: ReportInput) -> bytes:
    """The report as PDF bytes (text as TrueType, so it can be searched and copied)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    meta = {"Title": f"prefilter-qa evaluation report, run {inp.run['id']}, evaluation {inp.evaluation_id}",
            "Author": "prefilter-qa", "Subject": f"{inp.run['model'].upper()} on {inp.dataset['name']}"}
    with matplotlib.rc_context({"pdf.fonttype": 42, "font.size": 8}), PdfPages(buf, metadata=meta) as pdf:
        for page in (_summary, _charts, _worst_cases, _history):
            fig = page(inp)
            if fig is not None:
                pdf.savefig(fig)
    return buf.getvalue()


def _page(title: str, inp: ReportInput) -> "object":
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4)
    fig.text(0.06, 0.965, title, fontsize=13, weight="bold")
    fig.text(0.06, 0.948, f"Run #{inp.run['id']} · evaluation #{inp.evaluation_id} · dataset "
             f"{inp.dataset['name']!r} · generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             fontsize=8, color="#555555")
    return fig


def _table(fig: "object", rect: tuple[float, float, float, float], rows: list[list[str]],
           header: list[str] | None = None, widths: list[float] | None = None) -> None:
    ax = fig.add_axes(rect)
    ax.axis("off")
    if not rows:
        ax.text(0, 1, "(none)", va="top")
        return
    tab = ax.table(cellText=rows, colLabels=header, colWidths=widths, loc="upper left", cellLoc="left")
    tab.auto_set_font_size(False)
    tab.set_fontsize(7.5)
    tab.scale(1, 1.25)
    for (r, _), cell in tab.get_celld().items():
        cell.set_edgecolor("#cccccc")
        if header and r == 0:
            cell.set_facecolor("#eeeeee")
            cell.set_text_props(weight="bold")


def _summary(inp: ReportInput) -> "object":
    r, d, t = inp.run, inp.dataset, inp.threshold
    fig = _page(f"Evaluation report — run #{r['id']} ({r['model'].upper()}, preset {r['preset']})", inp)
    facts = [
        ["Run", f"#{r['id']} {r['model'].upper()} ({r['preset']}), {r['status']}, by {r['created_by']} "
                f"at {r['created_at']}"
                + (f", retrained from run #{r['parent_run_id']}" if r.get("parent_run_id") else "")],
        ["Checkpoint", str(r.get("checkpoint") or "–")[-90:]],
        ["Evaluation", f"#{inp.evaluation_id}, finished {inp.evaluated_at}"],
        ["Dataset", f"{d['name']} ({d.get('root') or '–'})"[:100]],
        ["Snapshot", f"{d['train']} OK training images, {d['holdout']} held out, {d['test']} test images, "
                     f"{d['masks']} mask versions frozen, ROI version {d.get('roi') or 'none'}"],
    ]
    _table(fig, (0.06, 0.76, 0.88, 0.16), facts, widths=[0.16, 0.84])
    fig.text(0.06, 0.745, "\n".join(textwrap.wrap(inp.score_rule, 120)), fontsize=8, va="top")
    fig.text(0.06, 0.70, "Metrics", fontsize=11, weight="bold")
    _table(fig, (0.06, 0.50, 0.88, 0.19), [[k, v] for k, v in metric_lines(inp.metrics)], widths=[0.4, 0.6])
    fig.text(0.06, 0.48, "Active threshold (what prefilter-qa predict uses)", fontsize=11, weight="bold")
    band = f"review band {t.band[0]:.4g} – {t.band[1]:.4g}" if t.band else "no review band"
    line = (f"image threshold {t.image:.6g} ({t.rule or 'manual'}), pixel threshold {fmt(t.pixel)}, {band}; "
            f"set by {t.set_by} at {t.at}" + (f" — “{t.note}”" if t.note else ""))
    fig.text(0.06, 0.47, "\n".join(textwrap.wrap(line, 120)), fontsize=8, va="top")
    if inp.images:
        c = confusion(inp.y_nok, inp.scores, t.image, t.band)
        rows = [["NOK (defective)", str(c["tp"]), str(c["review_nok"]), str(c["fn"])],
                ["OK (good)", str(c["fp"]), str(c["review_ok"]), str(c["tn"])]]
        _table(fig, (0.06, 0.32, 0.6, 0.1), rows, header=["true class", "verdict NOK", "REVIEW", "verdict OK"])
        fig.text(0.06, 0.31, f"Escapes {c['fn']} ({fmt(c['escape_rate'], 3)}), false rejects {c['fp']} "
                 f"({fmt(c['false_reject_rate'], 3)}), to review {c['review_nok'] + c['review_ok']}.", fontsize=8)
    failed = inp.metrics.get("failed") or []
    excluded = inp.metrics.get("excluded") or []
    fig.text(0.06, 0.27, f"Images not scored: {len(failed)} unreadable, {len(excluded)} missing or changed "
             "since import." + (" " + inp.metrics.get("resolution_note", "") + "." if inp.metrics.get(
                 "resolution_note") else ""), fontsize=8)
    return fig


def _charts(inp: ReportInput) -> "object | None":
    if not inp.images:
        return None
    t = inp.threshold
    fig = _page("ROC curve and score distribution", inp)
    y, s = inp.y_nok, inp.scores
    ax = fig.add_axes((0.1, 0.55, 0.8, 0.36))
    roc = roc_points(y, s)
    if roc:
        ax.plot([0, *roc["fpr"]], [0, *roc["tpr"]], color="#1565c0", lw=1.5, label="ROC")
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--")
        ax.plot([float(np.mean(s[~y] >= t.image))], [float(np.mean(s[y] >= t.image))], "o", color="#e65100",
                label=f"active threshold {t.image:.4g}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "needs OK and NOK test images", ha="center")
    ax.set(xlabel="false-reject rate (OK rejected)", ylabel="recall (NOK caught)", xlim=(0, 1), ylim=(0, 1.02),
           title=f"ROC — image AUROC {fmt(inp.metrics.get('image_auroc'))}")
    ax = fig.add_axes((0.1, 0.08, 0.8, 0.36))
    edges = score_bins(s, y, inp.metrics.get("holdout_scores"), t.image)
    ok, nok = histogram_counts(y, np.clip(s, edges[0], edges[-1]), edges)
    width = np.diff(edges)
    ax.bar(edges[:-1], ok, width=width, align="edge", color=OK_COLOR, alpha=0.6, label="OK")
    ax.bar(edges[:-1], nok, width=width, align="edge", color=NOK_COLOR, alpha=0.6, label="NOK")
    ax.axvline(t.image, color="#e65100", lw=1.5, label="threshold")
    if t.band:
        ax.axvspan(t.band[0], t.band[1], color="#fdd835", alpha=0.25, label="review band")
    ax.legend()
    ax.set(xlabel="image score (outer bars hold everything beyond them)", ylabel="images",
           title="Scores of the test images, bins from the OK spread around the threshold")
    return fig


def _thumb(path: str) -> np.ndarray | None:
    try:
        img = read_image(Path(path))  # (H, W, 3) uint8
    except InputFileError:
        return None
    f = THUMB / max(img.shape[:2])
    if f < 1:
        img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    return img


def _panels(inp: ReportInput, i: int) -> list[tuple[str, np.ndarray | None]]:
    """Original | heatmap | the score's own map with its peak (when it differs from the heatmap)."""
    im = inp.images[i]
    img = _thumb(im.path)
    out: list[tuple[str, np.ndarray | None]] = [("original", img)]
    if img is None:
        return out
    maps = [("heatmap", im.heatmap, inp.map_range())]
    if im.score_map:
        maps.append(("score map (peak ringed)", im.score_map, inp.map_range("score_map_range")))
    for k, (name, path, rng) in enumerate(maps):
        try:
            amap = viz.load_heatmap(path) if path else None
        except (OSError, ValueError):
            amap = None
        if amap is None:
            out.append((name, None))
            continue
        vmin, vmax = rng or (float(np.percentile(amap, 1)), float(np.percentile(amap, 99.9)))
        ov = viz.overlay(img, viz.to_original_grid(amap, img.shape[:2]), vmin, vmax)
        if k == len(maps) - 1:  # the map the score was taken from: ring its maximum
            r, c, _ = viz.score_peak(amap, inp.border_margin)
            ov = viz.mark_peak(ov, (r + 0.5) * img.shape[0] / amap.shape[0], (c + 0.5) * img.shape[1] / amap.shape[1])
        out.append((name + (" (peak ringed)" if k == 0 and len(maps) == 1 else ""), ov))
    return out


def _worst_cases(inp: ReportInput) -> "object":
    fig = _page("Worst false rejects and escapes at the active threshold", inp)
    fps, fns = worst(inp, "FP"), worst(inp, "FN")
    rows = [("false reject", i) for i in fps] + [("escape", i) for i in fns]
    none = [w for w, idx in (("no false reject", fps), ("no escape", fns)) if not idx]
    if none:
        fig.text(0.06, 0.03, " and ".join(none).capitalize() + " at the active threshold.", fontsize=9)
    if not rows:
        return fig
    h = 0.86 / max(len(rows), 4)
    for n, (kind, i) in enumerate(rows):
        im = inp.images[i]
        top = 0.92 - n * h
        fig.text(0.06, top, f"{kind}: {im.name} — {im.label.upper()}"
                 f"{' (' + im.defect_type + ')' if im.defect_type else ''}, score {im.score:.4g}", fontsize=8,
                 weight="bold")
        panels = _panels(inp, i)
        for k, (name, arr) in enumerate(panels):
            ax = fig.add_axes((0.06 + k * 0.3, top - h + 0.02, 0.28, h - 0.04))
            ax.axis("off")
            if arr is None:
                ax.text(0.5, 0.5, f"{name}: not available", ha="center", va="center")
            else:
                ax.imshow(arr)
                ax.set_title(name, fontsize=7)
    return fig


def _history(inp: ReportInput) -> "object":
    fig = _page("Threshold history (newest first)", inp)
    _table(fig, (0.04, 0.1, 0.92, 0.82), history_lines(inp.history)[:45],
           header=["id", "image", "pixel", "review band", "rule", "set by", "at", "note"],
           widths=[0.06, 0.11, 0.08, 0.14, 0.1, 0.1, 0.17, 0.24])
    return fig
