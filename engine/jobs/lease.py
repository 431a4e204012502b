"""A job attempt's own heartbeat, from inside the process that runs it.

The child does not rely on a local worker being alive: it heartbeats its attempt itself, stops
when the job is cancelled, and stops when its attempt was superseded (the job failed by a reaper,
or started again elsewhere) — whichever executor started it then only has to report its exit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from sqlalchemy.orm import Session, sessionmaker

from db import jobs as jq
from db.errors import SupersededError

log = logging.getLogger("prefilter_qa.job")

HEARTBEAT_S = 2.0
SUPERSEDED_GRACE_S = 3.0  # the main thread usually notices first (its next write is refused)
EXIT_SUPERSEDED = 75  # the attempt was superseded: nothing of it was stored
EXIT_CANCELLED = 76  # the job was cancelled: the executor records it


def stop_process(message: str, code: int) -> None:
    """Log why, then end this process and, if it leads its own process group (as a worker starts
    it), the DataLoader workers in that group too."""
    log.error(message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    if os.getpgid(0) == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(code)


class Lease(threading.Thread):
    """Heartbeats `attempt` every HEARTBEAT_S seconds until `stop()`; stops the process when the
    job is cancelled or the attempt superseded."""

    def __init__(self, sessions: sessionmaker[Session], attempt: jq.Attempt,
                 interval_s: float = HEARTBEAT_S) -> None:
        super().__init__(name=f"lease-{attempt.job_id}", daemon=True)
        self.sessions, self.attempt, self.interval_s = sessions, attempt, interval_s
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                with self.sessions.begin() as s:
                    cancel = jq.heartbeat(s, self.attempt)
            except SupersededError as exc:
                log.warning("%s; stopping in %.0f s unless the job's thread ends first", exc, SUPERSEDED_GRACE_S)
                if not self._halt.wait(SUPERSEDED_GRACE_S):
                    stop_process(f"{exc}: stopping without writing its results", EXIT_SUPERSEDED)
                return
            except Exception as exc:  # noqa: BLE001 - a database hiccup: try again at the next beat
                log.warning("heartbeat of %s failed: %s", self.attempt, exc)
                continue
            if cancel and not self._halt.is_set():
                stop_process(f"{self.attempt}: cancel requested; stopping", EXIT_CANCELLED)
