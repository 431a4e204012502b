"""The one direction of imports (docs/ARCHITECTURE.md "Layers"), checked on the source and at run time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_MODULES = ("torch", "torchvision", "timm", "pytorch_msssim")
# engine modules that import torch at module level: the dashboard must never import them
ENGINE_TORCH = ("engine.training", "engine.models", "engine.evaluation.evaluate", "engine.evaluation.predict",
                "engine.evaluation.loading")
# engine/ packages that make up the core: they never import the database or the layers above them
CORE = ("models", "training", "evaluation", "intake", "annotation", "demo", "release")
DB_USERS = ("jobs", "services", "cli")  # the only engine packages that import db


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


def _engine_package(path: Path) -> str:
    """"models" for engine/models/ab.py, "" for a top-level module such as engine/config.py."""
    parts = path.relative_to(REPO / "engine").parts
    return parts[0] if len(parts) > 1 else ""


def test_engine_never_imports_streamlit_and_only_jobs_services_cli_import_db() -> None:
    for f in _files("engine"):
        rel, package = f.relative_to(REPO).as_posix(), _engine_package(f)
        names = _imports(f)
        assert not {n for n in names if _top(n) in ("streamlit", "dashboard")}, rel
        if package not in DB_USERS:
            assert not {n for n in names if _top(n) == "db"}, f"{rel} imports db"


def test_the_core_never_imports_the_layers_above_it() -> None:
    """Core -> nothing above; services -> core; jobs -> services, core; cli -> all of them."""
    above = {"": DB_USERS, **{c: DB_USERS for c in CORE}, "services": ("jobs", "cli"), "jobs": ("cli",)}
    for f in _files("engine"):
        package = _engine_package(f)
        bad = {n for n in _imports(f) if n.startswith("engine.") and n.split(".")[1] in above.get(package, ())}
        assert not bad, f"{f.relative_to(REPO)} imports {bad}"


def test_engine_top_level_is_small_and_each_package_says_what_it_holds() -> None:
    top = sorted(p.name for p in (REPO / "engine").glob("*.py"))
    assert len(top) <= 8, top
    for init in (REPO / "engine").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(REPO)} has no docstring saying what the package holds"


def test_no_import_circle_between_engine_modules() -> None:
    """Module-level imports between engine modules form no cycle (imports inside functions excluded)."""
    graph: dict[str, set[str]] = {}
    for f in _files("engine"):
        mod = ".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(f.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("engine"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("engine"))
        graph[mod] = deps
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, "import circle: " + " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for mod in graph:
        if mod not in state:
            visit(mod, [])


def test_dashboard_never_imports_torch_or_torch_engine_modules() -> None:
    for f in [*_files("dashboard"), REPO / "streamlit_app.py"]:
        for name in _imports(f):
            assert _top(name) not in TORCH_MODULES, f"{f.relative_to(REPO)} imports {name}"
            assert not name.startswith(ENGINE_TORCH), f"{f.relative_to(REPO)} imports {name}"


PROBE = """
import sys
from streamlit.testing.v1 import AppTest
from engine.services import accounts
from engine.services.store import open_workspace
factory = open_workspace()[1]  # pages need a signed-in admin to show everything they can
accounts.add_user(factory, accounts.local_actor("probe"), "probe", "admin", "probe password", must_change=False)
at = AppTest.from_file("streamlit_app.py", default_timeout=120)
at.session_state["auth_token"] = accounts.sign_in(factory, "probe", "probe password").token
at.run()
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
