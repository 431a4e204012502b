"""The Review page's queue of parts the production line sent back (REVIEW / NOK verdicts brought in
on the Line page or with `prefilter-qa import-line`): look at each, say what it is; the decision
puts it into the dataset for the next training."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.state import actor, can, sessions, workspace
from dashboard.widgets.gallery import GalleryItem, gallery_ui
from dashboard.widgets.image_detail import display_png
from db.auth import Permission
from db.errors import PermissionDenied, ValidationError
from engine.errors import UserError
from engine.services.line import LineItem, decide_line_image, line_queue

VERDICT_BADGE = {"REVIEW": "orange", "NOK": "red"}
DECIDED_TEXT = {"confirmed_ok": "OK part", "defective": "defect"}


def _decide(run_id: int, item: LineItem, defect: bool) -> None:
    """Button callback: the form's values are read from the session (args would be the last render's)."""
    state, i = st.session_state, item.image_id
    try:
        with sessions().begin() as s:
            msg = decide_line_image(s, actor=actor(), run_id=run_id, image_id=i, defect=defect,
                                    defect_type=(state.get(f"review_line_type_{i}") or "").strip() or None,
                                    to_train=bool(state.get(f"review_line_train_{i}", True)),
                                    note=(state.get(f"review_line_note_{i}") or "").strip() or None)
    except (UserError, PermissionDenied, ValidationError) as exc:
        st.session_state["review_line_msg"] = ("error", str(exc))
        return
    st.session_state["review_line_msg"] = ("success", msg)


def line_queue_ui(run_id: int) -> None:
    """The run's line images as a grid (waiting first), the chosen one large with its line verdict and
    the two decisions."""
    with sessions().begin() as s:
        items = line_queue(s, run_id)
    if (msg := st.session_state.pop("review_line_msg", None)) is not None:
        (st.success if msg[0] == "success" else st.error)(msg[1])
    if not items:
        st.info("No part from the line waits for review: bring a results file in on the Line page.",
                icon=":material/inbox:")
        st.page_link("dashboard/pages/line.py", label="Line", icon=":material/precision_manufacturing:")
        return
    hide = st.toggle("Hide decided", value=True, key="review_line_hide")
    shown = [i for i in items if not (hide and i.decided)]
    waiting = sum(1 for i in items if not i.decided)
    st.caption(f"{len(items)} parts came back from the line, {waiting} wait for a decision.")
    by_id = {i.image_id: i for i in shown}
    picked = st.session_state.get("review_line_pick")
    gallery_ui([GalleryItem(id=i.image_id, path=Path(i.path), sha256=i.sha256, caption=i.name[:24],
                            badge=f"{i.verdict} {i.score:.3g}" if i.score is not None else i.verdict,
                            badge_color=VERDICT_BADGE.get(i.verdict, "gray"),
                            detail=DECIDED_TEXT.get(i.decided or "", "waiting")) for i in shown],
               key="review_line", cache_dir=workspace().cache_dir, selected=picked,
               on_click=lambda i: st.session_state.__setitem__("review_line_pick", i))
    item = by_id.get(picked) if picked in by_id else (shown[0] if shown else None)
    if item is None:
        return
    st.divider()
    st.subheader(item.name)
    st.markdown(f"Line verdict **{item.verdict}** · score {item.score if item.score is None else f'{item.score:.4g}'}"
                f" · {item.scored_at:%Y-%m-%d %H:%M} · now labelled **{item.label.upper()}**")
    png, problem = display_png(item.path, item.sha256, None, 0, 0, False)
    if problem:
        st.error(problem, icon=":material/broken_image:")
    else:
        st.image(png, width="stretch")
    allowed = can(Permission.ANNOTATE)
    c1, c2, c3 = st.columns([2, 2, 3], vertical_alignment="bottom")
    c1.checkbox("OK parts join the training images", value=True, key=f"review_line_train_{item.image_id}")
    c2.text_input("Defect type", key=f"review_line_type_{item.image_id}", placeholder="e.g. scratch")
    c3.text_input("Note", key=f"review_line_note_{item.image_id}")
    b1, b2 = st.columns(2)
    b1.button("It is an OK part", icon=":material/check_circle:", width="stretch", disabled=not allowed,
              key=f"review_line_ok_{item.image_id}", on_click=_decide, args=(run_id, item, False))
    b2.button("It is a defect", icon=":material/report:", width="stretch", disabled=not allowed, type="primary",
              key=f"review_line_nok_{item.image_id}", on_click=_decide, args=(run_id, item, True))
