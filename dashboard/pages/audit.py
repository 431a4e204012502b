"""Audit: who did what when — thresholds, masks, labels, reviews, imports, jobs, releases,
accounts and sign-ins — filtered, and exported as CSV."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from dashboard.state import actor, can, sessions
from dashboard.ui import page_header
from dashboard.widgets.audit_view import audit_csv, audit_filters_ui, audit_table_ui
from db import audit
from db.auth import Permission

page_header("Audit", "Every change and sign-in, newest first. The trail is append-only: nobody can edit "
            "or delete an entry.")
if not can(Permission.AUDIT):
    st.warning(f"Your role ({actor().role}) cannot see the audit trail: it needs engineer or admin.",
               icon=":material/lock:")
    st.stop()

factory = sessions()
with factory.begin() as s:
    choices = audit.actors(s), audit.actions(s)
flt = audit_filters_ui(*choices, key="audit")
with factory.begin() as s:
    rows = [audit.event_dict(e) for e in audit.events(s, flt, limit=5000)]
st.caption(f"{len(rows)} entries" + (" (the newest 5000)" if len(rows) == 5000 else ""))
audit_table_ui(rows)
st.download_button("Download CSV", audit_csv(rows), file_name=f"audit-{dt.date.today():%Y%m%d}.csv",
                   mime="text/csv", icon=":material/download:", disabled=not rows)
