"""Named points of a job where the fault-injection tests hold a child, to kill it exactly there.

Inactive (one environment lookup) unless PREFILTER_QA_FAILPOINT_DIR names a folder. A test arms
point P by creating `<dir>/P.arm`; the first child to reach P takes it (atomic rename), writes
its pid to `<dir>/P.reached` and waits until `<dir>/P.release` exists — meanwhile the test kills
the child, its worker or both, and checks what the database and the workspace look like after.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

FAILPOINT_DIR_ENV = "PREFILTER_QA_FAILPOINT_DIR"
HOLD_LIMIT_S = 300.0  # a forgotten armed point never holds a job for ever

# The points a job passes, in order (tests iterate over these).
TRAIN_FEATURES = "train.features"  # DFR: during the backbone pass into the feature cache
TRAIN_EPOCHS = "train.epochs"  # during the training epochs
TRAIN_CHECKPOINT_WRITTEN = "train.checkpoint_written"  # checkpoint file written, not yet recorded
TRAIN_CHECKPOINT_RECORDED = "train.checkpoint_recorded"  # checkpoint recorded on the run
EVAL_SCORING = "evaluate.scoring"  # while the evaluation scores images
EVAL_SCORED = "evaluate.scored"  # evaluation computed, its results not yet stored


def failpoint(name: str) -> None:
    """Hold here if a test armed `name` (see the module docstring); otherwise return at once."""
    folder = os.environ.get(FAILPOINT_DIR_ENV)
    if not folder:
        return
    base = Path(folder)
    taken = base / f"{name}.taken-{os.getpid()}"
    try:
        os.rename(base / f"{name}.arm", taken)
    except FileNotFoundError:
        return
    reached = base / f"{name}.reached"
    tmp = base / f".{name}.reached.tmp-{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, reached)
    log.warning("failpoint %s reached in pid %s: holding until %s.release", name, os.getpid(), name)
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not (base / f"{name}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
