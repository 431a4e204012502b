"""A process that does read-then-write transactions on one database (concurrency test)."""

from __future__ import annotations

import sys

from sqlalchemy.exc import OperationalError

from db import connect
from db import datasets as dq
from db.models import Image


def main(url: str, tag: str, n: int) -> int:
    sessions = connect(url, migrate=False)
    errors = 0
    for i in range(n):
        try:
            with sessions.begin() as s:
                ds = dq.get_dataset(s, "shared")
                before = dq.count_images(s, ds.id)
                s.add(Image(dataset_id=ds.id, path=f"/{tag}/{i}.png", rel_path=f"{i}.png",
                            sha256=f"{tag}{i}", size_bytes=before, width=1, height=1, mode="RGB"))
        except OperationalError as exc:
            errors += 1
            print(f"error: {exc}", file=sys.stderr)
    print(errors)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
