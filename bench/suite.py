"""`python -m bench.accuracy --suite DIR [DIR ...] [--demo]`: every dataset x every system, one table.

Systems: the autoencoder (`ae`), the `dfr` default, the thesis' DFR done literally at the same
backbone and input (`dfr` with every addition off), `auto` and each of its candidates trained
on its own (so auto's pick can be checked against the candidate that is best on the real
defects), and the anomalib anchors PaDiM, DFM, PatchCore (`bench.anchors`, optional extra
`bench`) on the same weights, input size, hold-out and metric code. Products through the real
command line and worker (`bench.accuracy.run_preset`), each dataset in its own temporary workspace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, load1, machine, table, write_json

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


def run_dataset(label: str, data: Path | None, demo: bool, only: set[str] | None,
                extra: list[str]) -> list[dict[str, Any]]:
    from bench.accuracy import DATASET, _cli, run_preset

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        home = Path(tmp) / "ws"
        if demo:
            _cli(home, "demo", "--name", DATASET)
        else:
            _cli(home, "import", str(data), "--name", DATASET)
        for name, preset, sets in systems():
            if only and name not in only:
                continue
            print(f"[suite] {label}: {name} ...", file=sys.stderr, flush=True)
            try:
                row = run_preset(home, preset, extra + sets)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                row = {"status": "failed", "note": str(exc)[:300]}
            if name == "auto" and row.get("run_id") is not None:
                info = _cli(home, "runs", str(row["run_id"])).get("info", {}).get("auto", {})
                row["note"] = f"picked {info.get('chosen')}"
                row["auto_pick"] = info.get("chosen")
            rows.append(row | {"dataset": label, "system": name})
        if not only or "anchors" in only:
            print(f"[suite] {label}: anchors ...", file=sys.stderr, flush=True)
            rows += [r | {"dataset": label, "system": r.get("preset", "anchor").replace("anchor:", "")}
                     for r in _anchors(data, demo, Path(tmp))]
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset: the best anchor, the dfr default, and whether auto picked the best candidate."""
    out = []
    for label in dict.fromkeys(r["dataset"] for r in rows):
        mine = {r["system"]: r for r in rows if r["dataset"] == label and r.get("status") == "succeeded"}
        anchors = [mine[a] for a in ("padim", "dfm", "patchcore") if a in mine]
        best = lambda key: max((a.get(key) or 0 for a in anchors), default=None)  # noqa: E731
        dfr = mine.get("dfr", {})
        cands = {"default": dfr} | {k.removeprefix("candidate "): v for k, v in mine.items()
                                    if k.startswith("candidate ")}
        real_best = max(cands, key=lambda k: (cands[k].get("image_auroc") or 0) + (cands[k].get("pixel_auroc") or 0))
        pick = mine.get("auto", {}).get("auto_pick")
        out.append({"dataset": label, "best anchor image": best("image_auroc"), "dfr image": dfr.get("image_auroc"),
                    "best anchor pixel": best("pixel_auroc"), "dfr pixel": dfr.get("pixel_auroc"),
                    "auto pick": pick, "best candidate on real defects": real_best,
                    "auto right": None if pick is None else pick == real_best})
    return out


COLS = [("dataset", "dataset"), ("system", "system"), ("status", "status"), ("image_auroc", "image AUROC"),
        ("ci", "95% CI"), ("pixel_auroc", "pixel AUROC"), ("aupro", "AUPRO"), ("train_s", "train s"),
        ("eval_s", "eval s"), ("note", "note")]
SUMMARY_COLS = [(k, k) for k in ("dataset", "best anchor image", "dfr image", "best anchor pixel", "dfr pixel",
                                 "auto pick", "best candidate on real defects", "auto right")]


def run_suite(datasets: list[Path], demo: bool, only: set[str] | None, json_path: Path | None,
              extra: list[str] = ()) -> int:
    """`extra`: --set values for every product system (e.g. a smoke run's tiny settings)."""
    report: dict[str, Any] = {"benchmark": "accuracy-suite", "machine": machine(), "rows": []}
    for d in datasets:
        report["rows"] += run_dataset(d.name, d.expanduser().resolve(), False, only, list(extra))
    if demo:
        report["rows"] += run_dataset("demo", None, True, only, list(extra))
    report["summary"] = summary(report["rows"])
    report["machine"]["load1_end"] = load1()
    path = write_json(json_path, report, "accuracy-suite.json")
    rows = [r | {"ci": r.get("image_auroc_ci95"), "note": (r.get("note") or "")[:60]} for r in report["rows"]]
    print(table(rows, COLS))
    print()
    print(table(report["summary"], SUMMARY_COLS))
    print(f"\nJSON: {path}")
    return 0 if all(r.get("status") in ("succeeded", "skipped") for r in report["rows"]) else 1
