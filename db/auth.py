"""Roles and the acting user: every write function of the database layer takes an `Actor` and
refuses with PermissionDenied when its role does not allow the write.

Roles are cumulative: an annotator may do what a viewer may, an engineer what an annotator may,
an admin everything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from db.errors import PermissionDenied


class Role(enum.StrEnum):
    VIEWER = "viewer"  # reads everything
    ANNOTATOR = "annotator"  # masks, labels, review decisions
    ENGINEER = "engineer"  # train, evaluate, jobs, import/upload, thresholds, releases, ROI, audit
    ADMIN = "admin"  # users and roles, and everything


ROLES = tuple(Role)
_RANK = {role: i for i, role in enumerate(ROLES)}


class Permission(enum.StrEnum):
    """What a write needs; `MINIMUM_ROLE` says which role grants it."""

    ANNOTATE = "annotate"  # masks, labels and splits, review decisions
    JOBS = "jobs"  # train, evaluate, cancel and retry jobs
    IMPORT = "import"  # import folders, upload images
    THRESHOLDS = "thresholds"
    RELEASES = "releases"
    ROI = "roi"
    AUDIT = "audit"  # read the audit trail
    USERS = "users"  # add users, change roles, disable accounts


MINIMUM_ROLE = {
    Permission.ANNOTATE: Role.ANNOTATOR,
    Permission.JOBS: Role.ENGINEER, Permission.IMPORT: Role.ENGINEER,
    Permission.THRESHOLDS: Role.ENGINEER, Permission.RELEASES: Role.ENGINEER,
    Permission.ROI: Role.ENGINEER, Permission.AUDIT: Role.ENGINEER,
    Permission.USERS: Role.ADMIN,
}


def parse_role(value: str) -> Role:
    """A role from its name; ValueError naming the allowed ones."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise ValueError(f"role {value!r}: use one of {', '.join(ROLES)}") from None


@dataclass(frozen=True)
class Actor:
    """Who performs a write: a signed-in account (user_id set) or the system itself (the worker's
    automatic threshold, the command line run by whoever owns the workspace: user_id None)."""

    name: str
    role: Role
    user_id: int | None = None

    def can(self, permission: Permission) -> bool:
        return _RANK[Role(self.role)] >= _RANK[MINIMUM_ROLE[permission]]


def require(actor: Actor, permission: Permission, what: str) -> None:
    """Refuse `what` (e.g. "save a threshold") unless the actor's role grants `permission`."""
    if not isinstance(actor, Actor):
        raise TypeError(f"{what}: the acting user must be an Actor, not {type(actor).__name__}")
    if not actor.can(permission):
        need = MINIMUM_ROLE[permission]
        raise PermissionDenied(f"{actor.name} ({actor.role}) may not {what}: that needs the {need} role"
                               + (" or admin" if need != Role.ADMIN else ""))


def system_actor(name: str) -> Actor:
    """An actor for work no person does by hand (the worker's automatic threshold, the CLI)."""
    return Actor(name=name, role=Role.ADMIN, user_id=None)
