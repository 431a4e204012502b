"""prefilter-qa dashboard: a router over the pages (run with `make run`)."""

import streamlit as st

from dashboard.state import keep_worker_running, user_ui

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
    ],
}

user_ui()
keep_worker_running()
st.navigation(PAGES).run()
        st.Page("dashboard/pages/line.py", title="Line", icon=":material/precision_manufacturing:"),
