"""Test bundles until the real exporter lands: a tiny torch module exported with
torch.onnx.export(dynamo=True) under the bundle contract, plus bundle.json and golden/.

The model: pixels /255, gray = channel mean, deviation map = |gray - 7x7 local mean| smoothed
3x3, score = peak deviation / gray contrast (max - min). A flat gray image has zero contrast,
so its score is 0/0 = NaN: the non-finite-score case comes for free.
Golden scores are computed by the torch module on pixels from the image rule, as the exporter
does, so the self-test checks onnxruntime against torch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from prefilter_qa_line.bundle import verdict
from prefilter_qa_line.imagerule import IMAGE_RULE, model_input, read_image

SIZE = 64  # model input side of the test bundles


def tiny_module():  # -> torch.nn.Module (torch imported here only: tests of no-torch import us)
    import torch
    import torch.nn.functional as F

    class TinyDeviation(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = image.to(torch.float32) / 255.0  # (N, S, S, 3)
            gray = x.mean(dim=-1).unsqueeze(1)  # (N, 1, S, S)
            local = F.avg_pool2d(gray, 7, stride=1, padding=3, count_include_pad=False)
            dev = F.avg_pool2d((gray - local).abs(), 3, stride=1, padding=1,
                               count_include_pad=False)  # (N, 1, S, S)
            amap = dev[:, 0]  # (N, S, S)
            contrast = gray.amax(dim=(1, 2, 3)) - gray.amin(dim=(1, 2, 3))  # (N,)
            return amap.amax(dim=(1, 2)) / contrast, amap

    return TinyDeviation().eval()


def export_model(size: int = SIZE) -> bytes:
    """model.onnx bytes: input image uint8 (N, S, S, 3), outputs score (N,), map (N, S, S)."""
    import torch

    n = torch.export.Dim("N", min=1, max=4096)
    prog = torch.onnx.export(tiny_module(), (torch.zeros(2, size, size, 3, dtype=torch.uint8),),
                             input_names=["image"], output_names=["score", "map"],
                             dynamic_shapes={"image": {0: n}}, opset_version=18, dynamo=True,
                             verbose=False)
    with tempfile.TemporaryDirectory() as tmp:  # ONNXProgram.save wants a path
        prog.save(str(Path(tmp) / "model.onnx"))
        return (Path(tmp) / "model.onnx").read_bytes()


def reference_scores(paths: list[Path], size: int = SIZE, enhance: bool = False) -> list[float]:
    """What the exporter would record: the torch module on the image rule's pixels."""
    import torch

    x = np.stack([model_input(read_image(p), size, enhance) for p in paths])  # (N, S, S, 3)
    with torch.inference_mode():
        score, _ = tiny_module()(torch.from_numpy(x))
    return [float(s) for s in score.numpy()]


def part_image(path: Path, defect: bool, seed: int, size: tuple[int, int] = (80, 60)) -> Path:
    """A smooth moulded-part-like gradient (+ a dark scratch when `defect`), PNG/JPEG by suffix."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 90 + 80 * xx / max(w - 1, 1) + 30 * yy / max(h - 1, 1)
    img = base[..., None] + np.array([0, 5, 10]) + rng.normal(0, 1.5, (h, w, 3))
    if defect:
        img[h // 3: h // 3 + 3, w // 4: w // 4 + w // 3] -= 70
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def flat_image(path: Path, value: int = 128, size: tuple[int, int] = (40, 40)) -> Path:
    """A uniform image: zero contrast, so the tiny model's score is NaN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(dst: Path, model: bytes, golden: list[tuple[Path, str]], threshold: float,
                 band: tuple[float, float] | None = None, threshold_id: int = 12,
                 pixel: float | None = None, map_range: tuple[float, float] | None = None,
                 enhance: bool = False, scores: list[float] | None = None,
                 size: int = SIZE) -> Path:
    """A bundle folder under the contract; golden verdicts from `scores` (default: torch's)."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "golden").mkdir(exist_ok=True)
    (dst / "model.onnx").write_bytes(model)
    scores = scores if scores is not None else reference_scores([p for p, _ in golden], size,
                                                                enhance)
    entries = []
    for (src, label), s in zip(golden, scores):
        shutil.copyfile(src, dst / "golden" / src.name)
        entries.append({"file": src.name, "label": label, "score": s,
                        "verdict": verdict(s, threshold, band)})
    (dst / "golden" / "golden.json").write_text(json.dumps(entries, indent=1))
    meta = {"format_version": 1, "created_at": "2026-11-01T10:00:00+00:00", "run_id": 3,
            "model": "tiny", "preset": "test", "config": {"input_size": size},
            "checkpoint_sha256": "0" * 64,
            "input": {"size": size, "layout": "NHWC", "dtype": "uint8", "image_rule": IMAGE_RULE,
                      "enhance": enhance},
            "score_rule": "peak of the smoothed local deviation over the gray contrast",
            "threshold": {"id": threshold_id, "image": threshold, "pixel": pixel,
                          "review_band": None if band is None else list(band), "set_by": "alice",
                          "at": "2026-11-01T09:00:00+00:00"},
            "map_range": None if map_range is None else list(map_range),
            "files": {},
            "exporter": {"torch": "test", "onnx": "test", "onnxruntime": "test", "opset": 18},
            "parity": {"score_rtol": 1e-5, "score_atol": 1e-6, "map_atol_of_range": 1e-4}}
    return rewrite_bundle(dst, lambda m, g: None, meta=meta)


def rewrite_bundle(dst: Path, change: Callable[[dict, list[dict]], None],
                   meta: dict | None = None) -> Path:
    """Apply `change(meta, golden_entries)`, then re-hash every file and write bundle.json last
    (as an exporter must), so the bundle is consistent again — a *signed* change."""
    meta = meta if meta is not None else json.loads((dst / "bundle.json").read_text())
    entries = json.loads((dst / "golden" / "golden.json").read_text())
    change(meta, entries)
    (dst / "golden" / "golden.json").write_text(json.dumps(entries, indent=1))
    files = ["model.onnx", "golden/golden.json"] + [f"golden/{e['file']}" for e in entries]
    meta["files"] = {f: sha256((dst / f).read_bytes()) for f in files}
    tmp = dst / ".bundle.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(dst / "bundle.json")
    return dst
