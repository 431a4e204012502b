"""Accounts and their browser sessions. Changing accounts needs the admin role (db.auth); each
change is recorded in the audit trail in the same transaction. Password hashing is the caller's
(engine.services.accounts): this layer stores hashes and token digests only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import audit
from db.auth import Actor, Permission, Role, parse_role, require
from db.errors import NotFoundError
from db.models import User, UserSession, utcnow

_NAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,99}$")


class AccountError(ValueError):
    """A refused account change (bad name, duplicate, the last admin); the message says why."""


def check_user_name(name: str) -> str:
    """Names are case-insensitive: stored lower-case, 1–100 of a-z 0-9 . _ @ + - (e-mails fit)."""
    norm = name.strip().lower()
    if not _NAME.match(norm):
        raise AccountError(f"user name {name!r}: use 1–100 letters, digits or . _ @ + - "
                           "(starting with a letter or digit)")
    return norm


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count(User.id))) or 0)


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user {user_id}")
    return user


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name.strip().lower()))


def user_by_name(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise NotFoundError(f"no user {name!r}; see `prefilter-qa users list`")
    return user


def find_by_subject(session: Session, subject: str) -> User | None:
    return session.scalar(select(User).where(User.oidc_subject == subject))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def actor_of(user: User) -> Actor:
    return Actor(name=user.name, role=Role(user.role), user_id=user.id)


def create_user(
    session: Session, actor: Actor, *, name: str, role: Role | str, password_hash: str | None = None,
    email: str | None = None, oidc_subject: str | None = None, must_change_password: bool = False,
) -> User:
    """Add an account (admin only). A name already taken is an AccountError."""
    require(actor, Permission.USERS, "add users")
    norm, role = check_user_name(name), parse_role(str(role))
    if find_user(session, norm) is not None:
        raise AccountError(f"user {norm!r} exists already")
    user = User(name=norm, role=role, password_hash=password_hash, email=email, oidc_subject=oidc_subject,
                must_change_password=must_change_password, active=True, failed_attempts=0)
    session.add(user)
    session.flush()
    audit.record(session, actor, audit.USER_ADDED, f"user {norm}",
                 {"role": str(role), "sso": oidc_subject is not None})
    return user


def _active_admins(session: Session) -> int:
    return int(session.scalar(select(func.count(User.id)).where(User.role == Role.ADMIN, User.active)) or 0)


def _keep_an_admin(session: Session, user: User, what: str) -> None:
    if user.role == Role.ADMIN and user.active and _active_admins(session) <= 1:
        raise AccountError(f"{what} {user.name!r}: it is the last active admin; make another admin first")


def set_role(session: Session, actor: Actor, user_id: int, role: Role | str) -> User:
    require(actor, Permission.USERS, "change roles")
    user, role = get_user(session, user_id), parse_role(str(role))
    if role == user.role:
        return user
    if role != Role.ADMIN:
        _keep_an_admin(session, user, "cannot take the admin role from")
    old, user.role = user.role, role
    session.flush()
    audit.record(session, actor, audit.USER_ROLE_CHANGED, f"user {user.name}", {"from": old, "to": str(role)})
    return user


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> User:
    """Disable (signs the user out everywhere) or enable an account."""
    require(actor, Permission.USERS, "disable or enable users")
    user = get_user(session, user_id)
    if user.active == active:
        return user
    if not active:
        _keep_an_admin(session, user, "cannot disable")
        end_user_sessions(session, user.id)
    user.active = active
    if active:
        user.failed_attempts, user.locked_until = 0, None
    session.flush()
    audit.record(session, actor, audit.USER_ENABLED if active else audit.USER_DISABLED, f"user {user.name}")
    return user


def set_password_hash(session: Session, actor: Actor, user_id: int, password_hash: str, *,
                      must_change: bool) -> User:
    """A new password: users change their own; an admin sets anyone's (then they are signed out)."""
    if actor.user_id != user_id:
        require(actor, Permission.USERS, "set another user's password")
    user = get_user(session, user_id)
    user.password_hash, user.must_change_password = password_hash, must_change
    user.failed_attempts, user.locked_until = 0, None
    if actor.user_id != user_id:
        end_user_sessions(session, user.id)
    session.flush()
    audit.record(session, actor, audit.PASSWORD_CHANGED, f"user {user.name}", {"must_change": must_change})
    return user


def note_failed_sign_in(session: Session, user: User, *, lock_after: int, lock_for: timedelta) -> None:
    """Count a failed password; `lock_after` failures in a row lock the account for `lock_for`."""
    user.failed_attempts = (user.failed_attempts or 0) + 1
    if user.failed_attempts >= lock_after:
        user.locked_until = utcnow() + lock_for
    session.flush()


def note_sign_in(session: Session, user: User) -> None:
    user.failed_attempts, user.locked_until, user.last_sign_in_at = 0, None, utcnow()
    session.flush()


def add_session(session: Session, user_id: int, token_hash: str, expires_at: datetime) -> UserSession:
    row = UserSession(user_id=user_id, token_hash=token_hash, expires_at=expires_at)
    session.add(row)
    session.flush()
    return row


def live_session(session: Session, token_hash: str, idle: timedelta,
                 touch_every: timedelta = timedelta(0)) -> tuple[UserSession, User] | None:
    """The session and its account if the session is open, not expired, not idle for longer than
    `idle`, and the account is active; its last-seen time is moved on (when older than `touch_every`)."""
    row = session.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
    now = utcnow()
    if row is None or row.ended_at is not None or row.expires_at <= now or row.last_seen_at + idle <= now:
        return None
    user = get_user(session, row.user_id)
    if not user.active:
        return None
    if now - row.last_seen_at >= touch_every:
        row.last_seen_at = now
    return row, user


def end_session(session: Session, token_hash: str) -> UserSession | None:
    row = session.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
    if row is not None and row.ended_at is None:
        row.ended_at = utcnow()
    return row


def end_user_sessions(session: Session, user_id: int) -> None:
    session.execute(update(UserSession).where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
                    .values(ended_at=utcnow()))
