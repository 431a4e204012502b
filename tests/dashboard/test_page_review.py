"""AppTests of the Review page: outcomes stored with reviewer, labels corrected, retrain queued."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard.state import ANNOTATE_IMAGE, ANNOTATE_QUEUE, SELECTED_RUN
from db import datasets as dq
from db import decisions as tq
from db import jobs as jq
from db import runs as rq
from engine.evaluation import decisions as D
from tests.dashboard.page_helpers import assert_ok, open_page, sessions, texts
from tests.dashboard.qa_helpers import (
    Copy,
    scores_of,
    set_threshold,
    threshold_with_fp_and_fn,
    trained_copy,  # noqa: F401
)


@pytest.fixture
def flagged(trained_copy: Copy) -> tuple[int, np.ndarray, np.ndarray]:
    """(run, FP image ids, FN image ids), highest score first, at a threshold that has both."""
    run = trained_copy.ae_run
    sc = scores_of(run)
    thr = threshold_with_fp_and_fn(sc)
    set_threshold(run, thr)
    out = D.outcomes(sc.y_nok, sc.scores, thr)
    return run, sc.image_ids[out == "FP"], sc.image_ids[out == "FN"]


def _open(run: int):  # type: ignore[no-untyped-def]
    return open_page("review", session={SELECTED_RUN: run}, user="rita")


def _reviews(image_id: int) -> list[tuple[str, str, bool, int | None]]:
    with sessions().begin() as s:
        rows = tq.latest_reviews(s, [image_id])
        return [(r.outcome, r.reviewer, r.moved_to_train, r.run_id) for r in rows.values()]


def test_confirmed_ok_and_move_to_training(flagged: tuple[int, np.ndarray, np.ndarray]) -> None:
    run, fp, _ = flagged
    at = _open(run)
    assert len([m for m in at.markdown if "-badge[FP · " in m.value]) == fp.size
    first, second = int(fp[0]), (int(fp[1]) if fp.size > 1 else None)
    at.checkbox(key=f"review_move_{first}").check()
    at.text_input(key=f"review_note_{first}").input("glare, not a scratch")
    at.button(key=f"review_ok_{first}").click().run()
    assert_ok(at)
    assert _reviews(first) == [("confirmed_ok", "rita", True, run)]
    with sessions().begin() as s:
        img = dq.get_image(s, first)
        assert (img.split, img.label) == ("train", "ok")
        assert tq.latest_reviews(s, [first])[first].note == "glare, not a scratch"
    assert "confirmed OK" in texts(at)
    assert any("✓ confirmed OK → train" in m.value for m in at.markdown)  # marked in the gallery
    if second is not None:  # on to the next image of the list
        with sessions().begin() as s:
            name = dq.get_image(s, second).rel_path
        assert at.subheader[0].value == name  # the next image is open


def test_not_a_defect_relabels_a_false_negative(flagged: tuple[int, np.ndarray, np.ndarray]) -> None:
    run, _, fn = flagged
    at = _open(run)
    at.radio(key="review_kind").set_value("FN").run()
    assert_ok(at)
    target = int(fn[0])
    at.button(key=f"review_notdef_{target}").click().run()
    assert_ok(at)
    assert _reviews(target) == [("not_defect", "rita", False, run)]
    with sessions().begin() as s:
        img = dq.get_image(s, target)
        assert (img.label, img.split, img.defect_type) == ("ok", "test", None)


def test_hide_reviewed(flagged: tuple[int, np.ndarray, np.ndarray]) -> None:
    run, fp, _ = flagged
    at = _open(run)
    at.button(key=f"review_ok_{int(fp[0])}").click().run()
    at.toggle(key="review_hide").set_value(True).run()
    assert_ok(at)
    assert len([m for m in at.markdown if "-badge[FP · " in m.value]) == fp.size - 1


def test_actually_defective_relabels_and_opens_annotate(flagged: tuple[int, np.ndarray, np.ndarray]) -> None:
    run, fp, _ = flagged
    at = _open(run)
    target = int(fp[0])
    at.button(key=f"review_def_{target}").click().run()
    assert _reviews(target) == [("defective", "rita", False, run)]
    with sessions().begin() as s:
        assert dq.get_image(s, target).label == "nok"
    # the page handed the image (and the FP list as the queue) to Annotate and switched there
    from dashboard.widgets.annotate_queue import GIVEN_IDS
    from dashboard.widgets.annotate_state import CURRENT

    assert [t.value for t in at.title] == ["Annotate"]
    assert at.session_state[CURRENT] == target
    assert at.session_state[GIVEN_IDS] == [int(i) for i in fp]
    assert ANNOTATE_IMAGE not in at.session_state and ANNOTATE_QUEUE not in at.session_state  # taken

def test_retrain_with_corrections_queues_a_linked_run(flagged: tuple[int, np.ndarray, np.ndarray]) -> None:
    run, fp, _ = flagged
    at = _open(run)
    at.checkbox(key=f"review_move_{int(fp[0])}").check()
    at.button(key=f"review_ok_{int(fp[0])}").click().run()
    at.button(key=f"review_retrain_{run}").click().run()  # first the settings, nothing queued yet
    assert_ok(at)
    with sessions().begin() as s:
        assert not rq.child_runs(s, run)
    shown = texts(at)
    assert "New run:" in shown and "OK training images" in shown and "First threshold:" in shown
    at.button(key=f"review_retrain_go_{run}").click().run()
    assert_ok(at)
    with sessions().begin() as s:
        parent = rq.get_run(s, run)
        child = rq.child_runs(s, run)[0]
        jobs = [j for j in jq.list_jobs(s) if j.run_id == child.id]
        assert len(jobs) == 1 and jobs[0].kind == "train" and jobs[0].status == "queued"
        assert child.parent_run_id == run and child.created_by == "rita"
        assert (child.model, child.preset) == (parent.model, parent.preset)
        # the same settings; the reviewed threshold's rule (set by hand here: not carried) and band (none)
        assert child.config == parent.config and child.config["auto_review_band"] is False
        assert int(fp[0]) in child.snapshot["train"] + child.snapshot["holdout"]
        assert int(fp[0]) not in child.snapshot["test"]
    assert f"Queued training job #{jobs[0].id}" in texts(at)
    assert f"Run **#{child.id}** retrained from this one" in texts(at)


def test_images_in_the_review_band_are_their_own_queue(trained_copy: Copy) -> None:
    run = trained_copy.ae_run
    sc = scores_of(run)
    mid = float(np.median(sc.scores))
    band = (float(np.quantile(sc.scores, 0.2)), float(np.quantile(sc.scores, 0.8)))
    set_threshold(run, mid, band=band)
    out = D.outcomes(sc.y_nok, sc.scores, mid, band)
    in_band = sc.image_ids[out == "REVIEW"]
    assert in_band.size > 0
    at = _open(run)
    radio = at.radio(key="review_kind")

    def band_option() -> str:
        return next(o for o in at.radio(key="review_kind").options if o.startswith("In the review band"))

    assert band_option().startswith(f"In the review band — a person decides ({in_band.size}, 0 reviewed)")
    radio.set_value("REVIEW").run()
    assert_ok(at)
    assert len([m for m in at.markdown if "-badge[REVIEW · " in m.value]) == in_band.size
    first = int(in_band[0])
    assert "scored inside the review band" in " ".join(c.value for c in at.caption)
    i = int(np.flatnonzero(sc.image_ids == first)[0])
    button = f"review_cdef_{first}" if sc.y_nok[i] else f"review_ok_{first}"
    at.button(key=button).click().run()
    assert_ok(at)
    assert _reviews(first)[0][0] == ("confirmed_defect" if sc.y_nok[i] else "confirmed_ok")
    if not sc.y_nok[i]:
        assert band_option().startswith(f"In the review band — a person decides ({in_band.size}, 1 reviewed)")


def test_no_band_says_where_to_switch_it_on(trained_copy: Copy) -> None:
    run = trained_copy.ae_run
    set_threshold(run, float(np.median(scores_of(run).scores)))
    at = _open(run)
    at.radio(key="review_kind").set_value("REVIEW").run()
    assert_ok(at)
    assert any("switch it on on the Thresholds page" in i.value for i in at.info)


def test_retrain_carries_the_reviewed_threshold_policy(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    sc = scores_of(run)
    with sessions().begin() as s:  # the reviewed threshold: OK-only with a review band
        cur = tq.active_threshold(s, run)
        ok_thr = float(np.median(sc.scores))
        s.add(type(cur)(run_id=run, parent_id=cur.id, image_threshold=ok_thr, review_low=ok_thr - 0.1,
                        review_high=ok_thr + 0.1, rule="ok_only", set_by="rita"))
    at = _open(run)
    at.button(key=f"review_retrain_{run}").click().run()
    assert "OK-only" in texts(at) and "the suggested band" in texts(at)
    at.number_input(key=f"review_retrain_frr_{run}").set_value(5.0).run()
    at.button(key=f"review_retrain_go_{run}").click().run()
    assert_ok(at)
    with sessions().begin() as s:
        child = rq.child_runs(s, run)[0]
        assert child.config["auto_threshold"] == "ok_only" and child.config["auto_review_band"] is True
        assert child.config["target_frr"] == pytest.approx(0.05)
