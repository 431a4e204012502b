"""The `prefilter-qa` entry point: parse, run one command, turn user errors into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from db.errors import NotFoundError, PermissionDenied, StaleEditError, ValidationError
from engine.cli.commands import COMMANDS
from engine.cli.output import EXIT_USER_ERROR, CliExit
from engine.errors import UserError
from engine.workspace import HOME_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefilter-qa", description="prefilter-qa: the command line")
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
        os.environ[HOME_ENV] = args.home
    try:
        return int(args.handler(args) or 0)
    except CliExit as exc:
        if exc.message:
            print(f"prefilter-qa {args.command}: {exc.message}", file=sys.stderr)
        return exc.code
    except (UserError, NotFoundError, StaleEditError, PermissionDenied, ValidationError) as exc:
        print(f"prefilter-qa {args.command}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `prefilter-qa jobs | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"prefilter-qa {args.command}: interrupted", file=sys.stderr)
        return 130
