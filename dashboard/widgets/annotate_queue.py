"""Which image Annotate shows: requests from other pages, the queue, prev/next."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboard.state import ANNOTATE_IMAGE, ANNOTATE_QUEUE, SELECTED_RUN, sessions
from dashboard.widgets import annotate_state as S
from dashboard.widgets.dataset_picker import dataset_picker_ui
from db import datasets as dq
from db import masks as mq
from db import runs as rq
from db.errors import NotFoundError
from db.models import Image

QUEUE = "_annotate_queue"  # snapshot {"spec": tuple, "ids": [int]}: stable while you work
GIVEN = "given"  # the list another page handed over in ANNOTATE_QUEUE
GIVEN_IDS = "_annotate_given"
DATASET_KEY = "annotate_dataset"
KIND_KEY = "annotate_queue_kind"
RUN_KEY = "annotate_run"
PICK_KEY = "annotate_pick"
_PICK_DRAWN = "_annotate_pick_drawn"  # (image shown, {label: image id}) of the picker as last drawn
_LAST_DS = "_annotate_last_dataset"
_SHOWN = "_annotate_url_image"  # the ?image= value this page last wrote


@dataclass(frozen=True)
class Position:
    dataset_id: int
    image_id: int | None
    ids: list[int]  # the queue


def take_requests() -> None:
    """Follow another page's request (session_state keys or ?image=ID&queue=KIND&run=ID)."""
    image = st.session_state.pop(ANNOTATE_IMAGE, None)
    given = st.session_state.pop(ANNOTATE_QUEUE, None)
    qp = st.query_params
    if given:
        st.session_state[GIVEN_IDS] = [int(i) for i in given]
        st.session_state[KIND_KEY] = GIVEN
    elif qp.get("queue") in mq.QUEUES:
        st.session_state[KIND_KEY] = qp["queue"]
        if (run := qp.get("run", "")).isdigit():
            st.session_state[SELECTED_RUN] = int(run)
    raw = qp.get("image", "")
    if image is None and raw.isdigit() and raw != st.session_state.get(_SHOWN):  # a link, not our echo
        image = int(raw)
    if image is None:
        return
    with sessions()() as s:
        try:
            img = dq.get_image(s, int(image))
        except NotFoundError:
            S.flash("error", f"Image {image} does not exist (it may have been deleted).")
            return
        st.session_state[DATASET_KEY] = img.dataset.name
        st.session_state[_LAST_DS] = img.dataset_id
    st.session_state[S.CURRENT] = int(image)


def show_in_url(image_id: int) -> None:
    """Mirror the open image in ?image=ID (a link to it reopens it)."""
    st.session_state[_SHOWN] = str(image_id)
    if st.query_params.get("image") != str(image_id):
        st.query_params["image"] = str(image_id)


def go(image_id: int) -> None:
    """Open another image (button callback)."""
    st.session_state[S.CURRENT] = image_id


def _pick() -> None:
    """The picker's callback. Its value is an image id, or its label when the browser echoes a
    label the options do not hold (a key pressed while a rerun was under way); an echo of the image
    already shown is no pick, so it cannot undo a Prev/Next of the same rerun."""
    value = st.session_state[PICK_KEY]
    shown, ids = st.session_state.get(_PICK_DRAWN, (None, {}))
    image_id = value if isinstance(value, int) else ids.get(str(value))
    if image_id is not None and image_id != shown:
        go(int(image_id))


def _queue_ids(dataset_id: int, kind: str, run_id: int | None, refresh: bool) -> list[int]:
    spec = (dataset_id, kind, run_id, tuple(st.session_state.get(GIVEN_IDS, ())) if kind == GIVEN else ())
    snap = st.session_state.get(QUEUE)
    if refresh or snap is None or snap["spec"] != spec:
        if kind == GIVEN:
            ids = list(st.session_state.get(GIVEN_IDS, []))
        else:
            with sessions()() as s:
                ids = mq.annotation_queue(s, dataset_id, kind, run_id)
        snap = st.session_state[QUEUE] = {"spec": spec, "ids": ids}
    return list(snap["ids"])


def queue_ui() -> Position | None:
    """Dataset, queue and run pickers; returns the dataset and the image to show."""
    with sessions()() as s:
        names = [c.name for c in dq.dataset_counts(s)]
    if not names:
        st.info("No datasets yet: import one on the **Datasets** page (or run `prefilter-qa demo`).")
        return None
    kinds = {**mq.QUEUES, **({GIVEN: "Images handed over"} if st.session_state.get(GIVEN_IDS) else {})}
    box = st.sidebar.container(border=True)
    box.markdown("**Annotation queue**")
    with box:
        name = dataset_picker_ui(names, key=DATASET_KEY)
    with sessions()() as s:
        ds = dq.get_dataset(s, name or names[0])
        runs = [(r.id, f"Run {r.id} · {r.model} · {r.status}") for r in rq.list_runs(s, dataset_id=ds.id)]
        if st.session_state.get(KIND_KEY) not in kinds:  # first visit: work first, else browse NOK
            todo = mq.annotation_queue(s, ds.id, "nok_unmasked")
            st.session_state[KIND_KEY] = "nok_unmasked" if todo else "nok"
    if st.session_state.get(_LAST_DS) != ds.id:  # the user picked another dataset
        st.session_state[_LAST_DS] = ds.id
        st.session_state.pop(S.CURRENT, None)
    kind = box.selectbox("Queue", list(kinds), format_func=kinds.__getitem__, key=KIND_KEY,
                         help="Prev/next walk through this list. It is kept as it was when you chose it "
                              "(saving does not reshuffle it); refresh it with the button below.")
    run_id = None
    if kind == "false_negatives":
        run_ids = [r for r, _ in runs]
        if not run_ids:
            box.caption("No runs on this dataset yet.")
        else:
            if st.session_state.get(RUN_KEY) not in run_ids:
                st.session_state[RUN_KEY] = st.session_state.get(SELECTED_RUN) if st.session_state.get(SELECTED_RUN) in run_ids else run_ids[0]
            run_id = box.selectbox("Run", run_ids, format_func=dict(runs).__getitem__, key=RUN_KEY,
                                   help="NOK images this run scored below its active threshold "
                                        "(latest evaluation), worst miss first.")
    refresh = box.button("Refresh queue", icon=":material/refresh:", key="annotate_refresh")
    ids = _queue_ids(ds.id, kind, run_id, refresh)
    current = st.session_state.get(S.CURRENT)
    if current is not None:
        with sessions()() as s:
            img = s.get(Image, int(current))
            if img is None or img.dataset_id != ds.id:  # deleted, or of another dataset
                current = None
                st.session_state.pop(S.CURRENT, None)
    _drafts_ui(box, current)
    if current is None and ids:
        current = st.session_state[S.CURRENT] = ids[0]
    if current is None:
        if kind == "false_negatives" and run_id is not None:
            st.success("This run has no false negatives at its active threshold (or no evaluation yet).")
        else:
            st.success(f"The queue “{kinds[kind]}” is empty. Choose another queue above.")
        return Position(ds.id, None, ids)
    return Position(ds.id, int(current), ids)


def _drafts_ui(box: DeltaGenerator, current: int | None) -> None:
    """Images with unsaved work in this session (a reminder, with a way back to them)."""
    others = [i for i in S.drafts() if i != current]
    if not others:
        return
    with sessions()() as s:
        names = {i.id: i.rel_path for i in dq.images_by_ids(s, others[:5])}
    box.caption(f":orange[:material/edit: Unsaved drafts on {len(others)} other image(s):]")
    for image_id in others[:5]:
        box.button(names.get(image_id, f"image {image_id}"), key=f"annotate_draft_{image_id}", type="tertiary",
                   on_click=_request, args=(image_id,), icon=":material/edit:")


def _request(image_id: int) -> None:
    """Open an image wherever it is (switches dataset like a request from another page)."""
    st.session_state[ANNOTATE_IMAGE] = image_id


PREV_KEY, NEXT_KEY = "D", "F"  # previous / next image, as in CVAT


def stepper_ui(pos: Position) -> None:
    """◀ Prev · image picker · Next ▶ over the queue."""
    assert pos.image_id is not None
    ids, cur = pos.ids, pos.image_id
    in_queue = cur in ids
    idx = ids.index(cur) if in_queue else next((k for k, i in enumerate(ids) if i > cur), len(ids))
    prev_id = ids[idx - 1] if idx > 0 else None
    next_id = ids[idx + 1] if in_queue and idx + 1 < len(ids) else (ids[idx] if not in_queue and idx < len(ids) else None)
    options = ids if in_queue else [cur, *ids]
    with sessions()() as s:
        names = {i.id: f"{i.rel_path} · {i.label.upper()}" for i in dq.images_by_ids(s, options)}
    labels = {i: names.get(i, f"image {i}") + ("" if i in ids else "  (not in this queue)") for i in options}
    st.session_state[_PICK_DRAWN] = (cur, {label: i for i, label in labels.items()})
    st.session_state[PICK_KEY] = cur
    c1, c2, c3, c4 = st.columns([1.6, 5, 1.6, 1.4], vertical_alignment="bottom")  # room for the key hints
    c1.button(":material/arrow_back: Prev", disabled=prev_id is None, on_click=go, args=(prev_id,),
              key="annotate_prev", width="stretch", shortcut=PREV_KEY, help=f"Previous image ({PREV_KEY})")
    c2.selectbox("Image", options, key=PICK_KEY, on_change=_pick, label_visibility="collapsed",
                 format_func=lambda i: labels.get(i, f"image {i}"))
    c3.button("Next :material/arrow_forward:", disabled=next_id is None, on_click=go, args=(next_id,),
              key="annotate_next", width="stretch", shortcut=NEXT_KEY, help=f"Next image ({NEXT_KEY})")
    c4.markdown(f"**{idx + 1} / {len(ids)}**" if in_queue else f"not in queue ({len(ids)} images)")
