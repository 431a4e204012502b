"""Roles are checked in the database layer (not only by hidden buttons), every write leaves an
audit event in its own transaction, and the audit trail refuses UPDATE and DELETE."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from db import audit, connect
from db import datasets as dq
from db import decisions as tq
from db import masks as mq
from db import runs as rq
from db import users as uq
from db.auth import Actor, Permission, Role, require, system_actor
from db.errors import PermissionDenied
from db.models import Image, utcnow
from engine.services.masks import save_mask, save_roi

VIEWER, ANNOTATOR = Actor("vic", Role.VIEWER, 2), Actor("ann", Role.ANNOTATOR, 3)
ENGINEER, ADMIN = Actor("eng", Role.ENGINEER, 4), Actor("ada", Role.ADMIN, 1)


@pytest.fixture
def sessions(db_url: str):  # type: ignore[no-untyped-def]
    s = connect(db_url)
    with s.begin() as ses:
        ds = dq.get_or_create_dataset(ses, "d", None, None)
        ses.add(Image(dataset_id=ds.id, path="/a.png", rel_path="a.png", sha256="a", size_bytes=1,
                      width=8, height=6, mode="RGB", split="test", label="nok"))
        rq.create_run(ses, dataset_id=ds.id, model="ae", preset="ae", config={})
    return s


def test_roles_are_cumulative() -> None:
    allowed = {a.name: {p for p in Permission if a.can(p)} for a in (VIEWER, ANNOTATOR, ENGINEER, ADMIN)}
    assert allowed["vic"] == set()
    assert allowed["ann"] == {Permission.ANNOTATE}
    assert allowed["eng"] == set(Permission) - {Permission.USERS}
    assert allowed["ada"] == set(Permission)
    with pytest.raises(PermissionDenied, match="vic \\(viewer\\) may not release: that needs the engineer role"):
        require(VIEWER, Permission.RELEASES, "release")
    with pytest.raises(TypeError):
        require("ada", Permission.USERS, "add users")  # type: ignore[arg-type]


def test_a_viewer_cannot_change_a_threshold_and_nothing_is_stored(sessions) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PermissionDenied, match="vic \\(viewer\\) may not change the threshold of run 1"):
        with sessions.begin() as s:
            tq.save_threshold(s, 1, actor=VIEWER, base_id=None, image_threshold=0.5)
    with pytest.raises(PermissionDenied):
        with sessions.begin() as s:
            tq.save_threshold(s, 1, actor=ANNOTATOR, base_id=None, image_threshold=0.5)
    with sessions.begin() as s:
        assert tq.threshold_history(s, 1) == [] and audit.events(s) == []
        row = tq.save_threshold(s, 1, actor=ENGINEER, base_id=None, image_threshold=0.5, note="first")
        assert row.set_by == "eng"
    with sessions.begin() as s:
        (event,) = audit.events(s)
        assert (event.actor, event.role, event.action, event.target) == ("eng", "engineer", "threshold_saved", "run 1")
        assert event.details["image"] == 0.5 and event.details["note"] == "first"


def test_annotation_writes_need_an_annotator_and_are_audited(sessions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    for write in (lambda s: dq.update_image(s, 1, actor=VIEWER, label="ok"),
                  lambda s: tq.add_review(s, actor=VIEWER, image_id=1, outcome="defective"),
                  lambda s: save_mask(s, tmp_path, 1, mask, base_version=None, actor=VIEWER),
                  lambda s: save_roi(s, tmp_path, 1, np.ones((6, 8), bool), base_version=None, actor=ANNOTATOR)):
        with pytest.raises(PermissionDenied), sessions.begin() as s:
            write(s)
    assert not list((tmp_path).rglob("*.png")), "a refused save must not leave a file behind"
    with sessions.begin() as s:
        save_mask(s, tmp_path, 1, mask, base_version=None, actor=ANNOTATOR)
        dq.update_image(s, 1, actor=ANNOTATOR, split="train")
        dq.update_image(s, 1, actor=ANNOTATOR, split="train")  # no change: no event
        tq.add_review(s, actor=ANNOTATOR, image_id=1, outcome="confirmed_defect", note="burn")
        mq.add_roi_version(s, 1, actor=ENGINEER, base_version=None, path="/r.png", sha256="r", width=8, height=6)
    with sessions.begin() as s:
        got = [(e.actor, e.action, e.target) for e in reversed(audit.events(s))]
        assert mq.current_mask(s, 1).author == "ann"  # type: ignore[union-attr]
    assert got == [("ann", "mask_saved", "image 1"), ("ann", "image_changed", "image 1 (a.png)"),
                   ("ann", "review_decision", "image 1"), ("eng", "roi_saved", "dataset 1")]


def test_audit_trail_refuses_update_and_delete(sessions, db_url: str) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        audit.record(s, ADMIN, audit.USER_ADDED, "user x")
    engine = create_engine(db_url)
    try:
        for sql in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(sql))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT actor FROM audit_events")).scalars().all() == ["ada"]
    finally:
        engine.dispose()
    assert not hasattr(audit, "delete") and not hasattr(audit, "update")


def test_audit_filters(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        audit.record(s, ADMIN, audit.USER_ADDED, "user bob", {"role": "viewer"})
        audit.record(s, ENGINEER, audit.THRESHOLD_SAVED, "run 7", {"note": "March batch"})
        audit.record(s, "mallory", audit.SIGN_IN_FAILED, None, {"reason": "unknown user"})
    with sessions.begin() as s:
        names = lambda flt: [e.target for e in audit.events(s, flt)]  # noqa: E731
        assert names(audit.AuditFilter(actor="eng")) == ["run 7"]
        assert names(audit.AuditFilter(action=audit.USER_ADDED)) == ["user bob"]
        assert names(audit.AuditFilter(text="march")) == ["run 7"]  # in the details, any case
        assert names(audit.AuditFilter(text="MALLORY")) == [None]
        assert names(audit.AuditFilter(since=utcnow() + timedelta(minutes=1))) == []
        assert names(audit.AuditFilter(until=utcnow() + timedelta(minutes=1))) == [None, "run 7", "user bob"]
        assert audit.actors(s) == ["ada", "eng", "mallory"]
        assert audit.event_dict(audit.events(s)[-1])["details"] == {"role": "viewer"}


def test_accounts_need_an_admin_and_keep_one(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        ada = uq.create_user(s, system_actor("first start"), name="Ada", role="admin", password_hash="h")
        assert ada.name == "ada"
        with pytest.raises(PermissionDenied):
            uq.create_user(s, ENGINEER, name="x", role="viewer")
        with pytest.raises(uq.AccountError, match="exists already"):
            uq.create_user(s, uq.actor_of(ada), name="ADA", role="viewer")
        with pytest.raises(uq.AccountError, match="user name 'no spaces'"):
            uq.create_user(s, uq.actor_of(ada), name="no spaces", role="viewer")
        with pytest.raises(ValueError, match="role 'boss': use one of viewer, annotator, engineer, admin"):
            uq.create_user(s, uq.actor_of(ada), name="bob", role="boss")
        with pytest.raises(uq.AccountError, match="last active admin"):
            uq.set_role(s, uq.actor_of(ada), ada.id, "engineer")
        with pytest.raises(uq.AccountError, match="last active admin"):
            uq.set_active(s, uq.actor_of(ada), ada.id, False)
        bob = uq.create_user(s, uq.actor_of(ada), name="bob", role="viewer", password_hash="h")
        with pytest.raises(PermissionDenied):
            uq.set_password_hash(s, uq.actor_of(bob), ada.id, "x", must_change=False)
        uq.set_password_hash(s, uq.actor_of(bob), bob.id, "own", must_change=False)  # one's own: allowed
        uq.set_role(s, uq.actor_of(ada), bob.id, "admin")
        uq.set_active(s, uq.actor_of(ada), ada.id, False)  # bob is an admin now
    with sessions.begin() as s:
        assert [e.action for e in reversed(audit.events(s))] == [
            "user_added", "user_added", "password_changed", "user_role_changed", "user_disabled"]
