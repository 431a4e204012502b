"""Users: accounts and roles (admin only) — add, change a role, reset a password, disable."""

from __future__ import annotations

import secrets

import pandas as pd
import streamlit as st

from dashboard.state import actor, can, sessions
from dashboard.ui import flash, page_header, show_flashes
from db.auth import ROLES, Permission
from engine.errors import UserError
from engine.services import accounts

ROLE_HELP = ("viewer: reads everything · annotator: masks, labels, review decisions · engineer: train, jobs, "
             "import, thresholds, releases, ROI, audit · admin: users and roles, and everything")

page_header("Users", "Who may sign in, and with which role. " + ROLE_HELP)
show_flashes()
if not can(Permission.USERS):
    st.warning(f"Your role ({actor().role}) cannot manage users: it needs admin.", icon=":material/lock:")
    st.stop()
factory, me = sessions(), actor()
users = accounts.list_users(factory)
st.dataframe(pd.DataFrame(users)[["name", "role", "active", "sso", "must_change_password", "locked_until",
                                  "last_sign_in_at", "email"]], hide_index=True, width="stretch")


def _apply(what: str, fn, *args, onetime: tuple[str, str] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Run one account change for the signed-in admin; its refusal is shown, its success flashed."""
    try:
        fn(factory, me, *args)
    except UserError as e:
        st.error(f"Not changed: {e}", icon=":material/error:")
        return
    st.session_state["_users_onetime"] = onetime
    flash(what)
    st.rerun()


left, right = st.columns(2)
with left.form("users_add", border=True):
    st.subheader("Add a user", anchor=False)
    name = st.text_input("User name", help="Letters, digits, . _ @ + - ; an SSO user's name is their e-mail.")
    role = st.selectbox("Role", ROLES, help=ROLE_HELP)
    sso_only = st.checkbox("Single sign-on only (no password)")
    if st.form_submit_button("Add user", icon=":material/person_add:", type="primary"):
        password = None if sso_only else secrets.token_urlsafe(12)
        try:
            accounts.add_user(factory, me, name, role, password, must_change=True)
        except UserError as e:
            st.error(f"User not added: {e}", icon=":material/error:")
        else:
            st.session_state["_users_onetime"] = (name.strip().lower(), password)

if (onetime := st.session_state.get("_users_onetime")) and onetime[1]:
    left.success(f"**{onetime[0]}**: one-time password (shown once, they choose their own at first "
                 f"sign-in): `{onetime[1]}`", icon=":material/key:")

with right.container(border=True):
    st.subheader("Change an account", anchor=False)
    names = [u["name"] for u in users]
    who = st.selectbox("User", names, key="users_pick")
    row = next(u for u in users if u["name"] == who)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    new_role = c1.selectbox("Role", ROLES, index=ROLES.index(row["role"]), key=f"users_role_{who}")
    if c2.button("Set role", key="users_set_role", disabled=new_role == row["role"]):
        _apply(f"{who} is now {new_role}", accounts.set_role, who, new_role)
    b1, b2 = st.columns(2)
    if b1.button("Reset password", key="users_reset", icon=":material/lock_reset:", disabled=not row["active"],
                 help="A new one-time password; the user is signed out and chooses a new one at sign-in."):
        password = secrets.token_urlsafe(12)
        _apply(f"{who} has a new one-time password", accounts.set_password, who, password,
               onetime=(who, password))
    if row["active"]:
        if b2.button("Disable", key="users_disable", icon=":material/block:", disabled=who == me.name,
                     help="Signs the user out everywhere; nothing they did is removed."):
            _apply(f"{who} is disabled", accounts.set_active, who, False)
    elif b2.button("Enable", key="users_enable", icon=":material/check_circle:"):
        _apply(f"{who} is enabled again", accounts.set_active, who, True)
