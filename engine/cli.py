"""`prefilter-qa`: the command line (DESIGN.md "Command line", a stable contract)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from db.errors import NotFoundError, StaleEditError
from engine.errors import UserError

EXIT_USER_ERROR = 1
EXIT_NO_IMAGES = 2


class CliExit(Exception):
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


def build_parser() -> argparse.ArgumentParser:
    from engine.cli_commands import COMMANDS

    parser = argparse.ArgumentParser(prog="prefilter-qa", description=__doc__)
    parser.add_argument("--home", help="workspace folder (default: $PREFILTER_QA_HOME or ./workspace)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (helptext, add_args, handler) in COMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        add_args(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or args.command == "worker" else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.home:
        import os

        from engine.workspace import HOME_ENV
        os.environ[HOME_ENV] = args.home
    try:
        return int(args.handler(args) or 0)
    except CliExit as exc:
        if exc.message:
            print(f"prefilter-qa {args.command}: {exc.message}", file=sys.stderr)
        return exc.code
    except (UserError, NotFoundError, StaleEditError) as exc:
        print(f"prefilter-qa {args.command}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `prefilter-qa jobs | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"prefilter-qa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # `python -m engine.cli`: use the importable module's classes
    from engine.cli import main as _main

    sys.exit(_main())
