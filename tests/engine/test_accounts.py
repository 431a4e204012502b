"""Signing in (engine.services.accounts): argon2 hashes, sessions that expire, lockout, the
first admin, single sign-on accounts, and the refusal to serve the network without sign-in."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from db import audit
from db import users as uq
from db.auth import Role
from db.models import User, UserSession, utcnow
from engine.errors import UserError
from engine.services import accounts
from engine.services.accounts import AccountError, SignInError
from engine.services.store import open_workspace

PASSWORD = "a long enough password"


@pytest.fixture
def factory(home: Path):  # type: ignore[no-untyped-def]
    factory = open_workspace()[1]
    accounts.add_user(factory, accounts.local_actor("setup"), "erika", "engineer", PASSWORD, must_change=False)
    return factory


def _events(factory) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        return [(e.actor, e.action) for e in reversed(audit.events(s))]


def test_password_is_stored_as_argon2_and_a_session_resumes_until_sign_out(factory) -> None:  # type: ignore[no-untyped-def]
    with factory.begin() as s:
        stored = uq.user_by_name(s, "erika").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    signed = accounts.sign_in(factory, "Erika", PASSWORD)  # names are case-insensitive
    assert signed.actor.name == "erika" and signed.actor.role == Role.ENGINEER and not signed.must_change_password
    with factory.begin() as s:  # only the token's digest is stored
        assert s.query(UserSession).one().token_hash != signed.token
    assert accounts.resume(factory, signed.token) == signed
    assert accounts.resume(factory, "forged" + signed.token) is None
    accounts.sign_out(factory, signed.token)
    assert accounts.resume(factory, signed.token) is None
    assert _events(factory)[-2:] == [("erika", "sign_in"), ("erika", "sign_out")]


def test_sessions_expire_when_idle_and_after_the_absolute_limit(factory, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    idle = accounts.sign_in(factory, "erika", PASSWORD)
    old = accounts.sign_in(factory, "erika", PASSWORD)
    with factory.begin() as s:
        s.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(hours=9)))
    assert accounts.resume(factory, idle.token) is None  # 8 h idle by default
    monkeypatch.setenv(accounts.IDLE_ENV, "10")
    assert accounts.resume(factory, old.token) is not None
    with factory.begin() as s:
        s.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert accounts.resume(factory, old.token) is None
    monkeypatch.setenv(accounts.MAX_ENV, "soon")
    with pytest.raises(UserError, match="PREFILTER_QA_SESSION_MAX_HOURS='soon': expected a number"):
        accounts.sign_in(factory, "erika", PASSWORD)


def test_failed_sign_ins_are_recorded_and_lock_the_account(factory, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(accounts.LOCK_AFTER_ENV, "3")
    with pytest.raises(SignInError, match="^wrong user name or password$"):
        accounts.sign_in(factory, "nobody", PASSWORD)
    for _ in range(2):
        with pytest.raises(SignInError, match="^wrong user name or password$"):
            accounts.sign_in(factory, "erika", "wrong password!")
    with pytest.raises(SignInError, match="locked for 15 minutes"):
        accounts.sign_in(factory, "erika", "wrong password!")
    with pytest.raises(SignInError, match="locked until"):
        accounts.sign_in(factory, "erika", PASSWORD)  # even the right password, while locked
    assert _events(factory)[-5:] == [("nobody", "sign_in_failed")] + [("erika", "sign_in_failed")] * 4
    with factory.begin() as s:
        s.execute(update(User).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert accounts.sign_in(factory, "erika", PASSWORD).actor.name == "erika"
    with factory.begin() as s:
        assert uq.user_by_name(s, "erika").failed_attempts == 0


def test_disabled_accounts_and_role_changes_take_effect_on_the_next_run(factory) -> None:  # type: ignore[no-untyped-def]
    admin = accounts.local_actor("admin-cli")
    signed = accounts.sign_in(factory, "erika", PASSWORD)
    accounts.set_role(factory, admin, "erika", "viewer")
    assert accounts.resume(factory, signed.token).actor.role == Role.VIEWER  # type: ignore[union-attr]
    accounts.set_active(factory, admin, "erika", False)
    assert accounts.resume(factory, signed.token) is None
    with pytest.raises(SignInError, match="disabled"):
        accounts.sign_in(factory, "erika", PASSWORD)


def test_first_admin_gets_a_one_time_password_that_must_be_changed(home: Path) -> None:
    factory = open_workspace()[1]
    password = accounts.ensure_first_admin(factory)
    assert password and len(password) >= accounts.MIN_PASSWORD
    assert accounts.ensure_first_admin(factory) is None  # only once
    signed = accounts.sign_in(factory, "admin", password)
    assert signed.must_change_password and signed.actor.role == Role.ADMIN
    with pytest.raises(SignInError, match="current password is wrong"):
        accounts.change_own_password(factory, signed, "guess", "my new password")
    with pytest.raises(AccountError, match="too short"):
        accounts.change_own_password(factory, signed, password, "short")
    accounts.change_own_password(factory, signed, password, "my new password")
    assert not accounts.sign_in(factory, "admin", "my new password").must_change_password
    with pytest.raises(SignInError):
        accounts.sign_in(factory, "admin", password)  # the one-time password is gone
    assert "admin" in accounts.first_admin_banner(password) and password in accounts.first_admin_banner(password)


def test_single_sign_on_maps_to_accounts(factory, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    claims = {"iss": "https://idp.example", "sub": "123", "email": "Rita@Plant.example", "email_verified": True}
    first = accounts.sso_sign_in(factory, claims)
    assert (first.actor.name, first.actor.role) == ("rita@plant.example", Role.VIEWER)  # default role
    assert accounts.sso_sign_in(factory, claims).actor.user_id == first.actor.user_id  # same account again
    # an admin pre-created an account under the e-mail: the SSO identity is linked to it, role kept
    accounts.add_user(factory, accounts.local_actor("a"), "otto@plant.example", "engineer", None)
    otto = accounts.sso_sign_in(factory, {"iss": "https://idp.example", "sub": "9", "email": "otto@plant.example"})
    assert otto.actor.role == Role.ENGINEER
    monkeypatch.setenv(accounts.SSO_ROLE_ENV, "annotator")
    new = accounts.sso_sign_in(factory, {"iss": "https://idp.example", "sub": "77"})  # no e-mail
    assert new.actor.role == Role.ANNOTATOR and new.actor.name.startswith("sso-")
    with pytest.raises(SignInError, match="no subject"):
        accounts.sso_sign_in(factory, {"email": "x@y"})
    accounts.set_active(factory, accounts.local_actor("a"), "rita@plant.example", False)
    with pytest.raises(SignInError, match="disabled"):
        accounts.sso_sign_in(factory, claims)
    with pytest.raises(SignInError):  # an SSO-only account has no password to sign in with
        accounts.sign_in(factory, "otto@plant.example", "")


def test_no_sign_in_only_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for address in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "", None, "192.168.1.5"):
        accounts.check_listen_address(address)  # sign-in on: any address
    monkeypatch.setenv(accounts.SIGN_IN_ENV, "off")
    for address in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        accounts.check_listen_address(address)
    for address in ("0.0.0.0", "", None, "192.168.1.5", "plant-server"):
        with pytest.raises(UserError, match="refusing to listen on .* with sign-in switched off"):
            accounts.check_listen_address(address)
