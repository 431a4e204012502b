"""Fixtures for the line scorer: one exported tiny model per session, fresh bundles per test.

The line package is used from line/ even when it is not pip-installed (sys.path + PYTHONPATH
for subprocesses), so these tests run in the main venv as soon as onnxruntime, onnx and
onnxscript are there; without them the bundle tests skip and say why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINE = REPO / "line"
try:
    import prefilter_qa_line  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(LINE))

from tests.line import bundles  # noqa: E402


@dataclass(frozen=True)
class Golden:
    files: list[tuple[Path, str]]  # (path, "ok"|"nok")
    scores: list[float]  # torch reference scores
    model: bytes


THRESHOLD = 0.14  # between the OK golden scores (~0.02) and the NOK ones (~0.26)
BAND = (0.1, 0.2)


@pytest.fixture(scope="session")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Golden:
    for mod in ("onnxruntime", "onnx", "onnxscript"):
        pytest.importorskip(mod, reason=f"{mod} is needed to build and run test bundles "
                                        f"(pip install -e 'line[test]')")
    d = tmp_path_factory.mktemp("golden-src")
    files = [(bundles.part_image(d / f"ok_{i}.png", False, seed=i), "ok") for i in range(2)]
    files += [(bundles.part_image(d / f"nok_{i}.png", True, seed=10 + i), "nok")
              for i in range(2)]
    scores = bundles.reference_scores([p for p, _ in files])
    return Golden(files=files, scores=scores, model=bundles.export_model())


@pytest.fixture
def bundle_dir(tmp_path: Path, golden: Golden) -> Path:
    """A good bundle at tmp_path/release/bundle (threshold 0.14, band [0.1, 0.2], id 12)."""
    return bundles.write_bundle(tmp_path / "release" / "bundle", golden.model, golden.files,
                                THRESHOLD, BAND, threshold_id=12, scores=golden.scores)


def run_cli(*args: str | Path, cwd: Path, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m prefilter_qa_line ARGS` with the source tree on PYTHONPATH."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(LINE)] + (
        [e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "prefilter_qa_line", *map(str, args)],
                          cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)
