"""A process that edits one image's mask and one run's threshold over and over, each edit from
the version it read a moment before (concurrent-edit test); prints what it saved and refused."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from db import connect
from db import decisions as tq
from db import masks as mq
from db.auth import system_actor
from db.errors import StaleEditError
from db.models import Image
from engine.errors import ConflictError
from engine.services.masks import save_mask


def main(url: str, masks_root: str, name: str, image_id: int, run_id: int, n: int) -> int:
    sessions = connect(url, migrate=False)
    actor = system_actor(name)
    rng = random.Random(name)
    done = {"masks_saved": 0, "masks_refused": 0, "thresholds_saved": 0, "thresholds_refused": 0}
    for i in range(n):
        with sessions.begin() as s:  # what the page loaded
            cur = mq.current_mask(s, image_id)
            base_mask = cur.version if cur else None
            image = s.get(Image, image_id)
            shape = (image.height, image.width)
            active = tq.active_threshold(s, run_id)
            base_threshold = active.id if active else None
        time.sleep(rng.random() * 0.01)  # the user draws / moves the slider
        mask = np.zeros(shape, bool)
        mask[: 1 + i % shape[0], : 1 + rng.randrange(shape[1])] = True
        try:
            with sessions.begin() as s:
                save_mask(s, Path(masks_root), image_id, mask, base_version=base_mask, actor=actor)
            done["masks_saved"] += 1
        except ConflictError:
            done["masks_refused"] += 1
        try:
            with sessions.begin() as s:
                tq.save_threshold(s, run_id, actor=actor, base_id=base_threshold,
                                  image_threshold=rng.random(), note=f"{name} edit {i}")
            done["thresholds_saved"] += 1
        except StaleEditError:
            done["thresholds_refused"] += 1
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    a = sys.argv
    sys.exit(main(a[1], a[2], a[3], int(a[4]), int(a[5]), int(a[6])))
