"""`prefilter-qa users ...`: accounts of the dashboard. Passwords are read from a prompt (or one
line of standard input when it is not a terminal), never from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from db.auth import ROLES
from engine.cli.output import EXIT_USER_ERROR, CliExit, emit, table
from engine.services import accounts
from engine.services.store import open_workspace

COLUMNS = ["name", "role", "active", "sso", "must_change_password", "locked_until", "last_sign_in_at"]


def read_password(prompt: str = "Password: ") -> str:
    """From the terminal (asked twice) or one line of stdin (`echo ... | prefilter-qa users add`)."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line:
            raise CliExit(EXIT_USER_ERROR, "no password on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("Repeat: ") != first:
        raise CliExit(EXIT_USER_ERROR, "the two passwords differ")
    return first


def _user_text(u: dict[str, Any]) -> str:
    state = "active" if u["active"] else "disabled"
    extra = ", must change the password at next sign-in" if u["must_change_password"] else ""
    return f"user {u['name']}: {u['role']}, {state}{extra}"


def cmd_users(args: argparse.Namespace) -> int:
    _, sessions = open_workspace()
    actor = accounts.local_actor(args.user)
    action = args.users_command
    if action == "init":
        accounts.check_listen_address(args.address)
        password = accounts.ensure_first_admin(sessions)
        if args.json:
            emit(args, {"created": password is not None, "name": accounts.FIRST_ADMIN if password else None,
                        "password": password}, str)
        elif password:
            print(accounts.first_admin_banner(password, args.url), file=sys.stderr, flush=True)
        return 0
    if action == "list":
        emit(args, accounts.list_users(sessions), lambda rows: table(rows, COLUMNS))
        return 0
    if action == "add":
        password = None if args.sso_only else read_password()
        result = accounts.add_user(sessions, actor, args.name, args.role, password,
                                   must_change=not args.no_change, email=args.email)
    elif action == "passwd":
        result = accounts.set_password(sessions, actor, args.name, read_password("New password: "),
                                       must_change=not args.no_change)
    elif action == "role":
        result = accounts.set_role(sessions, actor, args.name, args.role)
    else:
        result = accounts.set_active(sessions, actor, args.name, action == "enable")
    emit(args, result, _user_text)
    return 0


def args_users(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="your name in the audit trail (default: your login name)")
    sub = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def add(name: str, helptext: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--json", action="store_true", help="machine-readable output")
        return q

    init = add("init", "first start: create 'admin' with a one-time password if there is no account yet")
    init.add_argument("--address", default="127.0.0.1", help="the address the dashboard will listen on")
    init.add_argument("--url", help="the dashboard's address, for the message")
    add("list", "list accounts")
    q = add("add", "add an account (password from a prompt or stdin)")
    q.add_argument("name")
    q.add_argument("--role", default="viewer", choices=ROLES)
    q.add_argument("--email")
    q.add_argument("--sso-only", action="store_true", help="no password: signs in through single sign-on")
    q.add_argument("--no-change", action="store_true", help="do not ask for a new password at first sign-in")
    q = add("passwd", "set a password (asked for a new one at next sign-in unless --no-change)")
    q.add_argument("name")
    q.add_argument("--no-change", action="store_true")
    q = add("role", "change an account's role")
    q.add_argument("name")
    q.add_argument("role", choices=ROLES)
    add("disable", "disable an account (signs it out everywhere)").add_argument("name")
    add("enable", "enable a disabled account").add_argument("name")
