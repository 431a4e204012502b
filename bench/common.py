"""Shared helpers of the benchmarks: machine description, memory peaks, timing, isolation, output.

Measurements on a shared machine are noisy, so every timing is repeated and reported as a
median, and every figure carries the 1-minute load average and the share of the wall time our
process actually got on the CPU (`cpu_share`: CPU seconds / (wall seconds · threads); well
below 1 means other processes took the cores).

Memory probes are in `bench.memory`; each preset / size runs in a fresh subprocess so that
peaks never mix (`run_isolated`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"  # git-ignored default folder of JSON results
DATA_CACHE_ENV = "PREFILTER_QA_BENCH_DATA"  # where generated benchmark images are kept


def data_cache() -> Path:
    """Folder of generated images reused between benchmark runs (generation is not timed)."""
    return Path(os.environ.get(DATA_CACHE_ENV) or Path(tempfile.gettempdir()) / "prefilter-qa-bench")


# ---------------------------------------------------------------- machine and load

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def load1() -> float:
    """1-minute load average (runnable processes; 2 = both cores busy on this machine)."""
    return round(os.getloadavg()[0], 2)


def _cpu_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    return sum(f[:8]) - idle, sum(f[:8])


def busy_cores(window_s: float = 3.0) -> float:
    """Cores kept busy by all processes over the next `window_s` seconds (call while idle)."""
    b0, t0 = _cpu_busy_jiffies()
    time.sleep(window_s)
    b1, t1 = _cpu_busy_jiffies()
    cores = os.cpu_count() or 1
    return round(cores * (b1 - b0) / max(t1 - t0, 1), 2)


QUIET = {"max_wait_s": 0.0, "max_busy": 0.3, "log": []}  # set by --quiet-wait


def wait_quiet(label: str) -> dict[str, Any]:
    """Wait (up to QUIET["max_wait_s"]) until other processes keep < max_busy cores busy.

    The machine is shared: another developer's training takes a core or two for minutes and
    cuts our figures by 2-10x. Waiting for a quiet moment before each measurement is what
    makes runs comparable; what was found is recorded with the results either way.
    """
    t0 = time.perf_counter()
    busy = busy_cores(1.0)
    while busy > QUIET["max_busy"] and time.perf_counter() - t0 < QUIET["max_wait_s"]:
        busy = busy_cores(3.0)
    rec = {"what": label, "waited_s": round(time.perf_counter() - t0, 1), "busy_cores_before": busy,
           "load1": load1()}
    QUIET["log"].append(rec)
    return rec


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(), "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": _ram_gb(), "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "load1_start": load1(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


# ---------------------------------------------------------------- timing

def timed_call(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """(wall s, process CPU s) of one call, the device synchronised before and after."""
    sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class CpuClock:
    """Wall and process CPU time of a stretch of work, and the CPU share it got."""

    def __enter__(self) -> CpuClock:
        self.w0, self.c0, self.l0 = time.perf_counter(), time.process_time(), load1()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0
        self.load = max(self.l0, load1())

    def share(self, threads: int) -> float:
        return round(self.cpu / max(self.wall * max(threads, 1), 1e-9), 2)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


# ---------------------------------------------------------------- isolation

INLINE = {"on": False}  # set by --inline: call measurements in this process (smoke tests only)


def add_run_options(p: Any) -> None:
    """`--quiet-wait` and `--inline`, the options every isolated-measurement script shares."""
    p.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                   help="before each measurement wait up to this long until other processes keep "
                        "< 0.3 cores busy (shared machines)")
    p.add_argument("--inline", action="store_true",
                   help="no fresh subprocess per measurement (memory peaks mix): for smoke tests")


def apply_run_options(args: Any) -> None:
    INLINE["on"] = args.inline
    QUIET["max_wait_s"] = args.quiet_wait


EXACT_RSS_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}  # glibc: blocks >= 64 KiB mmapped, unmapped on free


def run_isolated(func: str, kwargs: dict[str, Any], threads: int | None = None,
                 timeout: float = 3600, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Call `bench.<module>:<function>(**kwargs)` in a fresh Python and return its dict.

    Fresh process: its peak RSS is its own (no earlier preset's allocations), torch starts cold.
    With INLINE on, the function runs in this process instead (fast; memory peaks then mix).
    `env_extra=EXACT_RSS_ENV` makes RSS follow live tensors closely: glibc then returns every
    freed block of 64 KiB or more to the OS instead of keeping it for reuse, so a step's peak
    above the level before it is what the step itself allocated.
    """
    if QUIET["max_wait_s"] > 0:
        wait_quiet(func + " " + json.dumps(kwargs)[:80])
    if INLINE["on"]:
        import importlib
        import traceback

        module, _, name = func.partition(":")
        try:
            set_threads()
            return json.loads(json.dumps(getattr(importlib.import_module(module), name)(**kwargs), default=str))
        except Exception:  # noqa: BLE001 - same contract as a failed subprocess
            return {"error": f"{func} failed: {traceback.format_exc()[-1500:]}"}
    env = dict(os.environ) | (env_extra or {})
    if threads:
        env["PREFILTER_QA_BENCH_THREADS"] = str(threads)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    try:
        proc = subprocess.run([sys.executable, "-m", "bench._child", func, json.dumps(kwargs), str(out)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {"error": f"{func} exited {proc.returncode}: {tail}"}
        return json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        return {"error": f"{func} timed out after {timeout:.0f} s"}
    finally:
        out.unlink(missing_ok=True)


# ---------------------------------------------------------------- output

def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        return f"{v:.3g}" if a < 10 else f"{v:.1f}" if a < 1000 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return str(v)


def table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    """Plain-text table; `cols` = [(key, header)]. Also valid Markdown."""
    head = [h for _, h in cols]
    cells = [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(c) for c in cells])


def write_json(path: Path | None, obj: dict[str, Any], default_name: str) -> Path:
    path = Path(path) if path else RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)
    return path


def set_threads() -> int:
    """torch intra-op threads for a benchmark process: $PREFILTER_QA_BENCH_THREADS or all cores."""
    import torch

    n = int(os.environ.get("PREFILTER_QA_BENCH_THREADS") or len(os.sched_getaffinity(0)))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
