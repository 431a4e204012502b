"""Masks and thresholds are versioned: a save adds a row; a stale base is a conflict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from db import connect
from db import datasets as dq
from db import decisions as tq
from db import masks as mq
from db import runs as rq
from db.auth import system_actor
from db.errors import StaleEditError
from db.models import Image
from engine.errors import ConflictError
from engine.intake.maskfiles import load_mask_file
from engine.services.masks import save_mask


@pytest.fixture
def sessions(tmp_path: Path):
    s = connect(f"sqlite:///{tmp_path / 'v.db'}")
    with s.begin() as ses:
        ds = dq.get_or_create_dataset(ses, "d", None, None)
        ses.add(Image(dataset_id=ds.id, path="/a.png", rel_path="a.png", sha256="a", size_bytes=1,
                      width=8, height=6, mode="RGB", split="test", label="nok"))
    return s


def test_mask_versions_never_overwrite_and_conflict(sessions, tmp_path: Path) -> None:
    masks_root = tmp_path / "masks"
    m1 = np.zeros((6, 8), bool)
    m1[1:3, 2:5] = True
    with sessions.begin() as s:
        assert save_mask(s, masks_root, 1, m1, base_version=None, actor=system_actor("ann")) == 1
    m2 = m1.copy()
    m2[4, 7] = True
    with sessions.begin() as s:
        assert save_mask(s, masks_root, 1, m2, base_version=1, actor=system_actor("bob")) == 2
    # a save that started from version 1 while bob saved version 2: conflict, nothing stored
    files_before = sorted(masks_root.rglob("*.png"))
    with pytest.raises(ConflictError, match="version 2 by bob"):
        with sessions.begin() as s:
            save_mask(s, masks_root, 1, m1, base_version=1, actor=system_actor("ann"))
    assert sorted(masks_root.rglob("*.png")) == files_before
    with sessions.begin() as s:
        history = mq.mask_history(s, 1)
        assert [(m.version, m.author, m.pixels) for m in history] == [(2, "bob", 7), (1, "ann", 6)]
        assert np.array_equal(load_mask_file(history[1].path, (6, 8)), m1)
        assert np.array_equal(load_mask_file(history[0].path, (6, 8)), m2)
    with sessions.begin() as s:  # clearing is a version too
        assert save_mask(s, masks_root, 1, None, base_version=2, actor=system_actor("ann")) == 3
        assert mq.current_mask(s, 1).source == "cleared" and mq.current_mask(s, 1).pixels == 0


def test_mask_of_wrong_size_is_refused(sessions, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mask is 4×4 but image 1 is 8×6"):
        with sessions.begin() as s:
            save_mask(s, tmp_path, 1, np.ones((4, 4), bool), base_version=None, actor=system_actor("x"))


def test_threshold_history_and_conflict(sessions) -> None:
    with sessions.begin() as s:
        run = rq.create_run(s, dataset_id=1, model="dfr", preset="dfr", config={})
        auto = tq.save_threshold(s, run.id, base_id=None, image_threshold=0.4, actor=system_actor("auto"))
    with sessions.begin() as s:
        mine = tq.save_threshold(s, run.id, base_id=auto.id, image_threshold=0.5, actor=system_actor("ann"),
                                 review_band=(0.45, 0.55), note="tighter")
    with pytest.raises(StaleEditError):
        with sessions.begin() as s:
            tq.save_threshold(s, run.id, base_id=auto.id, image_threshold=0.6, actor=system_actor("bob"))
    with sessions.begin() as s:
        assert tq.active_threshold(s, run.id).id == mine.id
        d = tq.threshold_dict(tq.active_threshold(s, run.id))
        assert d["image"] == 0.5 and d["review_band"] == [0.45, 0.55] and d["set_by"] == "ann"
        assert [t.image_threshold for t in tq.threshold_history(s, run.id)] == [0.5, 0.4]
