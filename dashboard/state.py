"""Process-wide resources and session conventions shared by the pages."""

from __future__ import annotations

import os
import time

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from db.auth import Actor, Permission
from engine.jobs.launch import ensure_worker
from engine.services.store import open_workspace
from engine.workspace import DATABASE_URL_ENV, HOME_ENV, Workspace

AUTH_TOKEN = "auth_token"  # the signed-in session's token (engine.services.accounts)
ACTOR = "_signed_in_actor"  # the Actor the router resolved from the token on this run
WORKER_CHECK_S = 30.0
AUTOSTART_ENV = "PREFILTER_QA_AUTOSTART_WORKER"  # "0": never start a worker (tests run their own)

# Session-state keys that carry a choice from one page to the next (set them, then
# st.switch_page). Pages also accept ?dataset=NAME&image=ID / ?run=ID / ?job=ID deep links.
SELECTED_DATASET = "selected_dataset"  # dataset name (str) last chosen on any page
SELECTED_IMAGE = "selected_image"  # image id (int) open in the Datasets detail view
SELECTED_RUN = "selected_run"  # run id (int) for Results / Thresholds / Review
SELECTED_JOB = "selected_job"  # job id (int) shown in the Jobs detail
ANNOTATE_IMAGE = "annotate_image"  # image id (int) to open on Annotate
ANNOTATE_QUEUE = "annotate_queue"  # list[int] of image ids for Annotate's prev/next


@st.cache_resource
def _resources(home: str | None, database_url: str | None) -> tuple[Workspace, sessionmaker[Session]]:
    return open_workspace(home)


def _env_key() -> tuple[str | None, str | None]:
    """Cache per (home, database URL): tests run pages against several workspaces in one process."""
    return os.environ.get(HOME_ENV), os.environ.get(DATABASE_URL_ENV)


def workspace() -> Workspace:
    return _resources(*_env_key())[0]


def sessions() -> sessionmaker[Session]:
    """The database session factory (one engine per server process)."""
    return _resources(*_env_key())[1]


def actor() -> Actor:
    """The signed-in user: every write passes it down, where its role is checked and it is recorded
    as the author. A page reached without a signed-in session stops here."""
    who = st.session_state.get(ACTOR)
    if not isinstance(who, Actor):
        st.warning("Sign in to use this page.", icon=":material/lock:")
        st.stop()
    return who


def user() -> str:
    """The signed-in user's name (shown as author of masks, thresholds and reviews)."""
    return actor().name


def can(permission: Permission) -> bool:
    """Whether the signed-in user's role allows `permission` (pages hide or disable what it does not)."""
    who = st.session_state.get(ACTOR)
    return isinstance(who, Actor) and who.can(permission)


def role_note(permission: Permission, what: str) -> None:
    """A caption saying why a control is missing or disabled for this role."""
    if not can(permission):
        st.caption(f":material/lock: Your role ({actor().role}) cannot {what}.")


def keep_worker_running() -> None:
    """Start a job worker if none serves the database (checked at most every 30 s per session; two
    sessions, or a session and `train --wait`, never both start one: see `ensure_worker`)."""
    if os.environ.get(AUTOSTART_ENV, "1") == "0":
        return
    now = time.monotonic()
    if now - st.session_state.get("_worker_checked", -WORKER_CHECK_S) < WORKER_CHECK_S:
        return
    st.session_state["_worker_checked"] = now
    if ensure_worker(workspace(), sessions()):
        st.toast("Started a background job worker.")
