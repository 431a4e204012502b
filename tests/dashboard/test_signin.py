"""AppTests of sign-in through the router: nothing but the form without a session, the form
itself, the forced password change, and what each role sees (hidden or disabled controls)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.state import SELECTED_RUN
from db import audit
from engine.services import accounts
from tests.dashboard.page_helpers import ROUTER, assert_ok, import_tiny, open_page, sessions, signed_in, texts
from tests.dashboard.qa_helpers import Copy, trained_copy  # noqa: F401

PAGES = ("overview", "datasets", "annotate", "train", "jobs", "results", "thresholds", "review", "audit", "users")


@pytest.fixture
def tiny_ws(home: Path, tiny_demo: Path) -> Path:
    import_tiny(tiny_demo)
    accounts.add_user(sessions(), accounts.local_actor("setup"), "erika", "engineer", "erika's password",
                      must_change=False)
    return home


def _router() -> AppTest:
    return AppTest.from_file(ROUTER, default_timeout=60)


def _sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_password").input(password)
    at.button[0].click().run()  # the form's submit button
    assert_ok(at)
    return at


def test_without_a_session_every_page_shows_only_the_sign_in_form(tiny_ws: Path) -> None:
    for page in PAGES:
        at = _router()
        at.switch_page(f"dashboard/pages/{page}.py").run()
        assert_ok(at)
        assert [t.label for t in at.text_input] == ["User name", "Password"], page
        shown = texts(at)
        assert "Sign in" in shown and "tiny" not in shown and not at.dataframe and not at.sidebar.markdown, page


def test_sign_in_form_wrong_password_then_right_then_sign_out(tiny_ws: Path) -> None:
    at = _router()
    at.switch_page("dashboard/pages/datasets.py").run()
    _sign_in(at, "erika", "not her password")
    assert any("wrong user name or password" in e.value for e in at.error)
    assert at.text_input(key="signin_password").value == ""  # the typed password is not kept
    _sign_in(at, "erika", "erika's password")
    assert "erika" in at.sidebar.markdown[0].value and "engineer" in at.sidebar.markdown[0].value
    assert at.title[0].value == "Datasets" and "tiny" in texts(at) + str(at.dataframe[0].value)
    at.button(key="sign_out").click().run()
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    with sessions().begin() as s:
        actions = [e.action for e in reversed(audit.events(s))]
    assert actions[-3:] == ["sign_in_failed", "sign_in", "sign_out"]


def test_one_time_password_must_be_changed_first(home: Path) -> None:
    password = accounts.ensure_first_admin(sessions())
    assert password
    at = _router()
    at.run()
    _sign_in(at, "admin", password)
    assert at.title[0].value == "Choose a new password" and not at.dataframe
    at.text_input(key="pw_current").input(password)
    at.text_input(key="pw_new").input("the admin's own password")
    at.text_input(key="pw_again").input("the admin's own password")
    at.button[0].click().run()
    assert_ok(at)
    assert at.title[0].value == "Overview"


def test_a_viewer_sees_but_cannot_change(trained_copy: Copy) -> None:  # noqa: F811
    at = open_page("thresholds", session={SELECTED_RUN: trained_copy.dfr_run}, role="viewer")
    save = at.button(key=f"thr{trained_copy.dfr_run}_save")
    assert save.disabled and "cannot save thresholds" in texts(at)
    at = open_page("datasets", role="viewer")
    assert not any("Add images" in e.label for e in at.expander)
    at = open_page("train", role="viewer")
    assert next(b for b in at.button if b.label == "Launch training").disabled
    assert "cannot launch trainings" in texts(at)
    for page in ("audit", "users"):  # not in the viewer's navigation: the default page instead
        assert open_page(page, role="viewer").title[0].value == "Overview"


def test_audit_page_filters_and_exports_csv(tiny_ws: Path) -> None:
    accounts.sign_in(sessions(), "erika", "erika's password")
    at = open_page("audit", role="engineer")
    table = at.dataframe[0].value
    assert {"import", "user_added", "sign_in"} <= set(table["action"])
    at.selectbox(key="audit_action").select("sign_in").run()
    assert set(at.dataframe[0].value["action"]) == {"sign_in"}
    at.text_input(key="audit_text").input("no such thing").run()
    assert not at.dataframe and "No entries match" in texts(at)
    at.text_input(key="audit_text").input("").run()
    data = at.get("download_button")[0].proto.url
    assert data  # the CSV is served by the media file manager
    from dashboard.widgets.audit_view import audit_csv
    with sessions().begin() as s:
        rows = [audit.event_dict(e) for e in audit.events(s, audit.AuditFilter(action="sign_in"))]
    parsed = list(csv.DictReader(io.StringIO(audit_csv(rows))))
    assert [r["action"] for r in parsed] == ["sign_in"] * len(rows) and parsed[0]["user"]


def test_users_page_adds_an_account_with_a_one_time_password(tiny_ws: Path) -> None:
    at = open_page("users", role="admin")
    at.text_input[0].input("otto")
    at.selectbox[0].select("annotator")
    at.button[0].click().run()
    assert_ok(at)
    shown = next(s.value for s in at.success if "otto" in s.value)
    password = shown.split("`")[1]
    signed = accounts.sign_in(sessions(), "otto", password)
    assert signed.actor.role == "annotator" and signed.must_change_password
    assert "erika" in str(at.dataframe[0].value["name"].tolist())
    assert open_page("users", role="engineer").title[0].value == "Overview"  # admins only
    assert signed_in("viewer")  # helper works repeatedly for the same name


def test_single_sign_on_through_st_user(tiny_ws: Path) -> None:
    """With [auth] in secrets.toml, a user the identity provider signed in (st.user) gets an
    account (viewer by default) and a session; signing out also ends Streamlit's SSO login."""
    at = _router()
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "qa", "client_secret": "s", "server_metadata_url": "https://idp/x"}
    at.user = {"is_logged_in": True, "iss": "https://idp.plant.example", "sub": "u-17",
               "email": "rita@plant.example", "name": "Rita"}
    at.run()
    assert_ok(at)
    assert at.title[0].value == "Overview" and "rita@plant.example" in at.sidebar.markdown[0].value
    assert "viewer" in at.sidebar.markdown[0].value
    at.button(key="sign_out").click().run()
    assert_ok(at)
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert any(b.label == "Sign in with single sign-on" for b in at.button)
    with sessions().begin() as s:
        events = [(e.actor, e.action, e.details.get("method")) for e in reversed(audit.events(s))]
    assert events[-2:] == [("rita@plant.example", "sign_in", "sso"), ("rita@plant.example", "sign_out", None)]


def test_without_sign_in_the_app_serves_only_this_machine(tiny_ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit import config

    monkeypatch.setenv(accounts.SIGN_IN_ENV, "off")
    old = config.get_option("server.address")
    try:
        config.set_option("server.address", "0.0.0.0")
        at = _router()
        at.switch_page("dashboard/pages/datasets.py").run()
        assert_ok(at)
        assert any("refusing to listen on '0.0.0.0' with sign-in switched off" in e.value for e in at.error)
        assert not at.text_input and not at.dataframe and "tiny" not in texts(at)
        config.set_option("server.address", "127.0.0.1")
        at = _router()
        at.switch_page("dashboard/pages/datasets.py").run()
        assert_ok(at)
        assert at.title[0].value == "Datasets" and "Sign-in is off" in texts(at) + str(at.sidebar.caption)
    finally:
        config.set_option("server.address", old)
