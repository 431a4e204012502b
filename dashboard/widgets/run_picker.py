"""Choosing a run (and which of its evaluations) on Results / Thresholds / Review.

The chosen run is shared between these pages through `SELECTED_RUN` (dashboard.state; a plain
session key, not a widget key, so it survives page switches); another page can preselect a run
by setting it before `st.switch_page`, or link with `?run=ID`. `COMPARE_KEY` likewise
preselects the second run on Results (consumed once).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
from sqlalchemy.orm import Session

from dashboard.state import SELECTED_RUN, sessions
from dashboard.widgets.results_data import EvalData, load_evaluation
from db import datasets as dq
from db import runs as rq
from db.models import JobStatus
from engine.config import score_rule

RUN_KEY = SELECTED_RUN  # int: the run Results / Thresholds / Review show
COMPARE_KEY = "qa_compare_run_id"  # int | None: the second run on Results


@dataclass(frozen=True)
class RunChoice:
    id: int
    label: str
    model: str
    preset: str
    dataset: str
    dataset_id: int
    parent_run_id: int | None
    evaluations: tuple[tuple[int, str], ...]  # (evaluation id, label), newest first
    score_rule: str = ""  # how the image score comes from the heatmap (engine.config.score_rule)


def run_choices(session: Session) -> list[RunChoice]:
    """Runs with at least one succeeded evaluation, newest first."""
    names = {d.id: d.name for d in dq.dataset_counts(session)}
    out: list[RunChoice] = []
    for run in rq.list_runs(session):
        evs = [e for e in rq.list_evaluations(session, run.id) if e.status == JobStatus.SUCCEEDED]
        if not evs:
            continue
        auroc = evs[0].metrics.get("image_auroc")
        n_test = int(evs[0].metrics.get("n_ok", 0)) + int(evs[0].metrics.get("n_nok", 0))
        # runs are tested on the test split of their time: say on how many images, compare in Results
        head = f"AUROC {auroc:.3f} on {n_test} images" if isinstance(auroc, float) else "no AUROC"
        parent = f" · retrain of #{run.parent_run_id}" if run.parent_run_id else ""
        label = (f"#{run.id} · {run.model.upper()} ({run.preset}) · {names.get(run.dataset_id, '?')}"
                 f" · {head} · {run.created_at:%Y-%m-%d %H:%M}{parent}")
        ev_labels = tuple(
            (e.id, f"evaluation #{e.id} · {e.finished_at or e.created_at:%Y-%m-%d %H:%M}"
                   f" · {int(e.metrics.get('n_ok', 0)) + int(e.metrics.get('n_nok', 0))} test images"
                   + (" (latest)" if i == 0 else ""))
            for i, e in enumerate(evs))
        out.append(RunChoice(run.id, label, run.model, run.preset, names.get(run.dataset_id, "?"),
                             run.dataset_id, run.parent_run_id, ev_labels, score_rule(run.config)))
    return out


def _select(label: str, options: list[int], labels: dict[int, str], *, key: str,
            preferred: int | None, help: str | None = None) -> int | None:
    if not options:
        return None
    if st.session_state.get(key) not in options:
        st.session_state[key] = preferred if preferred in options else options[0]
    return st.selectbox(label, options, format_func=lambda i: labels.get(i, str(i)), key=key,
                        help=help)


def run_picker_ui(choices: list[RunChoice], *, key: str, label: str = "Run") -> RunChoice | None:
    """The main run selectbox; its choice is remembered under RUN_KEY across pages (another
    page may set RUN_KEY before switching here, or link with ?run=ID, to preselect a run)."""
    opts = [c.id for c in choices]
    raw = st.query_params.get("run", "")
    if raw.isdigit() and int(raw) in opts:  # a deep link: follow it once
        st.session_state[RUN_KEY] = int(raw)
        del st.query_params["run"]
    wanted = st.session_state.get(RUN_KEY)
    if wanted in opts and st.session_state.get(key) != wanted and st.session_state.get(f"{key}_seen") != wanted:
        st.session_state[key] = wanted  # a request from another page (or the first visit)
    chosen = _select(label, opts, {c.id: c.label for c in choices}, key=key, preferred=wanted)
    st.session_state[RUN_KEY] = st.session_state[f"{key}_seen"] = chosen
    return next((c for c in choices if c.id == chosen), None)


def compare_picker_ui(choices: list[RunChoice], run: RunChoice, *, key: str) -> RunChoice | None:
    """The second run on Results ("none" by default, the parent for a retrained run).

    COMPARE_KEY, when another page set it, preselects the run once (e.g. after a retrain).
    """
    opts = [0] + [c.id for c in choices if c.id != run.id]
    labels = {0: "— none —"} | {c.id: c.label for c in choices}
    wkey = f"{key}_{run.id}"
    wanted = st.session_state.pop(COMPARE_KEY, None)
    if wanted in opts:
        st.session_state[wkey] = wanted
    preferred = run.parent_run_id if run.parent_run_id in opts else 0
    chosen = _select("Compare with", opts, labels, key=wkey, preferred=preferred,
                     help="A second run: metrics recomputed on the test images both runs scored, "
                          "heatmaps side by side.")
    return next((c for c in choices if c.id == chosen), None)


def evaluation_picker_ui(choice: RunChoice, *, key: str) -> int | None:
    """Which evaluation of the run (latest by default); each evaluation is its own record."""
    labels = dict(choice.evaluations)
    opts = [e for e, _ in choice.evaluations]
    return _select("Evaluation", opts, labels, key=f"{key}_{choice.id}", preferred=opts[0] if opts else None,
                   help="Each evaluation of a run is kept; the latest is shown by default.")


def run_and_evaluation_ui(choices: list[RunChoice], *, key: str) -> tuple[RunChoice, int | None]:
    """The run and its evaluation side by side (Results, Thresholds, Review)."""
    c1, c2 = st.columns([3, 2])
    with c1:
        run = run_picker_ui(choices, key=f"{key}_run")
    with c2:
        eval_id = evaluation_picker_ui(run, key=f"{key}_eval")
    return run, eval_id


def evaluated_run_ui(*, key: str, empty: str) -> tuple[list[RunChoice], RunChoice, EvalData]:
    """The top of Results, Thresholds and Review: the run and evaluation pickers and the chosen
    evaluation's data; a message and the end of the page when there is nothing to show."""
    with sessions().begin() as s:
        choices = run_choices(s)
    if not choices:
        st.info(empty, icon=":material/info:")
        st.page_link("dashboard/pages/train.py", label="Train a model", icon=":material/model_training:")
        st.stop()
    run, eval_id = run_and_evaluation_ui(choices, key=key)
    data = load_evaluation(eval_id) if eval_id is not None else None
    if data is None or data.n == 0:
        st.warning(f"Evaluation {eval_id} has no scores yet.")
        st.stop()
    return choices, run, data
