"""Forward variants beside plain NCHW at one batch size: channels-last, torch.compile, AMP on CUDA.

Interleaved (nchw, variant, nchw, variant, ...) so that a change in the machine's load hits
all variants alike. `setup_s` is the first call (for torch.compile: the compilation).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.common import median, sync


def _timed(fn: Callable[[], object], device: str) -> float:
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def variant_rows(model: torch.nn.Module, x: torch.Tensor, batch: int, device: str, reps: int, amp: bool,
                 compile: bool) -> list[dict[str, Any]]:
    """`model` is the evaluation's (channels-last, `engine.evaluation.loading.prepare_model`); "nchw" is the
    plain contiguous layout of before, for comparison; `vs_eager` is relative to "nchw"."""
    cl = torch.channels_last
    xb = x[:batch].to(device).contiguous()
    m_nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    m_cl, x_cl = model, xb.contiguous(memory_format=cl)
    cuda = device.startswith("cuda")

    def run(m: torch.nn.Module, inp: torch.Tensor, use_amp: bool) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode(), torch.autocast("cuda", enabled=use_amp and cuda):
                return m(inp)
        return call

    variants: dict[str, Callable[[], object]] = {"nchw": run(m_nchw, xb, amp),
                                                  "channels_last": run(m_cl, x_cl, amp)}
    notes: dict[str, str] = {}
    if cuda:
        variants["channels_last_fp32" if amp else "channels_last_amp"] = run(m_cl, x_cl, not amp)
    if compile:
        try:
            variants["compile_channels_last"] = run(torch.compile(copy.deepcopy(m_cl)), x_cl, amp)
        except Exception as exc:  # noqa: BLE001 - report, don't fail the benchmark
            notes["compile"] = f"{type(exc).__name__}: {exc}"[:120]
    setup: dict[str, float] = {}
    for name in list(variants):
        try:
            setup[name] = _timed(variants[name], device)
        except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for inductor
            notes[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]
            del variants[name]
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for name, fn in variants.items():
            times[name].append(_timed(fn, device))
    eager = median(times["nchw"])
    rows = [{"variant": k, "batch": batch, "img_per_s": batch / median(v), "vs_eager": eager / median(v),
             "setup_s": setup[k], "note": notes.get(k, "")} for k, v in times.items()]
    rows += [{"variant": k, "batch": batch, "note": v} for k, v in notes.items() if k not in times]
    return rows
