"""prefilter-qa dashboard: a router over the pages (run with `make run`).

Nothing but the sign-in form is shown until a user has signed in; pages are listed by role.
"""

import sys

import streamlit as st

from dashboard.state import keep_worker_running, sessions
from dashboard.widgets.signin import (
    account_ui,
    after_sign_out,
    change_password_ui,
    current,
    sign_in_ui,
)
from db.auth import Permission
from engine.errors import UserError
from engine.services.accounts import check_listen_address

st.set_page_config(page_title="prefilter-qa", page_icon=":mag:", layout="wide")

PAGES = {
    "Inspect": [
        st.Page("dashboard/pages/overview.py", title="Overview", icon=":material/home:", default=True),
        st.Page("dashboard/pages/datasets.py", title="Datasets", icon=":material/photo_library:"),
        st.Page("dashboard/pages/annotate.py", title="Annotate", icon=":material/brush:"),
    ],
    "Models": [
        st.Page("dashboard/pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("dashboard/pages/jobs.py", title="Jobs", icon=":material/pending_actions:"),
        st.Page("dashboard/pages/results.py", title="Results", icon=":material/insights:"),
        st.Page("dashboard/pages/thresholds.py", title="Thresholds", icon=":material/tune:"),
        st.Page("dashboard/pages/review.py", title="Review", icon=":material/fact_check:"),
        st.Page("dashboard/pages/line.py", title="Line", icon=":material/precision_manufacturing:"),
    ],
}
ADMIN_PAGES = [  # (page, what the role needs to see it)
    (st.Page("dashboard/pages/audit.py", title="Audit", icon=":material/history:"), Permission.AUDIT),
    (st.Page("dashboard/pages/users.py", title="Users", icon=":material/group:"), Permission.USERS),
]

try:
    check_listen_address(st.get_option("server.address"))
except UserError as e:
    sys.stderr.write(f"prefilter-qa: {e}\n")
    st.error(f"The dashboard is not served: {e}", icon=":material/gpp_bad:")
    st.stop()

factory = sessions()
after_sign_out()
signed = current(factory)
if signed is None or signed.must_change_password:
    st.navigation([p for group in PAGES.values() for p in group] + [p for p, _ in ADMIN_PAGES],
                  position="hidden")  # keeps the address (page, ?run=...) for after the sign-in
    if signed is None:
        sign_in_ui(factory)
    else:
        change_password_ui(factory, signed, forced=True)
    st.stop()

allowed = [page for page, need in ADMIN_PAGES if signed.actor.can(need)]
account_ui(factory, signed)
keep_worker_running()
st.navigation(PAGES | ({"Admin": allowed} if allowed else {})).run()
