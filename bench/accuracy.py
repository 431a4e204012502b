"""Accuracy and time of each preset side by side on one dataset, through the real command line.

    .venv/bin/python -m bench.accuracy --data DIR [--presets ae dfr ...] [--set KEY=VALUE] [--json PATH]
    .venv/bin/python -m bench.accuracy --demo [--presets ...]        # the 256² demo dataset
    .venv/bin/python -m bench.accuracy --suite DIR [DIR ...] [--with-demo]   # all systems, one table

In a temporary workspace: `prefilter-qa import DIR` (or `prefilter-qa demo`), then for each
preset whose weights are available locally `prefilter-qa train --preset P --wait --json`
(a real worker and job child: training, then evaluation on the test split). Presets whose
backbone weights are missing are skipped with the reason. Prints image AUROC (95% bootstrap
interval), pixel AUROC, AUPRO, false-reject rate at zero escapes (share of OK test images
rejected by the highest threshold that still rejects every NOK one), training and evaluation
seconds (from the run's records) and the wall time of the whole `train --wait`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, load1, machine, table, write_json

DATASET = "bench"


def _cli(home: Path, *args: str, timeout: float = 6 * 3600) -> dict | list:
    from engine.workspace import DATABASE_URL_ENV, HOME_ENV

    env = os.environ | {HOME_ENV: str(home)}
    env.pop(DATABASE_URL_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"prefilter-qa {' '.join(args)} exited {proc.returncode}: "
                           f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return json.loads(proc.stdout)


def run_preset(home: Path, preset: str, sets: list[str]) -> dict[str, Any]:
    from engine.config import PRESETS

    model = PRESETS[preset].model
    args = ["train", "--dataset", DATASET, "--model", model, "--preset", preset, "--wait"]
    for s in sets:
        key = s.partition("=")[0]
        if key in {f for f in PRESETS[preset].config.__dataclass_fields__}:
            args += ["--set", s]
    t0, l0 = time.perf_counter(), load1()
    run = _cli(home, *args)
    wall = time.perf_counter() - t0
    m = run.get("metrics") or {}
    info = run.get("info") or {}
    eval_seconds = None
    if run.get("evaluation_id") is not None:
        mfile = home / "runs" / str(run["id"]) / "evaluations" / str(run["evaluation_id"]) / "metrics.json"
        if mfile.is_file():
            eval_seconds = json.loads(mfile.read_text()).get("seconds")
    cfg = run.get("config") or {}
    return {
        "preset": preset, "model": model, "status": run.get("status"), "run_id": run.get("id"),
        "image_auroc": m.get("image_auroc"), "image_auroc_ci95": m.get("image_auroc_ci95"),
        "pixel_auroc": m.get("pixel_auroc"), "aupro": m.get("aupro"), "f1_max": m.get("f1_max"),
        "frr_at_zero_escapes": m.get("fpr_at_full_recall"), "per_defect": {
            k: v.get("image_auroc") for k, v in (m.get("per_defect") or {}).items()},
        "train_s": info.get("train_seconds"), "eval_s": eval_seconds, "wall_s": wall,
        "n_train": info.get("n_train"), "n_ok": m.get("n_ok"), "n_nok": m.get("n_nok"),
        "latent_dim": info.get("latent_dim"), "epochs": cfg.get("epochs"), "input_size": cfg.get("input_size"),
        "backbone": cfg.get("backbone"), "load1": max(l0, load1()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="a dataset folder in an import layout (seed / mvtec)")
    src.add_argument("--demo", action="store_true", help="`prefilter-qa demo` (256², 150 train OK, 40+40 test)")
    src.add_argument("--suite", nargs="*", type=Path, metavar="DIR",
                     help="every dataset folder x every system (ae, dfr, literal DFR, auto and its candidates, "
                          "anchors) in one table (bench.suite)")
    p.add_argument("--with-demo", action="store_true", help="with --suite: the demo dataset too")
    p.add_argument("--only", nargs="+", default=None,
                   help="with --suite: only these systems (e.g. dfr 'dfr literal' anchors)")
    p.add_argument("--resume", action="store_true",
                   help="with --suite: keep the rows that succeeded in the --json file and run only the rest")
    p.add_argument("--presets", nargs="+", default=["ae", "dfr", "ae-512", "dfr-128", "dfr-170"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (applied to the presets that have it)")
    p.add_argument("--keep", type=Path, default=None, help="use (and keep) this workspace folder")
    p.add_argument("--json", type=Path, default=None,
                   help="write results here (default bench/results/accuracy-<dataset>.json)")
    args = p.parse_args(argv)
    if args.suite is not None:
        if not args.suite and not args.with_demo:
            p.error("--suite needs dataset folders, --with-demo, or both")
        from bench.suite import run_suite

        return run_suite(args.suite, args.with_demo, set(args.only) if args.only else None, args.json, args.set,
                         args.resume)
    from bench.models import weights_available
    from engine.config import PRESETS

    bad = [x for x in args.presets if x not in PRESETS]
    if bad:
        p.error(f"unknown preset(s) {bad}; choose from {list(PRESETS)}")
    home = args.keep or Path(tempfile.mkdtemp(prefix="bench-accuracy-"))
    label = "demo-256" if args.demo else args.data.name
    report: dict[str, Any] = {"benchmark": "accuracy", "dataset": label, "machine": machine(),
                              "args": {k: str(v) for k, v in vars(args).items()}, "rows": []}
    try:
        t = time.perf_counter()
        if args.demo:
            report["import"] = _cli(home, "demo", "--name", DATASET)
        else:
            report["import"] = _cli(home, "import", str(args.data.expanduser().resolve()), "--name", DATASET)
        report["import_s"] = time.perf_counter() - t
        for preset in args.presets:
            ok, why = weights_available(preset)
            if not ok:
                report["rows"].append({"preset": preset, "model": PRESETS[preset].model,
                                       "status": "skipped", "note": why})
                print(f"[accuracy] {preset}: skipped ({why[:100]})", file=sys.stderr, flush=True)
                continue
            print(f"[accuracy] {preset} ...", file=sys.stderr, flush=True)
            try:
                report["rows"].append(run_preset(home, preset, args.set))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                report["rows"].append({"preset": preset, "status": "failed", "note": str(exc)})
    finally:
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    report["machine"]["load1_end"] = load1()
    path = write_json(args.json, report, f"accuracy-{label}.json")
    print(render(report))
    print(f"\nJSON: {path}")
    return 0 if all(r["status"] in ("succeeded", "skipped") for r in report["rows"]) else 1


COLS = [("preset", "preset"), ("status", "status"), ("image_auroc", "image AUROC"), ("ci", "95% CI"),
        ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"), ("frr_at_zero_escapes", "FRR @ 0 escapes"),
        ("train_s", "train s"), ("eval_s", "eval s"), ("wall_s", "train --wait s"), ("epochs", "epochs"),
        ("latent_dim", "DFR d"), ("load1", "load1"), ("note", "note")]


def render(report: dict[str, Any]) -> str:
    m, imp = report["machine"], report.get("import", {}).get("imported", {})
    rows = [{**r, "ci": r.get("image_auroc_ci95"), "note": (r.get("note") or "")[:90]} for r in report["rows"]]
    return "\n".join([
        f"Dataset {report['dataset']}: {imp.get('train_ok')} train OK, {imp.get('test_ok')} test OK, "
        f"{imp.get('test_nok')} test NOK, {imp.get('masks')} masks",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, torch {m['torch']}; "
        f"load1 {m['load1_start']} -> {m.get('load1_end')}", "", table(rows, COLS)])


if __name__ == "__main__":
    sys.exit(main())
