"""Errors of the database layer (it imports nothing of ours, so it has its own)."""


class StaleEditError(Exception):
    """An edit started from a version that is no longer the latest (someone saved meanwhile)."""


class NotFoundError(LookupError):
    """A row named by the caller does not exist."""


class PermissionDenied(PermissionError):
    """The acting user's role does not allow this write (checked below the page, not by hiding a button)."""


class ValidationError(ValueError):
    """A value the database layer refuses (bad name, too long, not a finite number, band out of
    order); the message names the field, the value and the reason, the same on SQLite and PostgreSQL."""


class SupersededError(RuntimeError):
    """A job attempt that is no longer the job's current running attempt tried to write: its
    job was failed, cancelled or started again meanwhile, so the write is refused."""
