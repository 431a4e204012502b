"""The Datasets page's "Add images" section: import a server folder or upload files, keep the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from dashboard.state import SELECTED_DATASET, actor
from dashboard.widgets.import_ui import folder_import_ui, import_report_ui, skipped_table_ui, upload_ui
from engine.errors import UserError
from engine.services.imports import NoUsableImages, import_folder, import_uploads
from engine.workspace import Workspace

REPORT = "datasets_report"  # the last import's report, shown until dismissed


def _handle_import(action: str, run: Callable[[], dict[str, Any]], pick_key: str) -> None:
    """Run an import, keep its report for the next runs, select the dataset it filled."""
    try:
        with st.spinner(f"{action}: reading and checking every image…"):
            report = run()
    except NoUsableImages as e:
        st.session_state[REPORT] = None
        st.error(f"{e} Nothing was imported.", icon=":material/error:")
        skipped_table_ui([{"path": s.path, "reason": s.reason} for s in e.skipped])
        return
    except UserError as e:
        st.error(str(e), icon=":material/error:")
        return
    st.session_state[REPORT] = report
    st.session_state[SELECTED_DATASET] = report["dataset"]
    st.session_state.pop(pick_key, None)
    st.query_params["dataset"] = report["dataset"]


def add_images_ui(ws: Workspace, factory: sessionmaker[Session], *, pick_key: str) -> None:
    """The expander with the folder and upload tabs; `pick_key` is the dataset picker to reset."""
    with st.expander("Add images — import a server folder or upload files", icon=":material/add_photo_alternate:",
                     expanded=bool(st.session_state.get(REPORT))):
        default_name = st.session_state.get(SELECTED_DATASET) or ""
        folder_tab, upload_tab = st.tabs(["Folder on the server", "Upload from this computer"])
        with folder_tab:
            req = folder_import_ui(ws.import_roots, default_name, key="import_folder")
            if req:
                _handle_import("Importing", lambda: import_folder(ws, factory, req.folder, req.name, req.layout,
                                                                  ws.import_roots, actor=actor()), pick_key)
        with upload_tab:
            up = upload_ui(default_name, key="import_upload")
            if up:
                _handle_import("Uploading",
                               lambda: import_uploads(ws, factory, up.name, up.files, up.split, up.label,
                                                      actor=actor()), pick_key)
        if st.session_state.get(REPORT):
            import_report_ui(st.session_state[REPORT])
            st.button("Dismiss report", key="dismiss_report", on_click=lambda: st.session_state.pop(REPORT, None))
