"""Errors of the database layer (it imports nothing of ours, so it has its own)."""


class StaleEditError(Exception):
    """An edit started from a version that is no longer the latest (someone saved meanwhile)."""


class NotFoundError(LookupError):
    """A row named by the caller does not exist."""


class PermissionDenied(PermissionError):
    """The acting user's role does not allow this write (checked below the page, not by hiding a button)."""
