"""`prefilter-qa report`: an evaluation as CSV (one row per test image) or PDF (for change control)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.output import emit
from engine.services.store import open_workspace


def cmd_report(args: argparse.Namespace) -> int:
    from engine.services.reports import write_report

    _, sessions = open_workspace()
    out = write_report(sessions, args.run, args.evaluation, args.format, Path(args.out).expanduser())
    emit(args, {"run_id": args.run, "evaluation_id": args.evaluation, "format": args.format, "path": str(out),
                "bytes": out.stat().st_size},
         lambda r: f"wrote the {r['format'].upper()} report of run {r['run_id']} to {r['path']} ({r['bytes']} bytes)")
    return 0


def args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--evaluation", type=int, help="evaluation id (default: the run's latest finished one)")
    p.add_argument("--format", required=True, choices=["csv", "pdf"],
                   help="csv: one row per test image; pdf: the evaluation report for change control")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (replaced atomically)")
