"""`python -m bench.accuracy --suite DIR [DIR ...] [--demo]`: every dataset x every system, one table.

Systems: the autoencoder (`ae`), the `dfr` default, the thesis' DFR done literally at the same
backbone and input (`dfr` with every addition off), `auto` and each of its candidates trained
on its own (so auto's pick can be checked against the candidate that is best on the real
defects), and the anomalib anchors PaDiM, DFM, PatchCore (`bench.anchors`, optional extra
`bench`) on the same weights, input size, hold-out and metric code. Products through the real
command line and worker (`bench.accuracy.run_preset`), each dataset in its own temporary workspace.

The whole suite takes hours on a small machine (the autoencoder and PatchCore ~30 min a dataset
on 2 cores), so the JSON is rewritten after every system, each row stamped with the commit and
time it was measured, and `--resume` keeps the rows that succeeded in it and runs only the rest:
an interrupted suite goes on where it stopped, and one can be completed over several sittings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, load1, machine, table, write_json

ANCHORS = ("padim", "dfm", "patchcore")  # the rows of one `bench.anchors` run

LITERAL = ["stages=0,1,2,3,4,5", "position_norm=false", "stage_norm=false", "image_median=false", "score_combine=map",
           "whole_grid=0"]  # the thesis scored the heatmap alone


def systems() -> list[tuple[str, str, list[str]]]:
    """(row name, preset, --set values) of the product's systems in the suite."""
    from engine.training.auto import CANDIDATES

    rows = [("ae", "ae", []), ("dfr", "dfr", []), ("dfr literal", "dfr", LITERAL), ("auto", "auto", [])]
    for name, changes in CANDIDATES.items():
        if changes:
            sets = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in changes.items()]
            rows.append((f"candidate {name}", "dfr", sets))
    return rows


def _anchors(data: Path | None, demo: bool, work: Path) -> list[dict[str, Any]]:
    out = work / "anchors.json"
    args = ["--demo"] if demo else ["--data", str(data)]
    proc = subprocess.run([sys.executable, "-m", "bench.anchors", *args, "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=6 * 3600)
    if not out.is_file():
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [{"preset": "anchors", "status": "skipped" if proc.returncode == 2 else "failed", "note": why}]
    return json.loads(out.read_text())["rows"]


def commit() -> str:
    """The checkout's commit (short), '+' when its tracked files differ from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
        except OSError:  # no git on this machine
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+" if git("status", "--porcelain", "--untracked-files=no") else "")


def run_dataset(label: str, data: Path | None, demo: bool, only: set[str] | None, extra: list[str],
                done: set[str] = frozenset(), on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> None:
    """Run every system of one dataset not in `done` (names of systems already measured), handing
    each row to `on_row` as soon as it is there."""
    from bench.accuracy import DATASET, _cli, run_preset

    todo = [s for s in systems() if (not only or s[0] in only) and s[0] not in done]
    anchors = (not only or "anchors" in only) and not done.issuperset(ANCHORS)
    if not todo and not anchors:
        return
    stamp = {"dataset": label, "commit": commit()}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        home = Path(tmp) / "ws"
        if demo:
            _cli(home, "demo", "--name", DATASET)
        else:
            _cli(home, "import", str(data), "--name", DATASET)
        for name, preset, sets in todo:
            print(f"[suite] {label}: {name} ...", file=sys.stderr, flush=True)
            try:
                row = run_preset(home, preset, extra + sets)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                row = {"status": "failed", "note": str(exc)[:300]}
            if name == "auto" and row.get("run_id") is not None:
                info = _cli(home, "runs", str(row["run_id"])).get("info", {}).get("auto", {})
                row["note"] = f"picked {info.get('chosen')}"
                row["auto_pick"] = info.get("chosen")
                row["auto_synthetic"] = {c["candidate"]: [c["image_auroc"], c["pixel_auroc"]]
                                         for c in info.get("candidates", [])}  # what it chose by
            on_row(row | stamp | {"system": name})
        if anchors:
            print(f"[suite] {label}: anchors ...", file=sys.stderr, flush=True)
            for r in _anchors(data, demo, Path(tmp)):
                on_row(r | stamp | {"system": r.get("preset", "anchor").replace("anchor:", "")})


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset: the best anchor, the dfr default, whether auto picked the candidate best on the real defects
    and what its pick left there (image + pixel AUROC)."""
    out = []
    for label in dict.fromkeys(r["dataset"] for r in rows):
        mine = {r["system"]: r for r in rows if r["dataset"] == label and r.get("status") == "succeeded"}
        anchors = [mine[a] for a in ANCHORS if a in mine]
        best = lambda key: max((a.get(key) or 0 for a in anchors), default=None)  # noqa: E731
        dfr = mine.get("dfr", {})
        cands = {"default": dfr} | {k.removeprefix("candidate "): v for k, v in mine.items()
                                    if k.startswith("candidate ")}
        both = lambda k: (cands[k].get("image_auroc") or 0) + (cands[k].get("pixel_auroc") or 0)  # noqa: E731
        real_best = max(cands, key=both)
        pick = mine.get("auto", {}).get("auto_pick")
        out.append({"dataset": label, "best anchor image": best("image_auroc"), "dfr image": dfr.get("image_auroc"),
                    "best anchor pixel": best("pixel_auroc"), "dfr pixel": dfr.get("pixel_auroc"),
                    "auto pick": pick, "best candidate on real defects": real_best,
                    "auto right": None if pick is None else pick == real_best,
                    "pick's shortfall": round(both(real_best) - both(pick), 4) if pick in cands else None})
    return out


COLS = [("dataset", "dataset"), ("system", "system"), ("status", "status"), ("image_auroc", "image AUROC"),
        ("ci", "95% CI"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"), ("train_s", "train s"),
        ("eval_s", "eval s"), ("commit", "commit"), ("measured", "measured"), ("note", "note")]
SUMMARY_COLS = [(k, k) for k in ("dataset", "best anchor image", "dfr image", "best anchor pixel", "dfr pixel",
                                 "auto pick", "best candidate on real defects", "auto right",
                                 "pick's shortfall")]  # real image + pixel AUROC the pick left


def kept_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier suite's JSON that succeeded (the ones `--resume` does not run again)."""
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())["rows"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"--resume: {path} is not a suite's JSON ({exc})") from None
    return [r for r in rows if r.get("status") == "succeeded"]


def run_suite(datasets: list[Path], demo: bool, only: set[str] | None, json_path: Path | None,
              extra: list[str] = (), resume: bool = False) -> int:
    """`extra`: --set values for every product system (e.g. a smoke run's tiny settings); `resume`:
    keep the succeeded rows of the JSON at json_path and run only what is missing."""
    path = Path(json_path) if json_path else RESULTS / "accuracy-suite.json"
    report: dict[str, Any] = {"benchmark": "accuracy-suite", "machine": machine(),
                              "rows": kept_rows(path) if resume else []}
    if report["rows"]:
        print(f"[suite] resuming: {len(report['rows'])} rows kept from {path}", file=sys.stderr, flush=True)

    def add(row: dict[str, Any]) -> None:
        report["rows"].append(row | {"measured": time.strftime("%Y-%m-%d %H:%M")})
        write_json(path, report, path.name)

    labels = [(d.name, d.expanduser().resolve(), False) for d in datasets] + ([("demo", None, True)] if demo else [])
    for label, data, is_demo in labels:
        done = {r["system"] for r in report["rows"] if r["dataset"] == label}
        run_dataset(label, data, is_demo, only, list(extra), done, add)
    order = {label: i for i, label in enumerate(dict.fromkeys(r["dataset"] for r in report["rows"]))}
    report["rows"].sort(key=lambda r: order[r["dataset"]])  # a dataset's new rows beside its kept ones
    report["summary"] = summary(report["rows"])
    report["machine"]["load1_end"] = load1()
    write_json(path, report, path.name)
    rows = [r | {"ci": r.get("image_auroc_ci95"), "note": (r.get("note") or "")[:60]} for r in report["rows"]]
    print(table(rows, COLS))
    print()
    print(table(report["summary"], SUMMARY_COLS))
    print(f"\nJSON: {path}")
    return 0 if all(r.get("status") in ("succeeded", "skipped") for r in report["rows"]) else 1
