"""engine.jobs.storage: the workspace as nodes of a cluster must see it (a shared folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.jobs.storage import ID_FILE, SharedFolder, job_storage, node_problems
from engine.workspace import Workspace
from tests.conftest import REPO


def test_the_workspace_id_is_made_once_and_read_alike_by_every_process(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    code = ("import sys; from pathlib import Path; from engine.jobs.storage import SharedFolder; "
            "print(SharedFolder(Path(sys.argv[1])).identity())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(home)], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(ids) == 1 and ids == {(home / ID_FILE).read_text().strip()}
    assert [p.name for p in home.iterdir()] == [ID_FILE]  # no temp file left behind


def test_a_node_sees_the_workspace_only_when_it_is_this_one(tmp_path: Path) -> None:
    home, images = tmp_path / "ws", tmp_path / "images"
    home.mkdir()
    images.mkdir()
    storage = SharedFolder(home, (images,))
    wid = storage.identity()
    assert node_problems(str(home), wid, [str(images)]) == []
    assert node_problems(str(tmp_path / "elsewhere"), wid, []) == [
        f"the workspace {tmp_path / 'elsewhere'} does not exist here"]
    other = tmp_path / "other"
    other.mkdir()
    assert "is not the workspace" in node_problems(str(other), wid, [])[0]  # an empty folder of the same name
    SharedFolder(other).identity()
    assert "is another workspace" in node_problems(str(other), wid, [])[0]
    assert node_problems(str(home), wid, [str(tmp_path / "camera")]) == [
        f"the import folder {tmp_path / 'camera'} does not exist here"]
    args = storage.node_check_args()
    assert args == ["--home", str(home), "--workspace-id", wid, "--import-root", str(images)]


def test_job_logs_live_in_the_run_folder_and_object_storage_is_refused(tmp_path: Path) -> None:
    storage = job_storage(Workspace(tmp_path / "ws"))
    assert storage.job_log(7, 3) == str(tmp_path / "ws" / "runs" / "3" / "job-7.log")
    assert storage.job_log(8, None) == str(tmp_path / "ws" / "logs" / "job-8.log")
    with pytest.raises(UserError, match="object storage is not supported yet"):
        job_storage(Workspace(Path("s3://bucket/ws")))
