"""Several processes on one SQLite file: no "database is locked", every write lands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from db import connect
from db import datasets as dq

REPO = Path(__file__).resolve().parents[2]


def test_four_processes_read_then_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    sessions = connect(url)
    with sessions.begin() as s:
        dq.get_or_create_dataset(s, "shared", None, None)
    n = 60
    procs = [subprocess.Popen([sys.executable, "-m", "tests.db.writer", url, f"p{k}", str(n)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [o[0].strip() for o in outs] == ["0"] * 4, [o[1][-500:] for o in outs]
    with sessions.begin() as s:
        assert dq.count_images(s, dq.get_dataset(s, "shared").id) == 4 * n
