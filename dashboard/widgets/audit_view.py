"""The Audit page's filters (who, what, when, free text), its table and the CSV export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import pandas as pd
import streamlit as st

from db.audit import AuditFilter

ANY = "(all)"


def audit_filters_ui(actors: list[str], actions: list[str], *, key: str) -> AuditFilter:
    c1, c2, c3, c4 = st.columns([1, 1, 1.4, 1.6])
    who = c1.selectbox("User", [ANY, *actors], key=f"{key}_actor")
    what = c2.selectbox("Action", [ANY, *actions], key=f"{key}_action")
    today = dt.date.today()
    span = c3.date_input("Dates", value=(today - dt.timedelta(days=30), today), key=f"{key}_dates",
                         help="First and last day (local time), both included.")
    text = c4.text_input("Contains", key=f"{key}_text", placeholder="run 3, image 12, a note…")
    since = until = None
    if isinstance(span, (tuple, list)) and span:
        since = _local_midnight(span[0])
        until = _local_midnight(span[-1] + dt.timedelta(days=1))
    return AuditFilter(actor=None if who == ANY else who, action=None if what == ANY else what,
                       since=since, until=until, text=text.strip() or None)


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time()).astimezone()


def _details_text(details: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}"
                     for k, v in details.items() if v not in (None, "", [], {}))


def audit_table_ui(rows: list[dict[str, Any]]) -> None:
    if not rows:
        st.info("No entries match these filters.", icon=":material/info:")
        return
    df = pd.DataFrame({
        "when": [dt.datetime.fromisoformat(r["at"]).astimezone().strftime("%Y-%m-%d %H:%M:%S") for r in rows],
        "user": [r["actor"] for r in rows], "role": [r["role"] or "" for r in rows],
        "action": [r["action"] for r in rows], "target": [r["target"] or "" for r in rows],
        "details": [_details_text(r["details"]) for r in rows],
    })
    st.dataframe(df, hide_index=True, width="stretch")


def audit_csv(rows: list[dict[str, Any]]) -> str:
    """One line per entry; details as JSON (a spreadsheet keeps them in one cell)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "at_utc", "user", "role", "action", "target", "details"])
    for r in rows:
        writer.writerow([r["id"], r["at"], r["actor"], r["role"] or "", r["action"], r["target"] or "",
                         json.dumps(r["details"], default=str, sort_keys=True)])
    return out.getvalue()
