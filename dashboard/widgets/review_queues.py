"""The Review page's queues: which images wait for a person's decision, one queue per source.

Each `Queue` picks images of the run's evaluation by their outcome at the active threshold:
false positives, false negatives, and the images in the review band (REVIEW: the rule hands
them to a person). Another source (e.g. images a line sent back) adds a `Queue` with its own
`render`, called instead of the gallery + outcome buttons; `QUEUES` is the order on the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dashboard.widgets.results_data import ActiveThreshold, EvalData


@dataclass(frozen=True)
class QueueContext:
    """What a queue may look at: the run, its evaluation and the outcomes at the active threshold."""

    run_id: int
    data: EvalData
    thr: ActiveThreshold
    outcomes: np.ndarray  # (N,) "TP"/"FP"/"FN"/"TN"/"REVIEW"


@dataclass(frozen=True)
class Queue:
    key: str  # radio value and widget-key part
    title: str  # e.g. "False positives — OK parts rejected"
    question: str  # shown above the outcome buttons
    pick: Callable[[QueueContext], np.ndarray]  # indices into ctx.data, highest score first
    empty: str  # why the queue can be empty
    render: Callable[[QueueContext], None] | None = None  # a queue of another source draws itself


def _by_outcome(outcome: str) -> Callable[[QueueContext], np.ndarray]:
    return lambda ctx: np.flatnonzero(ctx.outcomes == outcome)


QUEUES: list[Queue] = [
    Queue("FP", "False positives — OK parts rejected", "The run rejected this OK part. Is it really OK?",
          _by_outcome("FP"), "No OK test image is rejected at the active threshold."),
    Queue("FN", "False negatives — defects passed",
          "The run passed this NOK part (an escape). Is it really defective?",
          _by_outcome("FN"), "No NOK test image passes at the active threshold."),
    Queue("REVIEW", "In the review band — a person decides",
          "This part scored inside the review band: the line would hand it to a person. What is it?",
          _by_outcome("REVIEW"), "No image is in the review band, or the active threshold has no band "
          "(switch it on on the Thresholds page)."),
]


def _line(ctx: QueueContext) -> None:
    from dashboard.widgets.review_line import line_queue_ui

    line_queue_ui(ctx.run_id)


QUEUES.append(Queue("LINE", "From the line — REVIEW / NOK parts", "The line sent this part back. What is it?",
                    lambda ctx: np.zeros(0, np.int64), "No part from the line waits for review.", render=_line))


def queue(key: str) -> Queue:
    return next(q for q in QUEUES if q.key == key)


def outcome_set(outcome: str, nok: bool) -> str:
    """Which outcome buttons an image gets: those of a false positive (evaluated OK) or of a false
    negative (evaluated NOK); an image in the band is one or the other by its label."""
    if outcome in ("FP", "FN"):
        return outcome
    return "FN" if nok else "FP"
