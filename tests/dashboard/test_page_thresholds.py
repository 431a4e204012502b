"""AppTests of the Thresholds page: inputs, suggestions, review band, save, conflict, history."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dashboard.state import SELECTED_RUN
from db import decisions as tq
from engine.evaluation.metrics import ok_only_threshold
from tests.conftest import cli
from tests.dashboard.page_helpers import assert_ok, open_page, sessions, texts
from tests.dashboard.qa_helpers import Copy, scores_of, set_threshold, trained_copy  # noqa: F401


def _open(run: int, user: str = "erika"):  # type: ignore[no-untyped-def]
    return open_page("thresholds", session={SELECTED_RUN: run}, user=user)


def _k(run: int, name: str) -> str:
    return f"thr{run}_{name}"


def _rows(run: int) -> list[tq.Threshold]:
    with sessions().begin() as s:
        rows = tq.threshold_history(s, run)
        s.expunge_all()
        return rows


def _metric(at, label: str) -> str:  # type: ignore[no-untyped-def]
    return next(m.value for m in at.metric if m.label == label)


def test_set_a_number_and_save(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    sc = scores_of(run)
    value = float(np.median(sc.scores))
    at = _open(run)
    before = _rows(run)
    at.number_input(key=_k(run, "w_num")).set_value(value).run()
    assert_ok(at)
    assert at.slider(key=_k(run, "w_slider")).value == pytest.approx(value)
    nok, ok = sc.scores[sc.y_nok], sc.scores[~sc.y_nok]  # NOK iff score >= threshold
    assert _metric(at, "Escapes (NOK passed)") == f"{int((nok < value).sum())} of {nok.size}"
    assert _metric(at, "False rejects (OK rejected)") == f"{int((ok >= value).sum())} of {ok.size}"
    at.text_input(key=_k(run, "w_note")).input("agreed with quality, March batch")
    at.button(key=_k(run, "save")).click().run()
    assert_ok(at)
    rows = _rows(run)
    assert len(rows) == len(before) + 1
    new = rows[0]
    assert (new.image_threshold, new.set_by, new.note, new.rule) == (
        pytest.approx(value), "erika", "agreed with quality, March batch", "manual")
    assert new.parent_id == before[0].id and new.evaluation_id == sc.evaluation_id
    assert "Saved threshold" in texts(at)
    history = at.dataframe[-1].value
    assert history.iloc[0][""] == "active" and history.iloc[0]["set by"] == "erika"
    assert history.iloc[0]["note"] == "agreed with quality, March batch"
    info = json.loads(cli("runs", str(run), "--json", home=trained_copy.home).stdout)
    assert info["threshold"]["image"] == pytest.approx(value)
    assert info["threshold"]["set_by"] == "erika" and info["threshold"]["id"] == new.id


def test_concurrent_save_is_a_visible_conflict(trained_copy: Copy) -> None:
    run = trained_copy.ae_run
    sc = scores_of(run)
    at = _open(run)
    theirs = float(sc.scores[1])
    set_threshold(run, theirs, by="alice")  # another engineer saves meanwhile
    n = len(_rows(run))
    at.number_input(key=_k(run, "w_num")).set_value(float(sc.scores[2]))
    at.button(key=_k(run, "save")).click().run()
    assert_ok(at)
    assert len(_rows(run)) == n  # nothing stored
    assert any("alice" in e.value and "Not saved" in e.value for e in at.error)
    at.button(key=_k(run, "reload")).click().run()
    assert_ok(at)
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(theirs)
    assert not at.error
    at.number_input(key=_k(run, "w_num")).set_value(float(sc.scores[3]))
    at.button(key=_k(run, "save")).click().run()
    rows = _rows(run)
    assert len(rows) == n + 1 and rows[0].set_by == "erika" and rows[0].parent_id == rows[1].id


def test_keep_my_values_then_save_replaces_theirs(trained_copy: Copy) -> None:
    run = trained_copy.ae_run
    sc = scores_of(run)
    at = _open(run)
    set_threshold(run, float(sc.scores[1]), by="alice")
    mine = float(sc.scores[4])
    at.number_input(key=_k(run, "w_num")).set_value(mine)
    at.button(key=_k(run, "save")).click().run()
    at.button(key=_k(run, "keep")).click().run()
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(mine)
    at.button(key=_k(run, "save")).click().run()
    assert_ok(at)
    assert _rows(run)[0].image_threshold == pytest.approx(mine) and _rows(run)[0].set_by == "erika"


def test_suggestion_buttons_set_the_value(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    sc = scores_of(run)
    at = _open(run)
    at.button(key=_k(run, "sg_zero_escape")).click().run()
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(sc.scores[sc.y_nok].min())
    assert _metric(at, "Escapes (NOK passed)").startswith("0 of")
    at.button(key=_k(run, "sg_f1_max")).click().run()
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(sc.metrics["f1_threshold"])
    at.button(key=_k(run, "sg_ok_only")).click().run()
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(sc.metrics["ok_only_threshold"])
    at.number_input(key=_k(run, "w_target")).set_value(25.0).run()  # an edited target
    at.button(key=_k(run, "sg_ok_only")).click().run()
    assert_ok(at)
    held_out = sc.metrics.get("holdout_scores")  # the page fits OK-only on held-out OK images when stored
    ref = np.asarray(held_out, np.float64) if held_out else sc.scores[~sc.y_nok]
    expected = ok_only_threshold(ref, 0.25)
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(expected)
    at.button(key=_k(run, "save")).click().run()
    assert _rows(run)[0].rule == "ok_only"


def test_review_band_counts_and_save(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    sc = scores_of(run)
    at = _open(run)
    value = float(np.median(sc.scores))
    at.number_input(key=_k(run, "w_num")).set_value(value).run()
    at.toggle(key=_k(run, "w_band_on")).set_value(True).run()
    assert_ok(at)
    lo, hi = float(np.quantile(sc.scores, 0.25)), float(np.quantile(sc.scores, 0.75))
    at.number_input(key=_k(run, "w_lo")).set_value(lo).run()
    at.number_input(key=_k(run, "w_hi")).set_value(hi).run()
    assert_ok(at)
    in_band = int(((sc.scores >= lo) & (sc.scores < hi)).sum())  # REVIEW: lo <= score < hi
    assert in_band > 0
    assert _metric(at, "To review").startswith(f"{in_band} (")
    at.button(key=_k(run, "save")).click().run()
    row = _rows(run)[0]
    assert (row.review_low, row.review_high) == (pytest.approx(lo), pytest.approx(hi))
    info = json.loads(cli("runs", str(run), "--json", home=trained_copy.home).stdout)
    assert info["threshold"]["review_band"] == [pytest.approx(lo), pytest.approx(hi)]


def test_band_not_containing_the_threshold_blocks_save(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    sc = scores_of(run)
    at = _open(run)
    at.toggle(key=_k(run, "w_band_on")).set_value(True).run()
    top = float(sc.scores.max())
    at.number_input(key=_k(run, "w_lo")).set_value(top + 1).run()
    at.number_input(key=_k(run, "w_hi")).set_value(top + 2).run()
    assert any("must contain the threshold" in e.value for e in at.error)
    assert at.button(key=_k(run, "save")).disabled


def test_pixel_suggestion_and_history_restore(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    sc = scores_of(run)
    old = _rows(run)[0]
    at = _open(run)
    at.button(key=_k(run, "px_ok_quantile")).click().run()
    px = sc.metrics["pixel_threshold"]["ok_quantile"]
    assert at.number_input(key=_k(run, "w_px")).value == pytest.approx(px)
    at.number_input(key=_k(run, "w_num")).set_value(float(sc.scores[0])).run()
    at.button(key=_k(run, "save")).click().run()
    assert _rows(run)[0].pixel_threshold == pytest.approx(px)
    at.selectbox(key=_k(run, "w_hist")).set_value(old.id).run()
    at.button(key=_k(run, "restore")).click().run()
    assert_ok(at)
    assert at.number_input(key=_k(run, "w_num")).value == pytest.approx(old.image_threshold)


def test_band_default_comes_from_ok_and_nok_scores_and_says_so(trained_copy: Copy) -> None:
    from engine.evaluation import decisions as D

    run = trained_copy.dfr_run
    sc = scores_of(run)
    at = _open(run)
    value = float(at.number_input(key=_k(run, "w_num")).value)
    at.toggle(key=_k(run, "w_band_on")).set_value(True).run()
    assert_ok(at)
    hold = np.asarray(sc.metrics.get("holdout_scores") or [], np.float64)
    expected = D.suggest_band(value, sc.y_nok, sc.scores, hold if hold.size else None)
    assert at.number_input(key=_k(run, "w_lo")).value == pytest.approx(expected.low)
    assert at.number_input(key=_k(run, "w_hi")).value == pytest.approx(expected.high)
    assert any("REVIEW from" in c.value and "NOK from" in c.value and "held-out OK" in c.value for c in at.caption)
    lo, hi = at.slider(key=_k(run, "w_slider")).min, at.slider(key=_k(run, "w_slider")).max
    assert lo <= value <= hi


def test_saving_the_active_values_again_warns_instead_of_a_duplicate(trained_copy: Copy) -> None:
    run = trained_copy.dfr_run
    before = _rows(run)
    at = _open(run)
    at.text_input(key=_k(run, "w_note")).set_value("just a note").run()
    at.button(key=_k(run, "save")).click().run()
    assert_ok(at)
    assert len(_rows(run)) == len(before)
    assert any("Nothing changed" in w.value for w in at.warning)
    at.number_input(key=_k(run, "w_num")).set_value(float(before[0].image_threshold) + 0.01).run()
    at.button(key=_k(run, "save")).click().run()
    assert len(_rows(run)) == len(before) + 1 and any("Saved threshold" in s.value for s in at.success)
    at.number_input(key=_k(run, "w_num")).set_value(float(before[0].image_threshold) + 0.02).run()
    assert not any("Saved threshold" in s.value for s in at.success)  # the old message goes with the edit


def test_a_note_over_the_limit_is_refused_by_the_database_layer_and_shown(trained_copy: Copy) -> None:
    """The page has no length check of its own: db.validate refuses, the page says why, nothing is stored."""
    run = trained_copy.dfr_run
    at = _open(run)
    before = _rows(run)
    at.number_input(key=_k(run, "w_num")).set_value(float(np.median(scores_of(run).scores))).run()
    at.text_input(key=_k(run, "w_note")).input("n" * 2_001)
    at.button(key=_k(run, "save")).click().run()
    assert_ok(at)
    assert any("Not saved" in e.value and "note is too long" in e.value for e in at.error)
    assert len(_rows(run)) == len(before)
