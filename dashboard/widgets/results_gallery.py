"""Test images of an evaluation sorted by score, filtered by outcome at the active threshold
(TP / FP / FN / TN / REVIEW) and defect type; one of them selected for the detail view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from dashboard.state import workspace
from dashboard.widgets.gallery import GalleryItem, gallery_ui, pager_ui
from dashboard.widgets.heatmap_view import heat_thumbnail
from dashboard.widgets.results_data import ActiveThreshold, EvalData
from engine.evaluation import decisions as D

OUTCOME_COLORS = {"TP": "blue", "TN": "green", "FP": "orange", "FN": "red", "REVIEW": "yellow"}
OUTCOME_HELP = {"TP": "defect caught", "TN": "OK passed", "FP": "OK part rejected (false reject)",
                "FN": "defect missed (escape)", "REVIEW": "in the review band"}
ALL = "All"
PER_PAGE = 18  # three rows: the detail below stays close


def outcome_array(data: EvalData, thr: ActiveThreshold | None) -> np.ndarray:
    """Outcome of every image at the active threshold ("–" everywhere without a threshold)."""
    if thr is None:
        return np.full(data.n, "–", dtype=object)
    return D.outcomes(data.y_nok, data.scores, thr.image, thr.band)


SORTS = ("highest score first", "lowest score first")


def filters_ui(data: EvalData, outc: np.ndarray, *, key: str,
               choices: tuple[str, ...] = (ALL, *D.OUTCOMES)) -> tuple[str, str, bool, bool]:
    """(outcome, defect type or ALL, heatmap thumbnails?, lowest score first?)."""
    counts = {o: int(np.sum(outc == o)) for o in D.OUTCOMES} | {ALL: data.n}
    c1, c2, c4, c3 = st.columns([4, 1.6, 1.6, 1.1], vertical_alignment="bottom")
    outcome = c1.radio("Outcome at the active threshold", choices, horizontal=True, key=f"{key}_outcome",
                       format_func=lambda o: f"{o} ({counts.get(o, 0)})",
                       help=" · ".join(f"{o}: {h}" for o, h in OUTCOME_HELP.items()),
                       on_change=_reset_page, args=(key,))
    types = sorted({t or "unspecified" for t, y in zip(data.defect_types, data.y_nok) if y})
    defect = c2.selectbox("Defect type", [ALL, *types], key=f"{key}_defect",
                          on_change=_reset_page, args=(key,))
    sort = c4.selectbox("Order", SORTS, key=f"{key}_sort", on_change=_reset_page, args=(key,),
                        help="Lowest first shows the worst misses (FN) and the safest passes first.")
    heat = c3.toggle("Heatmaps", value=True, key=f"{key}_heat", help="Blend each image's heatmap into its tile.")
    return outcome, defect, heat, sort == SORTS[1]


def _reset_page(key: str) -> None:
    """New filters: back to page 1, and the detail opens the first image of the new list."""
    st.session_state[f"{key}_page"] = 0
    for k in [k for k in st.session_state if str(k).startswith(f"{key}_selected_")]:
        del st.session_state[k]


def filtered(data: EvalData, outc: np.ndarray, outcome: str, defect: str, lowest_first: bool = False
             ) -> np.ndarray:
    """Indices (highest score first, or lowest first) that pass the filters."""
    keep = np.ones(data.n, dtype=bool) if outcome == ALL else (outc == outcome)
    if defect != ALL:
        types = np.array([t or "unspecified" for t in data.defect_types], dtype=object)
        keep &= data.y_nok & (types == defect)
    idx = np.flatnonzero(keep)
    return idx[::-1] if lowest_first else idx


def selected_key(key: str, data: EvalData) -> str:
    return f"{key}_selected_{data.evaluation_id}"


def gallery_section_ui(data: EvalData, outc: np.ndarray, idx: np.ndarray, *, key: str, heat: bool,
                       marks: dict[int, str] | None = None) -> int | None:
    """Paged grid of `idx`; returns the index (into data) of the selected image.

    The selection survives reruns; it defaults to the first image shown (the worst one).
    `marks` adds a line per image id (e.g. a stored review outcome).
    """
    sel_key = selected_key(key, data)
    if not idx.size:
        st.info("No image matches these filters.", icon=":material/image_not_supported:")
        return None
    offset = pager_ui(int(idx.size), key=f"{key}_page", per_page=PER_PAGE) if idx.size > PER_PAGE else 0
    page = idx[offset:offset + PER_PAGE]
    selected = st.session_state.get(sel_key)
    if selected not in {int(data.image_ids[i]) for i in idx}:
        selected = int(data.image_ids[page[0]])
        st.session_state[sel_key] = selected
    marks = marks or {}
    items = []
    for i in page:
        img_id = int(data.image_ids[i])
        o = str(outc[i])
        kind = (data.defect_types[i] or "NOK") if data.y_nok[i] else "OK"
        items.append(GalleryItem(
            id=img_id, path=Path(data.paths[i]), sha256=data.sha256[i],
            caption=Path(data.names[i]).name, badge=f"{o} · {data.scores[i]:.4g}",
            badge_color=OUTCOME_COLORS.get(o, "gray"),
            detail=kind + (f" · {marks[img_id]}" if img_id in marks else ""),
            thumbnail=heat_thumbnail(data, int(i)) if heat else None))

    def choose(image_id: int) -> None:
        st.session_state[sel_key] = image_id

    gallery_ui(items, key=f"{key}_grid_{data.evaluation_id}", cache_dir=workspace().cache_dir,
               selected=selected, on_click=choose)
    return data.index_of.get(int(st.session_state[sel_key]))
