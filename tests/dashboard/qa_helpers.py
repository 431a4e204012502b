"""Shared by the Results / Thresholds / Review AppTests: a private copy of the trained workspace
and the run's evaluation arrays read straight from the database (the expected values)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from db import decisions as tq
from db import runs as rq
from db.auth import system_actor
from tests.conftest import TrainedWorkspace, copy_workspace
from tests.dashboard.page_helpers import sessions


@dataclass(frozen=True)
class Copy:
    home: Path
    ae_run: int
    dfr_run: int


@pytest.fixture
def trained_copy(home: Path, trained_workspace: TrainedWorkspace) -> Copy:
    """`trained_workspace` copied into this test's workspace (PREFILTER_QA_HOME points at it)."""
    copy_workspace(trained_workspace.home, home)
    return Copy(home, trained_workspace.ae_run, trained_workspace.dfr_run)


@dataclass(frozen=True)
class Scores:
    evaluation_id: int
    image_ids: np.ndarray
    y_nok: np.ndarray
    scores: np.ndarray
    metrics: dict


def scores_of(run_id: int) -> Scores:
    """The latest evaluation of a run, highest score first (the pages' order)."""
    with sessions().begin() as s:
        ev = rq.latest_evaluation(s, run_id)
        assert ev is not None
        rows = rq.evaluation_scores(s, ev.id)
        return Scores(ev.id, np.array([r.image_id for r in rows]), np.array([r.label == "nok" for r in rows]),
                      np.array([r.score for r in rows], dtype=np.float64), dict(ev.metrics))


def set_threshold(run_id: int, value: float, by: str = "someone", band: tuple[float, float] | None = None) -> int:
    """Save a threshold directly (as another user or a test setup would); returns its id."""
    with sessions().begin() as s:
        cur = tq.active_threshold(s, run_id)
        row = tq.save_threshold(s, run_id, base_id=cur.id if cur else None, image_threshold=value,
                                pixel_threshold=cur.pixel_threshold if cur else None, review_band=band, actor=system_actor(by), note=f"set by {by}", rule="manual")
        return row.id


def threshold_with_fp_and_fn(sc: Scores) -> float:
    """A score threshold at which the run has both false positives and false negatives."""
    best, best_n = None, 0
    for t in np.unique(sc.scores):
        fp = int(np.sum(~sc.y_nok & (sc.scores >= t)))
        fn = int(np.sum(sc.y_nok & (sc.scores < t)))
        if min(fp, fn) > best_n:
            best, best_n = float(t), min(fp, fn)
    if best is None:
        pytest.skip("the tiny run separates OK and NOK perfectly: no threshold has both FP and FN")
    return best
