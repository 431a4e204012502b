"""Signing in: argon2 password hashes, browser sessions that expire, lockout after failed
sign-ins, the first admin of a new workspace, and accounts of single sign-on (OIDC) users.

A session is a random token (secrets.token_urlsafe) the browser session keeps; the database
stores only its sha256, with an idle and an absolute expiry.
"""

from __future__ import annotations

import getpass
import hashlib
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import audit
from db import users as uq
from db.auth import Actor, Role, parse_role, system_actor
from db.models import User, utcnow
from engine.errors import UserError

log = logging.getLogger(__name__)

SIGN_IN_ENV = "PREFILTER_QA_SIGN_IN"  # "off": no sign-in (only on 127.0.0.1)
IDLE_ENV, MAX_ENV = "PREFILTER_QA_SESSION_IDLE_HOURS", "PREFILTER_QA_SESSION_MAX_HOURS"
LOCK_AFTER_ENV, LOCK_MINUTES_ENV = "PREFILTER_QA_SIGNIN_LOCK_AFTER", "PREFILTER_QA_SIGNIN_LOCK_MINUTES"
SSO_ROLE_ENV = "PREFILTER_QA_SSO_DEFAULT_ROLE"
FIRST_ADMIN = "admin"
MIN_PASSWORD = 10
TOUCH_EVERY = timedelta(seconds=60)  # last-seen is written at most this often per session

_hasher = PasswordHasher()  # argon2id with the library's current parameters
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class SignInError(UserError):
    """A refused sign-in or password change; the message is safe to show."""


class AccountError(UserError):
    """A refused account change (bad name, duplicate, the last admin, a weak password)."""


@dataclass(frozen=True)
class SignedIn:
    """A live session: its token (kept by the browser session), who it is, and whether the
    password must be changed before anything else."""

    token: str
    actor: Actor
    must_change_password: bool


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise UserError(f"{name}={raw!r}: expected a number") from None
    if value <= 0:
        raise UserError(f"{name}={raw!r}: must be positive")
    return value


def idle_limit() -> timedelta:
    return timedelta(hours=_float_env(IDLE_ENV, 8))


def session_limit() -> timedelta:
    return timedelta(hours=_float_env(MAX_ENV, 24))


def sign_in_enabled() -> bool:
    return os.environ.get(SIGN_IN_ENV, "on").strip().lower() not in ("0", "off", "false", "no")


def is_loopback(address: str | None) -> bool:
    """Whether a listen address reaches only this machine (an empty one means every interface)."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen_address(address: str | None) -> None:
    """Refuse to serve beyond this machine without sign-in."""
    if not sign_in_enabled() and not is_loopback(address):
        raise UserError(f"refusing to listen on {address or 'every interface'!r} with sign-in switched off "
                        f"({SIGN_IN_ENV}={os.environ.get(SIGN_IN_ENV)}): anyone on the network could change "
                        "thresholds. Use --server.address 127.0.0.1, or switch sign-in on.")


def local_actor(name: str | None = None) -> Actor:
    """Whoever runs the command line (or the dashboard with sign-in off, on 127.0.0.1 only): they
    can open the workspace's database anyway, so they act as admin, recorded under their name."""
    return system_actor(name or getpass.getuser())


def hash_password(password: str, name: str = "") -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if name and password.strip().lower() == name.strip().lower():
        raise AccountError("the password must not be the user name")
    return _hasher.hash(password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _open_session(s: Session, user: User) -> SignedIn:
    token = secrets.token_urlsafe(32)
    uq.add_session(s, user.id, _token_hash(token), utcnow() + session_limit())
    uq.note_sign_in(s, user)
    return SignedIn(token, uq.actor_of(user), user.must_change_password)


def sign_in(sessions: sessionmaker[Session], name: str, password: str) -> SignedIn:
    """Check a password; SignInError says why not. Failures are recorded and, after
    PREFILTER_QA_SIGNIN_LOCK_AFTER (5) in a row, lock the account for
    PREFILTER_QA_SIGNIN_LOCK_MINUTES (15)."""
    lock_after = int(_float_env(LOCK_AFTER_ENV, 5))
    lock_for = timedelta(minutes=_float_env(LOCK_MINUTES_ENV, 15))
    refusal: str | None = None
    with sessions.begin() as s:
        user = uq.find_user(s, name) if name.strip() else None
        ok = _verify(user.password_hash if user else None, password)  # same cost for unknown names
        if user is None or user.password_hash is None:
            refusal, reason = "wrong user name or password", "unknown user or no password"
        elif not user.active:
            refusal, reason = "this account is disabled; ask an admin", "disabled"
        elif user.locked_until is not None and user.locked_until > utcnow():
            refusal = (f"too many failed sign-ins: this account is locked until "
                       f"{user.locked_until.astimezone():%H:%M}")
            reason = "locked"
        elif not ok:
            uq.note_failed_sign_in(s, user, lock_after=lock_after, lock_for=lock_for)
            refusal, reason = "wrong user name or password", f"wrong password ({user.failed_attempts} in a row)"
            if user.locked_until is not None:
                refusal += f"; the account is now locked for {lock_for.total_seconds() / 60:.0f} minutes"
        if refusal is not None:
            audit.record(s, name.strip().lower()[:100] or "(empty)", audit.SIGN_IN_FAILED, None, {"reason": reason})
        else:
            assert user is not None
            if _hasher.check_needs_rehash(user.password_hash or ""):
                user.password_hash = _hasher.hash(password)
            signed = _open_session(s, user)
            audit.record(s, signed.actor, audit.SIGN_IN, None, {"method": "password"})
            return signed
    raise SignInError(refusal)


def resume(sessions: sessionmaker[Session], token: str | None) -> SignedIn | None:
    """The live session of `token` (role and name as they are now), or None when it ended,
    expired (idle or absolute limit) or its account was disabled."""
    if not token:
        return None
    with sessions.begin() as s:
        found = uq.live_session(s, _token_hash(token), idle_limit(), touch_every=TOUCH_EVERY)
        if found is None:
            return None
        return SignedIn(token, uq.actor_of(found[1]), found[1].must_change_password)


def sign_out(sessions: sessionmaker[Session], token: str | None) -> None:
    if not token:
        return
    with sessions.begin() as s:
        row = uq.end_session(s, _token_hash(token))
        if row is not None:
            audit.record(s, uq.actor_of(uq.get_user(s, row.user_id)), audit.SIGN_OUT)


def change_own_password(sessions: sessionmaker[Session], signed: SignedIn, current: str, new: str) -> None:
    """A user's own new password (after the current one); clears "must change"."""
    with sessions.begin() as s:
        user = uq.get_user(s, signed.actor.user_id or -1)
        if not _verify(user.password_hash, current):
            raise SignInError("the current password is wrong")
        if _verify(user.password_hash, new):
            raise AccountError("the new password must differ from the current one")
        uq.set_password_hash(s, signed.actor, user.id, hash_password(new, user.name), must_change=False)


def _account_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except uq.AccountError as exc:
        raise AccountError(str(exc)) from None
    except ValueError as exc:  # a role name
        raise AccountError(str(exc)) from None


def add_user(sessions: sessionmaker[Session], actor: Actor, name: str, role: str, password: str | None,
             *, must_change: bool = True, email: str | None = None) -> dict[str, Any]:
    """A new account (admin only); without a password it can only sign in through SSO."""
    pw_hash = hash_password(password, name) if password is not None else None
    with sessions.begin() as s:
        user = _account_errors(uq.create_user, s, actor, name=name, role=role, password_hash=pw_hash,
                               email=email, must_change_password=must_change and pw_hash is not None)
        return user_dict(user)


def set_password(sessions: sessionmaker[Session], actor: Actor, name: str, password: str,
                 *, must_change: bool = True) -> dict[str, Any]:
    with sessions.begin() as s:
        user = uq.user_by_name(s, name)
        pw_hash = hash_password(password, user.name)
        return user_dict(uq.set_password_hash(s, actor, user.id, pw_hash, must_change=must_change))


def set_role(sessions: sessionmaker[Session], actor: Actor, name: str, role: str) -> dict[str, Any]:
    with sessions.begin() as s:
        return user_dict(_account_errors(uq.set_role, s, actor, uq.user_by_name(s, name).id, role))


def set_active(sessions: sessionmaker[Session], actor: Actor, name: str, active: bool) -> dict[str, Any]:
    with sessions.begin() as s:
        return user_dict(_account_errors(uq.set_active, s, actor, uq.user_by_name(s, name).id, active))


def list_users(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions.begin() as s:
        return [user_dict(u) for u in uq.list_users(s)]


def user_dict(u: User) -> dict[str, Any]:
    """One account as `prefilter-qa users list --json` shows it (never the hash)."""
    locked = u.locked_until is not None and u.locked_until > utcnow()
    return {"name": u.name, "role": u.role, "active": u.active, "sso": u.oidc_subject is not None,
            "password": u.password_hash is not None, "must_change_password": u.must_change_password,
            "locked_until": u.locked_until.isoformat() if locked and u.locked_until else None,
            "email": u.email, "created_at": u.created_at.isoformat(),
            "last_sign_in_at": u.last_sign_in_at.isoformat() if u.last_sign_in_at else None}


def ensure_first_admin(sessions: sessionmaker[Session]) -> str | None:
    """On a workspace without accounts: create "admin" with a one-time password that must be
    changed at first sign-in, and return it (to print once); None when accounts exist."""
    password = secrets.token_urlsafe(12)
    try:
        with sessions.begin() as s:
            if uq.count_users(s):
                return None
            uq.create_user(s, system_actor("first start"), name=FIRST_ADMIN, role=Role.ADMIN,
                           password_hash=_hasher.hash(password), must_change_password=True)
    except IntegrityError:  # another process created it at the same moment
        return None
    return password


def first_admin_banner(password: str, url: str | None = None) -> str:
    """What the terminal shows once, as Jupyter shows its token."""
    where = f" at {url}" if url else ""
    return (f"\n    First start: created the account '{FIRST_ADMIN}' with the one-time password\n\n"
            f"        {password}\n\n"
            f"    Sign in{where} with it; you will be asked to choose a new password.\n"
            f"    (It is shown only now. Lost it? `prefilter-qa users passwd {FIRST_ADMIN}`.)\n")


def sso_default_role() -> Role:
    raw = os.environ.get(SSO_ROLE_ENV, Role.VIEWER)
    try:
        return parse_role(raw)
    except ValueError as exc:
        raise UserError(f"{SSO_ROLE_ENV}: {exc}") from None


def sso_sign_in(sessions: sessionmaker[Session], claims: dict[str, Any]) -> SignedIn:
    """Sign in a user the identity provider vouched for (Streamlit's st.login / st.user).

    The account is found by issuer + subject; else an account an admin created under the
    (verified) e-mail is linked; else a new one is made with PREFILTER_QA_SSO_DEFAULT_ROLE
    (viewer). A disabled account is refused.
    """
    sub, email = str(claims.get("sub") or ""), str(claims.get("email") or "").strip().lower()
    if not sub:
        raise SignInError("the identity provider sent no subject ('sub'); cannot sign in")
    subject = f"{claims.get('iss') or ''}|{sub}"[:255]
    with sessions.begin() as s:
        user = uq.find_by_subject(s, subject)
        if user is None and email and claims.get("email_verified", True) is not False:
            user = uq.find_user(s, email)
            if user is not None and user.oidc_subject is None:
                user.oidc_subject = subject
        if user is None:
            name = email or f"sso-{hashlib.sha256(subject.encode()).hexdigest()[:12]}"
            user = _account_errors(uq.create_user, s, system_actor("single sign-on"), name=name,
                                   role=sso_default_role(), email=email or None, oidc_subject=subject)
        if user.active:
            signed = _open_session(s, user)
            audit.record(s, signed.actor, audit.SIGN_IN, None, {"method": "sso", "issuer": claims.get("iss")})
            return SignedIn(signed.token, signed.actor, False)
        audit.record(s, user.name, audit.SIGN_IN_FAILED, None, {"reason": "disabled", "method": "sso"})
    raise SignInError("this account is disabled; ask an admin")
