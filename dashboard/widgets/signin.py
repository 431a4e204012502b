"""Sign-in for the router: the password form (and single sign-on buttons when `[auth]` is in
secrets.toml), the forced password change, the sidebar's account box and sign-out.

The session token lives in st.session_state only: a browser reload starts a new Streamlit
session, so it asks to sign in again (SSO users come back through Streamlit's own cookie).
"""

from __future__ import annotations

import sys
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from dashboard.state import ACTOR, AUTH_TOKEN
from db.auth import Role
from engine.errors import UserError
from engine.services import accounts
from engine.services.accounts import SignedIn


@st.cache_resource
def _first_start(database_url: str, _factory: sessionmaker[Session]) -> bool:
    """Once per server: a workspace without accounts gets "admin" and a one-time password in the
    server's terminal (`make run` does this before the server starts)."""
    password = accounts.ensure_first_admin(_factory)
    if password:
        sys.stderr.write(accounts.first_admin_banner(password) + "\n")
        sys.stderr.flush()
    return password is not None


def sso_providers() -> list[str | None] | None:
    """Providers configured under [auth] in secrets.toml (None: no single sign-on)."""
    try:
        if "auth" not in st.secrets:
            return None
        conf = st.secrets["auth"]
    except FileNotFoundError:
        return None
    named = [k for k, v in conf.items() if hasattr(v, "keys")]
    return named or [None]  # [None]: one provider configured directly under [auth]


def _sso_signed_in(factory: sessionmaker[Session]) -> SignedIn | None:
    """A user the identity provider signed in (Streamlit's cookie) gets a session of ours."""
    if sso_providers() is None or not st.user.is_logged_in:
        return None
    claims: dict[str, Any] = {k: st.user.get(k) for k in ("sub", "iss", "email", "email_verified", "name")}
    try:
        return accounts.sso_sign_in(factory, claims)
    except UserError as e:
        st.session_state["_signin_error"] = str(e)
        st.logout()
        return None


def current(factory: sessionmaker[Session]) -> SignedIn | None:
    """The signed-in session of this browser tab (validated against the database on every run),
    with its Actor put where pages find it (dashboard.state.actor)."""
    st.session_state.pop(ACTOR, None)
    if not accounts.sign_in_enabled():
        signed: SignedIn | None = SignedIn("", accounts.local_actor(), False)
    else:
        _first_start(str(factory.kw["bind"].url), factory)
        signed = accounts.resume(factory, st.session_state.get(AUTH_TOKEN))
        if signed is None:
            st.session_state.pop(AUTH_TOKEN, None)
            signed = _sso_signed_in(factory)
            if signed is not None:
                st.session_state[AUTH_TOKEN] = signed.token
    if signed is not None and not signed.must_change_password:
        st.session_state[ACTOR] = signed.actor
    return signed


def _on_sign_in(factory: sessionmaker[Session]) -> None:
    name = st.session_state.get("signin_name", "")
    password = st.session_state.get("signin_password", "")
    st.session_state["signin_password"] = ""
    try:
        signed = accounts.sign_in(factory, name, password)
    except UserError as e:
        st.session_state["_signin_error"] = str(e)
        return
    st.session_state[AUTH_TOKEN] = signed.token


def sign_in_ui(factory: sessionmaker[Session]) -> None:
    """The only thing shown without a signed-in session."""
    _, mid, _ = st.columns([1, 1.4, 1])
    with mid:
        st.title("prefilter-qa")
        st.caption("Sign in to inspect datasets, runs and thresholds.")
        if err := st.session_state.pop("_signin_error", None):
            st.error(err, icon=":material/lock:")
        with st.form("signin", border=True):
            st.text_input("User name", key="signin_name", autocomplete="username")
            st.text_input("Password", key="signin_password", type="password", autocomplete="current-password")
            st.form_submit_button("Sign in", type="primary", icon=":material/login:", width="stretch",
                                  on_click=_on_sign_in, args=(factory,))
        providers = sso_providers()
        for provider in providers or []:
            label = f"Sign in with {provider}" if provider else "Sign in with single sign-on"
            if st.button(label, icon=":material/badge:", width="stretch", key=f"sso_{provider}"):
                st.login(provider) if provider else st.login()
        st.caption("No account? An admin adds one (Users page, or `prefilter-qa users add NAME`).")


def _on_change_password(factory: sessionmaker[Session], signed: SignedIn) -> None:
    current_pw, new, again = (st.session_state.get(k, "") for k in ("pw_current", "pw_new", "pw_again"))
    for k in ("pw_current", "pw_new", "pw_again"):
        st.session_state[k] = ""
    if new != again:
        st.session_state["_pw_error"] = "the two new passwords differ"
        return
    try:
        accounts.change_own_password(factory, signed, current_pw, new)
    except UserError as e:
        st.session_state["_pw_error"] = str(e)
        return
    st.session_state["_pw_done"] = True


def change_password_ui(factory: sessionmaker[Session], signed: SignedIn, *, forced: bool) -> None:
    """Change one's own password (forced after a one-time or admin-set password)."""
    if forced:
        st.title("Choose a new password")
        st.info(f"Signed in as **{signed.actor.name}** with a one-time password: choose your own before "
                "going on.", icon=":material/key:")
    if err := st.session_state.pop("_pw_error", None):
        st.error(f"Password not changed: {err}", icon=":material/error:")
    if st.session_state.pop("_pw_done", False) and not forced:
        st.success("Password changed.", icon=":material/check_circle:")
    with st.form("change_password", border=True):
        st.text_input("Current password", key="pw_current", type="password", autocomplete="current-password")
        st.text_input(f"New password (at least {accounts.MIN_PASSWORD} characters)", key="pw_new",
                      type="password", autocomplete="new-password")
        st.text_input("New password again", key="pw_again", type="password", autocomplete="new-password")
        st.form_submit_button("Change password", type="primary", icon=":material/key:",
                              on_click=_on_change_password, args=(factory, signed))
    if forced:
        sign_out_button(factory)


def _on_sign_out(factory: sessionmaker[Session]) -> None:
    accounts.sign_out(factory, st.session_state.pop(AUTH_TOKEN, None))
    st.session_state.pop(ACTOR, None)
    st.session_state["_signed_out"] = True


def sign_out_button(factory: sessionmaker[Session]) -> None:
    st.button("Sign out", icon=":material/logout:", key="sign_out", on_click=_on_sign_out, args=(factory,))


def account_ui(factory: sessionmaker[Session], signed: SignedIn) -> None:
    """Sidebar: who is signed in, with which role; sign out."""
    with st.sidebar:
        role = Role(signed.actor.role)
        st.markdown(f":material/account_circle: **{signed.actor.name}** · {role}")
        if signed.token:
            sign_out_button(factory)
            with st.expander("Change my password", icon=":material/key:"):
                change_password_ui(factory, signed, forced=False)
        else:
            st.caption(f"Sign-in is off ({accounts.SIGN_IN_ENV}); only this machine can reach the dashboard.")


def after_sign_out() -> None:
    """Streamlit's own SSO cookie goes too, or the next run would sign the user in again."""
    if st.session_state.pop("_signed_out", False) and sso_providers() is not None and st.user.is_logged_in:
        st.logout()
