"""Memory probes of the benchmarks: process RSS on CPU, allocated memory on CUDA.

Peak memory on CPU is the process's peak resident set (VmHWM). Linux lets a process reset its
own peak (`/proc/self/clear_refs` <- "5"), so one process can report the peak of each phase.
"""

from __future__ import annotations

import resource
from pathlib import Path


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set of this process, MB."""
    kb = _status_kb("VmRSS")
    return round((kb or 0) / 1024, 1)


def peak_rss_mb() -> float:
    """Peak resident set since the process started or the last `reset_peak_rss`, MB."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: lifetime peak only
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)


def reset_peak_rss() -> bool:
    """Start a new peak at the current RSS (Linux); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_parts_mb() -> dict[str, float]:
    """Current resident set split into anonymous (heap, tensors) and file-backed (libraries,
    memory-mapped files such as DFR's feature cache) pages, MB."""
    return {k: round((_status_kb(k) or 0) / 1024, 1) for k in ("RssAnon", "RssFile", "RssShmem")}


class _PartsSampler:
    """Background thread sampling `rss_parts_mb` to find the peak of anonymous memory."""

    def __init__(self, every_s: float = 0.05) -> None:
        import threading

        self.every_s, self.peak = every_s, {"RssAnon": 0.0, "RssFile": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            parts = rss_parts_mb()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], parts[k])
            self._stop.wait(self.every_s)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"anon_peak_mb": self.peak["RssAnon"], "file_peak_mb": self.peak["RssFile"]}


class MemoryProbe:
    """Peak memory of a phase: process RSS on CPU, `max_memory_allocated` on CUDA (MB).

    On CPU a sampler thread also tracks the peak of anonymous and file-backed RSS separately
    (sampled every 50 ms, so a very short spike can be missed; VmHWM cannot).
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self._sampler: _PartsSampler | None = None

    def start(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            reset_peak_rss()
            self.base = rss_mb()
            self.base_anon = rss_parts_mb()["RssAnon"]
            self._sampler = _PartsSampler()

    def peak(self) -> dict[str, float]:
        """{"peak_mb": absolute peak, "delta_mb": peak above the level at start()}."""
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = peak_rss_mb()
        out = {"peak_mb": round(peak, 1), "delta_mb": round(peak - self.base, 1)}
        if self._sampler is not None:
            parts = self._sampler.stop()
            self._sampler = None
            out.update(parts, anon_delta_mb=round(parts["anon_peak_mb"] - self.base_anon, 1))
        return out
