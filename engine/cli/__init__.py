"""The `prefilter-qa` command line: `main` parses, `commands` holds one function per command,
`output` prints answers (JSON with --json) and defines the exit codes."""

from engine.cli.main import main

__all__ = ["main"]
