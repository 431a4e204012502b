"""The one folder that holds all state (README "Workspace")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "PREFILTER_QA_HOME"
DATABASE_URL_ENV = "PREFILTER_QA_DATABASE_URL"
IMPORT_ROOTS_ENV = "PREFILTER_QA_IMPORT_ROOTS"
FEATURE_CACHE_NAME = "feature_cache.f16"  # DFR training's temporary feature cache, in the run folder


@dataclass(frozen=True)
class Workspace:
    """Paths of a workspace; `ensure()` creates the folders."""

    home: Path

    @property
    def db_path(self) -> Path:
        return self.home / "prefilter-qa.db"

    @property
    def masks_dir(self) -> Path:
        return self.home / "masks"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def run_dir(self, run_id: int) -> Path:
        return self.runs_dir / str(run_id)

    def evaluation_dir(self, run_id: int, evaluation_id: int) -> Path:
        return self.run_dir(run_id) / "evaluations" / str(evaluation_id)

    @property
    def database_url(self) -> str:
        """PREFILTER_QA_DATABASE_URL if set (e.g. PostgreSQL), else the workspace's SQLite file."""
        return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{self.db_path}"

    @property
    def import_roots(self) -> list[Path]:
        """Server folders the dashboard may import from (os.pathsep-separated env list)."""
        raw = os.environ.get(IMPORT_ROOTS_ENV)
        roots = [Path(p) for p in raw.split(os.pathsep) if p] if raw else [self.home, Path.cwd()]
        return [r.expanduser().resolve() for r in roots]

    def ensure(self) -> "Workspace":
        for d in (self.home, self.masks_dir, self.uploads_dir, self.cache_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


def get_workspace(home: str | Path | None = None) -> Workspace:
    """The workspace named by `home`, else PREFILTER_QA_HOME, else ./workspace (made absolute)."""
    raw = home or os.environ.get(HOME_ENV) or "workspace"
    return Workspace(Path(raw).expanduser().resolve())
