"""Torch-free line scorer for prefilter-qa bundles (see README.md beside this package).

The API for the exporter and the dashboard:

    load_bundle(folder) -> Bundle          verify format, every file's sha256, image rule
    open_scorer(folder, backend="onnxruntime", threads=None) -> Scorer
                                           load_bundle + model + self-test (raises on failure)
    Scorer.self_test() -> list[dict]       golden re-scored; raises SelfTestError
    Scorer.score_images(paths, heatmaps=None) -> list[Result]
    read_results(jsonl) -> Iterator[dict]  the results file, malformed lines skipped
    bundle_sha(folder) -> str              sha256 of bundle.json (the bundle's identity)
    verdict(score, threshold, review_band) engine's verdict rule for one score

This package never imports torch (tests/line/test_no_torch.py proves it).
"""

from __future__ import annotations

from prefilter_qa_line.bundle import (Bundle, BundleError, SelfTestError, Threshold, bundle_sha,
                                      load_bundle, verdict)
from prefilter_qa_line.imagerule import IMAGE_RULE, ImageRuleError
from prefilter_qa_line.results import Result, ResultsWriteError, read_results, scored_paths
from prefilter_qa_line.scorer import Scorer, open_scorer

__version__ = "0.1.0"
__all__ = ["IMAGE_RULE", "Bundle", "BundleError", "ImageRuleError", "Result",
           "ResultsWriteError", "Scorer", "SelfTestError", "Threshold", "bundle_sha",
           "load_bundle", "open_scorer", "read_results", "scored_paths", "verdict", "versions"]


def versions() -> dict[str, str]:
    """Versions that decide decoded pixels; an exporter may record them in bundle.json's
    "exporter" block, and a mismatch is logged when the bundle is loaded."""
    import cv2
    import numpy
    import PIL

    return {"pillow": PIL.__version__, "opencv": cv2.__version__, "numpy": numpy.__version__}
