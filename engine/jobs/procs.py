"""Processes of jobs on this host: is a pid alive, stop a child's process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

KILL_GRACE_S = 5.0


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped by its parent) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live pids of process group `pgid` (Linux /proc; empty where there is none)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def is_job_child(pid: int, job_id: int) -> bool:
    """Whether `pid` is `python -m engine.jobs.child JOB_ID ...` (a recorded pid may have been reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: the pid and host matched, trust them
    return b"engine.jobs.child" in argv and str(job_id).encode() in argv


def kill_job_group(pgid: int, job_id: int, wait_s: float = KILL_GRACE_S) -> bool:
    """SIGKILL the process group of job `job_id`'s child (its DataLoader workers too) if its
    leader is still that child, or the leader is gone and members are left (a group id is not
    reused while the group has members); returns whether a group was killed. Waits until it is gone."""
    if pid_alive(pgid):
        if not is_job_child(pgid, job_id):
            return False
    elif not group_members(pgid):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and (pid_alive(pgid) or group_members(pgid)):
        time.sleep(0.05)
    return True


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child we started and its process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
