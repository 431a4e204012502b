"""The one direction of imports (DESIGN.md "Layers"), checked on the source and at run time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TORCH_MODULES = ("torch", "torchvision", "timm", "pytorch_msssim")
# engine modules that import torch at module level: the dashboard must never import them
ENGINE_TORCH = ("engine.train", "engine.evaluate", "engine.predict", "engine.models", "engine.checkpoint",
                "engine.data", "engine.eval_data", "engine.feature_cache")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_db_imports_nothing_of_ours() -> None:
    for f in _files("db"):
        bad = {n for n in _imports(f) if _top(n) in ("engine", "dashboard")}
        assert not bad, f"{f.relative_to(REPO)} imports {bad}"


def test_engine_never_imports_streamlit_and_only_jobs_and_cli_import_db() -> None:
    for f in _files("engine"):
        rel = f.relative_to(REPO).as_posix()
        names = _imports(f)
        assert not {n for n in names if _top(n) in ("streamlit", "dashboard")}, rel
        if not (rel.startswith("engine/jobs/") or rel.startswith("engine/cli")):
            assert not {n for n in names if _top(n) == "db"}, f"{rel} imports db"


def test_dashboard_never_imports_torch_or_torch_engine_modules() -> None:
    for f in [*_files("dashboard"), REPO / "streamlit_app.py"]:
        for name in _imports(f):
            assert _top(name) not in TORCH_MODULES, f"{f.relative_to(REPO)} imports {name}"
            assert not name.startswith(ENGINE_TORCH), f"{f.relative_to(REPO)} imports {name}"


PROBE = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("streamlit_app.py", default_timeout=120).run()
assert not at.exception, at.exception
for page in sorted(p for p in __import__("glob").glob("dashboard/pages/*.py") if not p.endswith("__init__.py")):
    at.switch_page(page).run()
    assert not at.exception, (page, at.exception)
print(sorted(m for m in sys.modules if m.split(".")[0] in %r))
""" % (TORCH_MODULES,)


def test_running_every_page_does_not_import_torch(home: Path) -> None:
    """Render each page in a fresh interpreter (AppTest), then look at sys.modules."""
    env = os.environ | {"PREFILTER_QA_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
