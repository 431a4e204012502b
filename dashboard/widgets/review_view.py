"""Review page widgets: the outcome buttons of one image, retrain, and the hand-over to Annotate."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard.state import ANNOTATE_IMAGE, ANNOTATE_QUEUE, SELECTED_RUN, actor, can, role_note, sessions
from dashboard.widgets.results_data import EvalData
from dashboard.widgets.review_actions import OPENS_ANNOTATE, Mark, children, record_outcome, retrain
from dashboard.widgets.review_retrain import retrain_preview_ui
from dashboard.widgets.run_picker import COMPARE_KEY
from db.auth import Permission
from db.errors import PermissionDenied, ValidationError
from engine.errors import UserError

FLASH = "review_flash"  # [(kind, message)] shown once on the next run (as toasts)
RETRAIN_FLASH = "review_retrain_flash"  # (kind, message) of the last retrain, shown by its button
GOTO_ANNOTATE = "review_goto_annotate"  # (image id, queue ids) set by a callback, followed by the page
ANNOTATE_PAGE = "dashboard/pages/annotate.py"
RESULTS_PAGE = "dashboard/pages/results.py"
GOTO_RESULTS = "review_goto_results"
PREVIEW = "review_retrain_preview_{}"  # the retrain's settings are shown (checked before launching)


def flash(kind: str, message: str) -> None:
    st.session_state.setdefault(FLASH, []).append((kind, message))


def show_flash() -> None:
    """Outcome messages as toasts: the reviewer is looking at the image, not the page top."""
    icons = {"success": ":material/check_circle:", "error": ":material/error:"}
    for kind, message in st.session_state.pop(FLASH, []):
        st.toast(message, icon=icons.get(kind))


def follow_requests() -> None:
    """Page switches asked for by callbacks (st.switch_page belongs in the script, not a callback)."""
    goto = st.session_state.pop(GOTO_ANNOTATE, None)
    if goto:
        image_id, queue = goto
        st.session_state[ANNOTATE_IMAGE] = int(image_id)
        st.session_state[ANNOTATE_QUEUE] = [int(i) for i in queue]
        st.switch_page(ANNOTATE_PAGE)
    res = st.session_state.pop(GOTO_RESULTS, None)
    if res:
        st.session_state[SELECTED_RUN], st.session_state[COMPARE_KEY] = res
        st.switch_page(RESULTS_PAGE)


def _on_outcome(run_id: int, evaluation_id: int, image_id: int, outcome: str, order: list[int],
                sel_key: str) -> None:
    move = bool(st.session_state.get(f"review_move_{image_id}"))
    note = (st.session_state.get(f"review_note_{image_id}") or "").strip() or None
    try:
        with sessions().begin() as s:
            msg = record_outcome(s, run_id=run_id, evaluation_id=evaluation_id, image_id=image_id,
                                 outcome=outcome, actor=actor(), move_to_train=move, note=note)
    except (PermissionDenied, ValidationError) as e:
        flash("error", str(e))
        return
    flash("success", msg)
    if outcome in OPENS_ANNOTATE:
        st.session_state[GOTO_ANNOTATE] = (image_id, order)
        return
    pos = order.index(image_id) if image_id in order else -1
    if pos + 1 < len(order):
        st.session_state[sel_key] = order[pos + 1]  # on to the next image of the list


def actions_ui(data: EvalData, i: int, outcome: str, *, run_id: int, order: list[int], sel_key: str,
               now: tuple[str, str | None] | None, mark: Mark | None, question: str | None = None) -> None:
    """Outcome buttons of a false positive ("FP": is it really OK?) or a false negative ("FN": is it
    really defective?); an image of the review band gets the set of its label. Others: nothing to do."""
    image_id = int(data.image_ids[i])
    label_now = f"{now[0].upper()}, split {now[1] or 'none'}" if now else "?"
    evaluated = "NOK" if data.y_nok[i] else "OK"
    st.markdown(f"Label when evaluated **{evaluated}** · now **{label_now}** · score **{data.scores[i]:.4g}**"
                + (f" · reviewed: **{mark.text()}** by {mark.reviewer} at {mark.at}" if mark else ""))
    if outcome not in ("FP", "FN"):
        st.caption("Only false positives and false negatives need a review outcome.")
        return
    args = (run_id, data.evaluation_id, image_id)
    off = not can(Permission.ANNOTATE)
    role_note(Permission.ANNOTATE, "record review outcomes (annotator, engineer or admin)")
    st.caption(question or ("The run rejected this OK part. Is it really OK?" if outcome == "FP" else
                            "The run passed this NOK part (an escape). Is it really defective?"))
    c1, c2, c3 = st.columns([1, 1, 1.2], vertical_alignment="bottom")
    if outcome == "FP":
        c1.button("Confirmed OK", key=f"review_ok_{image_id}", disabled=off, type="primary", icon=":material/check:",
                  on_click=_on_outcome, args=(*args, "confirmed_ok", order, sel_key), width="stretch")
        c2.button("Actually defective", key=f"review_def_{image_id}", disabled=off, icon=":material/brush:",
                  on_click=_on_outcome, args=(*args, "defective", order, sel_key), width="stretch",
                  help="Relabel NOK and open Annotate to draw its defect.")
    else:
        c1.button("Confirmed defect", key=f"review_cdef_{image_id}", disabled=off, type="primary", icon=":material/brush:",
                  on_click=_on_outcome, args=(*args, "confirmed_defect", order, sel_key), width="stretch",
                  help="Keep it NOK and open Annotate to check or draw its mask.")
        c2.button("Not a defect", key=f"review_notdef_{image_id}", disabled=off, icon=":material/check:",
                  on_click=_on_outcome, args=(*args, "not_defect", order, sel_key), width="stretch",
                  help="Relabel it OK.")
    c3.checkbox("…and move it to training", key=f"review_move_{image_id}",
                help="With an OK outcome: split train, label OK — the retrained model learns it as normal.")
    st.text_input("Note (optional)", key=f"review_note_{image_id}", placeholder="what you saw")


def _on_retrain(run_id: int, extra: dict[str, Any] | None = None) -> None:
    try:
        with sessions().begin() as s:
            job_id, new_run = retrain(s, run_id, actor(), extra)
    except (UserError, PermissionDenied) as e:
        st.session_state[RETRAIN_FLASH] = ("error", f"Could not start the retrain: {e}")
        return
    st.session_state[PREVIEW.format(run_id)] = False
    st.session_state[RETRAIN_FLASH] = ("success", f"Queued training job #{job_id}: run #{new_run}, retrained from run #{run_id} with the "
                     "corrected labels. Follow it on Jobs; when it has finished, Results compares the two "
                     "on their common test images.")


def _toggle_preview(run_id: int) -> None:
    key = PREVIEW.format(run_id)
    st.session_state[key] = not st.session_state.get(key)


def _on_compare(child: int, parent: int) -> None:
    st.session_state[GOTO_RESULTS] = (child, parent)


def retrain_ui(run_id: int, n_reviews: int) -> None:
    """Launch the retrain (same model, preset and config) and list earlier retrains of this run."""
    st.markdown(f"{n_reviews} review outcome(s) recorded for this run. Retraining uses the dataset "
                "as it is now: corrected labels, images moved to training, new masks.")
    st.button("Retrain with corrections…", type="primary", icon=":material/model_training:",
              key=f"review_retrain_{run_id}", on_click=_toggle_preview, args=(run_id,),
              disabled=not can(Permission.JOBS),
              help="Shows the new run's settings, data and threshold policy; nothing starts before you launch it.")
    if st.session_state.get(PREVIEW.format(run_id)):
        extra = retrain_preview_ui(run_id)
        st.button("Launch the retrain", type="primary", icon=":material/play_arrow:", key=f"review_retrain_go_{run_id}",
                  on_click=_on_retrain, args=(run_id, extra), disabled=not can(Permission.JOBS))
    role_note(Permission.JOBS, "launch a retrain (engineer or admin)")
    done = st.session_state.pop(RETRAIN_FLASH, None)
    if done:
        getattr(st, done[0])(done[1])
    with sessions().begin() as s:
        kids = children(s, run_id)
    for c in kids:
        col1, col2 = st.columns([3, 1], vertical_alignment="center")
        col1.markdown(f"Run **#{c.id}** retrained from this one — status **{c.status}**")
        if c.evaluated:
            col2.button("Compare in Results", key=f"review_cmp_{c.id}", on_click=_on_compare,
                        args=(c.id, run_id), width="stretch")
        else:
            col2.page_link("dashboard/pages/jobs.py", label="Follow on Jobs", icon=":material/pending_actions:")
