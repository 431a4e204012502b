"""`prefilter-qa users ...` end to end in subprocesses: passwords only from stdin, never argv;
the first-start admin of `make run` (`users init`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.services import accounts
from engine.services.store import open_workspace
from engine.workspace import DATABASE_URL_ENV, HOME_ENV
from tests.conftest import REPO, cli


def users(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    run_env = os.environ | {HOME_ENV: str(home)} | (env or {})
    run_env.pop(DATABASE_URL_ENV, None)
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "users", *args], cwd=REPO, env=run_env,
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def test_users_add_list_role_passwd_disable(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"
    added = json.loads(users(home, "add", "erika", "--role", "engineer", "--json", stdin="erika's password\n").stdout)
    assert added["role"] == "engineer" and added["must_change_password"] and "password_hash" not in added
    assert "erika's password" not in json.dumps(added)
    short = users(home, "add", "bob", stdin="short\n", check=False)
    assert short.returncode == 1 and "too short" in short.stderr
    nothing = users(home, "add", "bob", stdin="", check=False)
    assert nothing.returncode == 1 and "no password on standard input" in nothing.stderr
    users(home, "add", "rita@plant.example", "--sso-only", "--role", "annotator")
    users(home, "role", "erika", "admin")
    users(home, "passwd", "erika", "--no-change", stdin="a new password\n")
    users(home, "disable", "rita@plant.example")
    rows = {r["name"]: r for r in json.loads(users(home, "list", "--json").stdout)}
    assert set(rows) == {"erika", "rita@plant.example"}
    assert (rows["erika"]["role"], rows["erika"]["must_change_password"]) == ("admin", False)
    assert rows["rita@plant.example"]["active"] is False and not rows["rita@plant.example"]["password"]
    bad = users(home, "role", "nobody", "viewer", check=False)
    assert bad.returncode == 1 and "no user 'nobody'" in bad.stderr
    last = users(home, "disable", "erika", check=False)
    assert last.returncode == 1 and "last active admin" in last.stderr
    monkeypatch.setenv(HOME_ENV, str(home))
    factory = open_workspace()[1]
    assert accounts.sign_in(factory, "erika", "a new password").actor.role == "admin"
    # the command line is recorded under the login name or --user
    log = cli("users", "--user", "it-desk", "enable", "rita@plant.example", home=home)
    assert "active" in log.stdout
    from db import audit
    with factory.begin() as s:
        last_event = audit.events(s)[0]
    assert (last_event.actor, last_event.action) == ("it-desk", "user_enabled")
    assert last_event.target == "user rita@plant.example"


def test_first_start_creates_an_admin_once_and_prints_its_one_time_password(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What `make run` runs before the server starts."""
    home = tmp_path / "ws"
    first = users(home, "init", "--url", "http://127.0.0.1:8501")
    text = first.stderr
    assert "created the account 'admin'" in text and "http://127.0.0.1:8501" in text
    password = next(line.strip() for line in text.splitlines()
                    if line.strip() and " " not in line.strip() and line.strip() != "admin")
    again = users(home, "init", "--json")
    assert json.loads(again.stdout) == {"created": False, "name": None, "password": None}
    monkeypatch.setenv(HOME_ENV, str(home))
    signed = accounts.sign_in(open_workspace()[1], "admin", password)
    assert signed.must_change_password and signed.actor.role == "admin"


def test_init_refuses_the_network_without_sign_in(tmp_path: Path) -> None:
    off = {accounts.SIGN_IN_ENV: "off"}
    refused = users(tmp_path / "ws", "init", "--address", "0.0.0.0", env=off, check=False)
    assert refused.returncode == 1 and "refusing to listen on '0.0.0.0' with sign-in switched off" in refused.stderr
    users(tmp_path / "ws", "init", "--address", "127.0.0.1", env=off)
    users(tmp_path / "ws", "init", "--address", "0.0.0.0")  # sign-in on: fine
