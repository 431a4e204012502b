"""A process that claims queued jobs until none is left (exactly-once test)."""

from __future__ import annotations

import json
import sys

from db import connect
from db import jobs as jq


def main(url: str, name: str) -> int:
    sessions = connect(url, migrate=False)
    claimed = []
    while True:
        with sessions.begin() as s:
            job = jq.claim_next_job(s, name)
            if job is None:
                break
            claimed.append(job.id)
            attempt = jq.Attempt(job.id, job.attempt)
        with sessions.begin() as s:
            jq.report_progress(s, attempt, 0.5, "half")
            jq.finish_attempt(s, attempt, "succeeded")
    print(json.dumps(claimed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
