"""prefilter-qa-line: score parts beside the camera with a released bundle (no torch, no GPU).

Commands:
  score BUNDLE PATH...   score image files (a folder PATH means its image files); one JSON
                         line per image on stdout, the same lines appended to the results file
  watch BUNDLE DIR       score every image file appearing in DIR once; hot-reload BUNDLE
  verify BUNDLE          verify files + run the self-test; print a JSON summary

Both `score` and `watch` verify the bundle and run its self-test first and refuse to serve
on failure. Results file (JSONL, appended, fsync'ed): --results FILE, default
<parent of BUNDLE>/line-results.jsonl, so one log per line PC survives bundle updates.

Exit codes:
  0   every image was scored (OK/REVIEW/NOK); watch: stopped by SIGINT/SIGTERM
  2   bad bundle: missing/tampered file, foreign image rule, bad threshold, self-test failed
  3   some images were ERROR (unreadable, truncated, empty, not an image, too many pixels,
      non-finite score; their lines say why); watch: only with --once
  4   the results file or heatmap folder cannot be written (nothing is judged unrecorded)
  64  usage error (bad arguments)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from prefilter_qa_line.backends import BACKENDS
from prefilter_qa_line.bundle import BundleError
from prefilter_qa_line.imagerule import IMAGE_EXTENSIONS
from prefilter_qa_line.results import Result, ResultsWriteError, append_results
from prefilter_qa_line.scorer import DEFAULT_BATCH, Scorer, open_scorer
from prefilter_qa_line.watch import Watcher

EXIT_OK, EXIT_BAD_BUNDLE, EXIT_IMAGE_ERRORS, EXIT_OUTPUT, EXIT_USAGE = 0, 2, 3, 4, 64
RESULTS_NAME = "line-results.jsonl"
log = logging.getLogger("prefilter_qa_line")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's 2 would read as "bad bundle"
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prefilter-qa-line", description=__doc__[:__doc__.index("Exit codes:")],
                epilog=__doc__[__doc__.index("Exit codes:"):],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("bundle", type=Path, metavar="BUNDLE",
                        help="bundle folder (bundle.json, model.onnx, golden/)")
        sp.add_argument("--backend", choices=BACKENDS, default="onnxruntime")
        sp.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of the model (default: all cores)")
        sp.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)

    def output(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--results", type=Path, default=None,
                        help=f"JSONL results file (default: <parent of BUNDLE>/{RESULTS_NAME})")
        sp.add_argument("--heatmaps", type=Path, default=None,
                        help="write <stem>_heatmap.png overlays into this folder")

    s = sub.add_parser("score", help="score image files", epilog=p.epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(s)
    s.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                   help="image file, or a folder (its image files)")
    output(s)
    w = sub.add_parser("watch", help="score images appearing in a folder", epilog=p.epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    common(w)
    w.add_argument("folder", type=Path, metavar="DIR", help="folder the camera writes into")
    output(w)
    w.add_argument("--poll", type=float, default=1.0, help="seconds between polls (default 1)")
    w.add_argument("--once", action="store_true",
                   help="score what is complete in DIR now (two polls) and exit")
    v = sub.add_parser("verify", help="verify a bundle and run its self-test")
    common(v)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        scorer = open_scorer(args.bundle, args.backend, args.threads, args.batch_size,
                             self_test=False)
        golden = scorer.self_test()
    except BundleError as e:
        print(f"prefilter-qa-line: refusing to serve: {e}", file=sys.stderr)
        return EXIT_BAD_BUNDLE
    if args.command == "verify":
        print(json.dumps({"bundle": str(args.bundle), "bundle_sha": scorer.sha, "ok": True,
                          "threshold_id": scorer.bundle.threshold.id, "golden": golden}))
        return EXIT_OK
    results = args.results or args.bundle.resolve().parent / RESULTS_NAME
    try:
        if args.command == "score":
            return _score(scorer, args.paths, results, args.heatmaps)
        return _watch(scorer, args, results)
    except ResultsWriteError as e:
        print(f"prefilter-qa-line: {e}", file=sys.stderr)
        return EXIT_OUTPUT


def _emit(r: Result) -> None:
    sys.stdout.write(r.to_json() + "\n")
    sys.stdout.flush()


def _expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given (absolute); a folder contributes its image files, sorted."""
    out = []
    for p in paths:
        if p.is_dir():
            out += sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")
                          and c.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            out.append(p)
    return [Path(os.path.abspath(p)) for p in out]


def _score(scorer: Scorer, paths: Sequence[Path], results: Path, heatmaps: Path | None) -> int:
    if heatmaps is not None and not _writable_dir(heatmaps):
        return EXIT_OUTPUT
    errors = 0
    files = _expand(paths)
    for start in range(0, len(files), scorer.batch_size):  # record as we go, not at the end
        batch = scorer.score_images(files[start:start + scorer.batch_size], heatmaps)
        append_results(results, batch)
        for r in batch:
            errors += r.verdict == "ERROR"
            _emit(r)
    return EXIT_IMAGE_ERRORS if errors else EXIT_OK


def _watch(scorer: Scorer, args: argparse.Namespace, results: Path) -> int:
    if not args.folder.is_dir():
        print(f"prefilter-qa-line: {args.folder}: not a folder", file=sys.stderr)
        return EXIT_USAGE
    if args.heatmaps is not None and not _writable_dir(args.heatmaps):
        return EXIT_OUTPUT

    def load(root: Path) -> Scorer:
        return open_scorer(root, args.backend, args.threads, args.batch_size)

    watcher = Watcher(scorer, args.folder, results, load, args.heatmaps, emit=_emit)
    if args.once:
        watcher.poll_once()  # first sight of each file
        time.sleep(min(max(args.poll, 0.0), 5.0))
        watcher.poll_once()  # unchanged since: complete
        if watcher.pending():
            log.info("%d file(s) still being written; left for the next run", watcher.pending())
        return EXIT_IMAGE_ERRORS if watcher.errors else EXIT_OK
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("watching %s with bundle %s; results in %s", watcher.folder, scorer.sha[:12], results)
    watcher.run(args.poll, stop)
    log.info("stopped")
    return EXIT_OK


def _writable_dir(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
        return True
    except OSError as e:
        print(f"prefilter-qa-line: {folder}: cannot write heatmaps: {e.strerror or e}",
              file=sys.stderr)
        return False


if __name__ == "__main__":
    sys.exit(main())
