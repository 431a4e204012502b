"""Errors a user can act on: the CLI prints them as one line, the dashboard as a message."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input or environment, reported without a traceback."""


class InputFileError(UserError):
    """A file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConflictError(UserError):
    """Someone saved the same mask or threshold since this edit started."""
