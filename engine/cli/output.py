"""How commands answer: JSON with --json, else a table or a sentence; exit codes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

EXIT_USER_ERROR = 1  # a mistake before any work (bad run, no threshold, bad argument)
EXIT_NO_IMAGES = 2  # nothing usable: no image could be imported / scored
EXIT_SOME_FAILED = 3  # some images scored, some not (`predict`: see each row's error)


class CliExit(Exception):
    """End the command with `code`, printing `message` (if any) as one line on stderr."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or "")
        self.code, self.message = code, message


def emit(args: argparse.Namespace, obj: Any, text: Callable[[Any], str]) -> None:
    """JSON on stdout with --json, else a human table/sentence."""
    print(json.dumps(obj, indent=2, default=str) if args.json else text(obj))


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if r.get(c) is None else f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r[c]))
              for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
