"""Results page: the evaluation report as CSV (one row per test image) and PDF (change control).

The files are made by `engine.services.reports` only when a button is pressed (the download
buttons take a callable), the same function `prefilter-qa report` uses.
"""

from __future__ import annotations

import streamlit as st

from dashboard.state import sessions
from engine.services.reports import report_bytes, report_name


def report_downloads_ui(run_id: int, evaluation_id: int) -> None:
    """Two download buttons and a line on what each file holds."""
    c1, c2, c3 = st.columns([1, 1, 3], vertical_alignment="center")
    c1.download_button(
        "CSV report", data=lambda: report_bytes(sessions(), run_id, evaluation_id, "csv"),
        file_name=report_name(run_id, evaluation_id, "csv"), mime="text/csv", icon=":material/table:",
        key=f"report_csv_{evaluation_id}", on_click="ignore", width="stretch")
    c2.download_button(
        "PDF report", data=lambda: report_bytes(sessions(), run_id, evaluation_id, "pdf"),
        file_name=report_name(run_id, evaluation_id, "pdf"), mime="application/pdf",
        icon=":material/picture_as_pdf:", key=f"report_pdf_{evaluation_id}", on_click="ignore", width="stretch")
    c3.caption("CSV: one row per test image (score, verdict at the active threshold and band, mask and "
               "predicted-defect pixels). PDF: the evaluation report for change control (metrics with "
               "intervals, ROC, histogram, confusion, worst false rejects and escapes, threshold history). "
               "Same as `prefilter-qa report`.")
