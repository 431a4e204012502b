"""The commands of `prefilter-qa`: each one parses its arguments and calls db/engine functions."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from db import validate
from db.auth import Actor
from db.models import JobStatus
from engine.cli.output import EXIT_NO_IMAGES, EXIT_SOME_FAILED, EXIT_USER_ERROR, CliExit, emit, table
from engine.cli.reports import args_report, cmd_report
from engine.cli.users import args_users, cmd_users
from engine.services.accounts import local_actor
from engine.services.store import open_workspace

DEMO_NAME = "demo"


def _import_report_text(r: dict[str, Any]) -> str:
    c = r["imported"]
    lines = [f"dataset {r['dataset']!r} ({r['layout']} layout): imported {c['train_ok']} train OK, "
             f"{c['test_ok']} test OK, {c['test_nok']} test NOK, {c['masks']} masks"
             + (f", {c['unlabelled']} unlabelled" if c.get("unlabelled") else "")
             + f"; {r['unchanged']} unchanged; {len(r['skipped'])} skipped"]
    lines += [f"  updated {u['path']}: {u['reason']}" for u in r["updated"]]
    lines += [f"  {key} {m['path']}: {m['reason']}" for key in ("missing", "changed", "restored")
              for m in r.get(key, [])]
    lines += [f"  skipped {s['path']}: {s['reason']}" for s in r["skipped"]]
    return "\n".join(lines)


def _actor(args: argparse.Namespace) -> Actor:
    """The command line acts for whoever runs it (`--user`, else the login name), as admin. A bad
    `--user` (too long, a line break, a path) is refused before any command runs (db.validate)."""
    user = getattr(args, "user", None)
    return local_actor(validate.name(user, "--user") if user is not None else None)


def import_folder(root: Path, name: str, layout: str = "auto", actor: Actor | None = None) -> dict[str, Any]:
    """Scan + register (services.imports); exit 2 when the folder is missing or holds no usable image."""
    from engine.services.imports import NoUsableImages
    from engine.services.imports import import_folder as register_folder

    ws, sessions = open_workspace()
    if not root.is_dir():
        raise CliExit(EXIT_NO_IMAGES, f"{root}: no such folder")
    try:
        return register_folder(ws, sessions, str(root), name, layout, actor=actor or local_actor())
    except NoUsableImages as exc:
        reasons = "; ".join(f"{k.path}: {k.reason}" for k in exc.skipped[:5])
        raise CliExit(EXIT_NO_IMAGES, f"{root}: no usable images" + (f" ({reasons})" if reasons else "")) from None


def cmd_import(args: argparse.Namespace) -> int:
    report = import_folder(Path(args.dir).expanduser(), args.name, args.layout, _actor(args))
    emit(args, report, _import_report_text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.demo.generate import DemoSpec, generate_demo

    ws, _ = open_workspace()
    spec = DemoSpec(size=args.size, n_train_ok=args.train_ok, n_test_ok=args.test_ok,
                    n_test_nok=args.test_nok, seed=args.seed)
    summary = generate_demo(ws.home / "demo-data", spec)
    report = import_folder(summary.root, args.name, "seed", _actor(args))
    emit(args, report, _import_report_text)
    if args.first_training:
        _first_training(args)
    return 0


def _first_training(args: argparse.Namespace) -> None:
    """On a workspace without any run: queue one DFR training of the demo, so Results and
    Thresholds have something to show a few minutes after the first start (`make run`)."""
    from db import runs as rq
    from engine.jobs.queue import submit_train

    _, sessions = open_workspace()
    with sessions.begin() as s:
        if rq.list_runs(s, limit=1):
            return
        job, run = submit_train(s, dataset=args.name, model="dfr", actor=_actor(args),
                                note="first training of the demo, queued by the first start")
        job_id, run_id = job.id, run.id
    print(f"queued a first DFR training of {args.name!r} (job {job_id}, run {run_id}): Results and Thresholds "
          "show it when it has finished, a few minutes on a CPU", file=sys.stderr)


def cmd_datasets(args: argparse.Namespace) -> int:
    from db import datasets as dq

    _, sessions = open_workspace()
    with sessions.begin() as s:
        rows = [c.as_dict() for c in dq.dataset_counts(s)]
    emit(args, rows, lambda r: table(r, ["name", "train_ok", "test_ok", "test_nok", "masks", "unlabelled",
                                         "missing"]))
    return 0


def _wait(args: argparse.Namespace, job_id: int, run_id: int) -> int:
    """Start a worker if none runs, follow the job, print progress; exit 0 iff it succeeded."""
    from db import jobs as jq
    from db import runs as rq
    from engine.jobs.launch import ensure_worker
    from engine.services.views import run_dict

    ws, sessions = open_workspace()
    if ensure_worker(ws, sessions, idle_exit_s=30):
        print(f"started a background worker (log: {ws.home / 'logs' / 'worker.log'})", file=sys.stderr)
    last = None
    while True:
        with sessions.begin() as s:
            job = jq.get_job(s, job_id)
            status, progress, message, error = job.status, job.progress, job.message, job.error
        line = f"job {job_id} {status} {progress:5.1%} {message or ''}"
        if line != last:
            print(line, file=sys.stderr)
            last = line
        if status in jq.FINAL:
            break
        time.sleep(1.0)
    with sessions.begin() as s:
        result = run_dict(s, rq.get_run(s, run_id))
    emit(args, result, _run_text)
    if status != JobStatus.SUCCEEDED:
        print(f"prefilter-qa {args.command}: job {job_id} {status}: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from engine.config import parse_overrides
    from engine.jobs.queue import submit_train

    _, sessions = open_workspace()
    with sessions.begin() as s:
        job, run = submit_train(s, dataset=args.dataset, model=args.model, preset=args.preset,
                                overrides=parse_overrides(args.set), actor=_actor(args),
                                parent_run_id=args.parent)
        job_id, run_id = job.id, run.id
    if args.wait:
        return _wait(args, job_id, run_id)
    emit(args, {"job_id": job_id, "run_id": run_id},
         lambda o: f"queued job {o['job_id']} (run {o['run_id']}); `prefilter-qa worker` runs it")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from engine.jobs.queue import submit_evaluate

    _, sessions = open_workspace()
    with sessions.begin() as s:
        job, evaluation_id = submit_evaluate(s, run_id=args.run, dataset=args.dataset, actor=_actor(args))
        job_id = job.id
    if args.wait:
        return _wait(args, job_id, args.run)
    emit(args, {"job_id": job_id, "run_id": args.run, "evaluation_id": evaluation_id},
         lambda o: f"queued job {o['job_id']} (evaluation {o['evaluation_id']} of run {o['run_id']})")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from engine.jobs.executors import make_worker

    ws, sessions = open_workspace()
    worker = make_worker(ws, sessions, executor=args.executor, ray_address=args.ray_address, poll_s=args.poll,
                         idle_exit_s=args.idle_exit)
    done = worker.serve(once=args.once)
    if args.json:
        emit(args, {"jobs_run": done}, str)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from db import jobs as jq
    from engine.services.views import job_dict

    _, sessions = open_workspace()
    with sessions.begin() as s:
        rows = [job_dict(j) for j in jq.list_jobs(s, limit=args.limit)]
    emit(args, rows, lambda r: table(r, ["id", "kind", "status", "progress", "run_id", "error"]))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from engine.jobs.queue import cancel_job
    from engine.services.views import job_dict

    _, sessions = open_workspace()
    with sessions.begin() as s:
        job = job_dict(cancel_job(s, args.job_id, _actor(args)))
    emit(args, job, lambda j: f"job {j['id']}: " + (
        JobStatus.CANCELLED if j["status"] == JobStatus.CANCELLED else
        "cancel requested; its worker stops it" if j["status"] == JobStatus.RUNNING else f"already {j['status']}"))
    return 0


def _run_text(r: dict[str, Any]) -> str:
    m, t = r.get("metrics") or {}, r.get("threshold") or {}
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join([
        f"run {r['id']}: {r['model']} ({r['preset']}) {r['status']}",
        f"  image AUROC {fmt(m.get('image_auroc'))} {m.get('image_auroc_ci95') or ''}  "
        f"pixel AUROC {fmt(m.get('pixel_auroc'))}  AUPRO {fmt(m.get('aupro'))}  "
        f"F1-max {fmt(m.get('f1_max'))}  FRR at zero escapes {fmt(m.get('fpr_at_full_recall'))}",
        f"  threshold image {fmt(t.get('image'))} pixel {fmt(t.get('pixel'))} "
        f"review band {t.get('review_band')} set by {t.get('set_by', '-')}",
    ])


def cmd_runs(args: argparse.Namespace) -> int:
    from db import runs as rq
    from engine.services.views import run_dict, run_row

    _, sessions = open_workspace()
    with sessions.begin() as s:
        if args.id is None:
            rows = [run_row(s, r) for r in rq.list_runs(s)]
            emit(args, rows, lambda r: table(r, ["id", "model", "preset", "status", "image_auroc",
                                                 "pixel_auroc", "threshold"]))
        else:
            emit(args, run_dict(s, rq.get_run(s, args.id)), _run_text)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from engine.services.scoring import predict_paths

    ws, sessions = open_workspace()
    results = predict_paths(ws, sessions, args.run, [Path(p) for p in args.paths], args.out,
                            heatmaps=not args.no_heatmaps, results_file=args.results)
    emit(args, results, lambda rows: table(rows, ["path", "score", "verdict", "heatmap", "error"]))
    failed = sum(r["error"] is not None for r in results)
    if failed:
        print(f"prefilter-qa predict: {failed} of {len(results)} files could not be scored "
              "(see their error)", file=sys.stderr)
    return 0 if not failed else EXIT_NO_IMAGES if failed == len(results) else EXIT_SOME_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    """Export the run + threshold as a line bundle in this process (the dashboard queues a job)."""
    from engine.services.releases import new_release, perform_release, release_dict

    ws, sessions = open_workspace()
    with sessions.begin() as s:
        release_id = new_release(s, args.run, args.threshold, actor=_actor(args), note=args.note).id
    print(f"exporting run {args.run} (release {release_id}) to {args.out} ...", file=sys.stderr)
    meta = perform_release(ws, sessions, release_id, Path(args.out))
    with sessions.begin() as s:
        from db import releases as relq

        out = release_dict(relq.get_release(s, release_id)) | {"threshold": meta["threshold"]}
    emit(args, out, lambda r: f"release {r['id']}: bundle {r['bundle_sha256'][:12]} in {r['path']} "
                              f"(threshold {r['threshold']['image']:.4g}, {r['info']['golden']} golden images, "
                              f"onnxruntime vs torch: scores within {r['info']['score_max_abs_diff']:.2g})")
    return 0


def cmd_import_line(args: argparse.Namespace) -> int:
    """Bring a line scorer's results file back: verdicts stored, REVIEW/NOK images queued for review."""
    from engine.services.line import import_line_results

    ws, sessions = open_workspace()
    path = Path(args.results).expanduser()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise CliExit(EXIT_USER_ERROR, f"{path}: cannot read ({exc.strerror or exc})") from None
    images = Path(args.images).expanduser() if args.images else None
    report = import_line_results(ws, sessions, args.run, text, actor=_actor(args), where=str(path),
                                 images_dir=images).as_dict()
    emit(args, report, lambda r: "\n".join(
        [f"run {r['run_id']}: stored {r['stored']} line results ({r['already_stored']} already stored), "
         f"{r['queued_for_review']} images queued for review on the Review page"]
        + [f"  image not found: {p}" for p in r["missing_images"]]
        + [f"  skipped: {s['reason']}" for s in r["skipped"]]))
    return 0


def _user_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="name recorded as author in the audit trail (default: your login name)")


def _args_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir")
    p.add_argument("--name", required=True)
    p.add_argument("--layout", default="auto", choices=["auto", "seed", "mvtec", "flat"])
    _user_arg(p)


def _args_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=DEMO_NAME)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--train-ok", type=int, default=150)
    p.add_argument("--test-ok", type=int, default=40)
    p.add_argument("--test-nok", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-training", action="store_true",
                   help="also queue one DFR training of it when the workspace has no run yet (make run)")
    _user_arg(p)


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True, choices=["ae", "dfr"])
    from engine.config import PRESETS

    p.add_argument("--preset", metavar="PRESET", help="starting values (default: the family's CPU default): "
                   + "; ".join(f"{name}: {pre.description.rstrip('.')}" for name, pre in PRESETS.items()))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--parent", type=int, help="run this one retrains (e.g. after corrections)")
    p.add_argument("--wait", action="store_true")
    _user_arg(p)


def _args_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--dataset")
    p.add_argument("--wait", action="store_true")
    _user_arg(p)


def _args_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="run one job (if any is queued), then exit")
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit after this long with an empty queue")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="where jobs run: child processes of this worker (local, default) or Ray Jobs on a "
                        "Ray cluster (ray); default $PREFILTER_QA_EXECUTOR")
    p.add_argument("--ray-address", default=None, metavar="URL",
                   help="the Ray dashboard (Jobs API), default $PREFILTER_QA_RAY_ADDRESS or http://127.0.0.1:8265")


PREDICT_EXIT_CODES = """exit codes:
  0  every image was scored
  3  some images were scored, some could not be (each row says why)
  2  no image could be scored
  1  nothing was scored because of a mistake in the request (no such run, run not trained,
     no threshold, --out is a file, a path with a NUL byte)"""


def _args_predict(p: argparse.ArgumentParser) -> None:
    p.epilog, p.formatter_class = PREDICT_EXIT_CODES, argparse.RawDescriptionHelpFormatter
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--out", type=Path, help="folder for heatmaps (default: the run's predictions/)")
    p.add_argument("--no-heatmaps", action="store_true",
                   help="score only: write no heatmap overlay (faster)")
    p.add_argument("--results", type=Path, metavar="FILE",
                   help="append one line per image to FILE (.csv with a header when new, or .jsonl)")
    p.add_argument("paths", nargs="+", metavar="PATH")


def _args_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--threshold", type=int, help="threshold id (default: the run's active threshold)")
    p.add_argument("--out", type=Path, required=True, help="new (or empty) folder for the bundle")
    p.add_argument("--note", help="why this release (recorded)")
    _user_arg(p)


def _args_import_line(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="a results file (JSONL) written by prefilter-qa-line")
    p.add_argument("--run", type=int, required=True, help="the run its bundle was released from")
    p.add_argument("--images", help="folder holding the judged images, when they are no longer where the line "
                                    "saw them (matched by file name)")
    _user_arg(p)


COMMANDS: dict[str, tuple[str, Any, Any]] = {
    "demo": ("make + import the synthetic demo dataset", _args_demo, cmd_demo),
    "import": ("register a dataset folder (layouts: seed, mvtec, flat)", _args_import, cmd_import),
    "datasets": ("list datasets with counts", lambda p: None, cmd_datasets),
    "train": ("enqueue training + evaluation on the test split", _args_train, cmd_train),
    "evaluate": ("enqueue a new evaluation of a trained run", _args_evaluate, cmd_evaluate),
    "worker": ("run queued jobs", _args_worker, cmd_worker),
    "jobs": ("list jobs", lambda p: p.add_argument("--limit", type=int, default=50), cmd_jobs),
    "cancel": ("cancel a queued or running job", lambda p: (p.add_argument("job_id", type=int), _user_arg(p)),
               cmd_cancel),
    "runs": ("list runs / show one", lambda p: p.add_argument("id", type=int, nargs="?"), cmd_runs),
    "predict": ("score images with the run's active threshold", _args_predict, cmd_predict),
    "report": ("an evaluation as CSV (per test image) or PDF (for change control)", args_report, cmd_report),
    "users": ("dashboard accounts: init, add, list, role, passwd, disable, enable", args_users, cmd_users),
    "export": ("release a run + threshold as a bundle for prefilter-qa-line", _args_export, cmd_export),
    "import-line": ("bring line results back (REVIEW/NOK images to the Review page)", _args_import_line,
                    cmd_import_line),
}
