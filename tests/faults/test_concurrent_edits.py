"""Four processes save masks and thresholds of the same image and run at once, each from the
version it read a moment before: every conflict is detected, no save is lost or overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from db import connect
from db import datasets as dq
from db import decisions as tq
from db import masks as mq
from db import runs as rq
from db.models import Image
from tests.conftest import REPO

pytestmark = pytest.mark.faults
EDITORS, EDITS = 4, 40


def test_four_editors_masks_and_thresholds_no_lost_update(db_url: str, tmp_path: Path) -> None:
    sessions = connect(db_url)
    with sessions.begin() as s:
        ds = dq.get_or_create_dataset(s, "shared", None, None)
        image = Image(dataset_id=ds.id, path="/nowhere/a.png", rel_path="a.png", sha256="ab", size_bytes=1,
                      width=24, height=16, mode="L")
        s.add(image)
        s.flush()
        image_id = image.id
        run_id = rq.create_run(s, dataset_id=ds.id, model="ae", preset="ae", config={}).id
    masks_root = tmp_path / "masks"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.faults.editor", db_url, str(masks_root), f"editor{k}",
                               str(image_id), str(run_id), str(EDITS)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(EDITORS)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outs]
    done = [json.loads(out) for out, _ in outs]
    saved_masks = sum(d["masks_saved"] for d in done)
    saved_thresholds = sum(d["thresholds_saved"] for d in done)
    assert sum(d["masks_saved"] + d["masks_refused"] for d in done) == EDITORS * EDITS
    assert sum(d["masks_refused"] for d in done) > 0 and sum(d["thresholds_refused"] for d in done) > 0, done

    with sessions.begin() as s:
        versions = list(reversed(mq.mask_history(s, image_id)))
        thresholds = list(reversed(tq.threshold_history(s, run_id)))
    # every save that was told "saved" is a version, and each version was edited from the one before
    assert [m.version for m in versions] == list(range(1, saved_masks + 1))
    assert [m.parent_version for m in versions] == [None, *range(1, saved_masks)]
    assert len(thresholds) == saved_thresholds
    assert [t.parent_id for t in thresholds] == [None, *(t.id for t in thresholds[:-1])]
    # a refused save leaves no file behind; every version's file is there
    files = {str(p) for p in masks_root.rglob("*.png")}
    assert files == {m.path for m in versions if m.path}
