"""Where jobs find their files when they run on other machines: one small interface.

Phase 1 is a shared folder: the workspace and the import roots mounted at the same path on the
dashboard host and on every node, so the paths stored in the database mean the same file
everywhere. A node proves it sees *this* workspace (not an empty folder of the same name) by
reading the workspace's id file. Object storage (fsspec, s3://) would be a second implementation
of `JobStorage`; until then a URL is refused with a clear message.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.errors import UserError
from engine.fsutil import atomic_write
from engine.workspace import Workspace

ID_FILE = ".prefilter-qa-id"  # in the workspace: its id, written once


class JobStorage(Protocol):
    """What an executor on other machines needs of the workspace's storage."""

    def describe(self) -> str:
        """Where the storage is, for messages."""

    def identity(self) -> str:
        """The workspace's id (created on first use); a node must read the same."""

    def job_log(self, job_id: int, run_id: int | None) -> str:
        """Where a job's log is written, as every node sees it."""

    def node_check_args(self) -> list[str]:
        """Arguments of `python -m engine.jobs.ray_entry` that let a node check it sees this storage
        (`node_problems`)."""


@dataclass(frozen=True)
class SharedFolder:
    """The workspace on a shared file system, plus the folders images are imported from."""

    home: Path
    import_roots: tuple[Path, ...] = ()

    def describe(self) -> str:
        return f"the shared folder {self.home}"

    def identity(self) -> str:
        path = self.home / ID_FILE
        if not path.exists():  # written complete under another name, linked in only if still absent
            new_id = uuid.uuid4().hex
            tmp = atomic_write(self.home / f"{ID_FILE}.{new_id}", lambda t: t.write_text(new_id + "\n"))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process was first: its id holds
            finally:
                tmp.unlink()
        return path.read_text().strip()

    def job_log(self, job_id: int, run_id: int | None) -> str:
        folder = self.home / "runs" / str(run_id) if run_id is not None else self.home / "logs"
        return str(folder / f"job-{job_id}.log")

    def node_check_args(self) -> list[str]:
        roots = [a for root in self.import_roots for a in ("--import-root", str(root))]
        return ["--home", str(self.home), "--workspace-id", self.identity(), *roots]

    def problems_here(self, identity: str) -> list[str]:
        """The workspace must be this one and writable; each import root a folder here too."""
        id_file = self.home / ID_FILE
        if not self.home.is_dir():
            return [f"the workspace {self.home} does not exist here"]
        try:
            seen = id_file.read_text().strip()
        except OSError as exc:
            return [f"{self.home} is not the workspace (no readable {ID_FILE}: {exc.strerror})"]
        if seen != identity:
            return [f"{self.home} is another workspace (its {ID_FILE} says {seen[:12]}, expected {identity[:12]})"]
        problems = []
        try:
            with tempfile.NamedTemporaryFile(dir=self.home, prefix=".node-check-"):
                pass
        except OSError as exc:
            problems.append(f"the workspace {self.home} is not writable here ({exc.strerror})")
        problems += [f"the import folder {root} does not exist here" for root in self.import_roots
                     if not root.is_dir()]
        return problems


def job_storage(ws: Workspace) -> JobStorage:
    """The storage jobs on other machines use for workspace `ws` (phase 1: a shared folder)."""
    home = str(ws.home)
    if "://" in home or home.startswith(("s3:", "gs:")):
        raise UserError(f"workspace {home!r}: object storage is not supported yet; mount a shared folder at "
                        "the same path on every node and set PREFILTER_QA_HOME to it")
    roots = tuple(r for r in ws.import_roots if r != ws.home and not _inside(r, ws.home))
    return SharedFolder(ws.home, roots)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def node_problems(home: str, identity: str, import_roots: list[str]) -> list[str]:
    """The checks of `SharedFolder.problems_here` from plain arguments (what a node is given)."""
    return SharedFolder(Path(home), tuple(Path(r) for r in import_roots)).problems_here(identity)

