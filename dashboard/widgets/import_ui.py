"""Forms for importing a server folder or uploading files, and the import report display."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from engine.intake.images import IMAGE_EXTENSIONS

LAYOUTS = {"auto": "Detect automatically", "seed": "seed (train/ok, test/ok, test/nok, test/masks/nok)",
           "mvtec": "MVTec (train/good, test/<defect>, ground_truth)", "flat": "flat (unlabelled images)"}
SPLITS = {"none": "Unassigned", "train": "Train", "test": "Test"}
LABELS = {"unknown": "Unlabelled", "ok": "OK", "nok": "NOK"}
MAX_UPLOAD_MB = 1024  # per file: a zipped dataset; larger ones belong on the server (folder import)


@dataclass(frozen=True)
class FolderRequest:
    folder: str
    name: str
    layout: str


@dataclass(frozen=True)
class UploadRequest:
    name: str
    files: list[tuple[str, bytes]]  # (file name as uploaded, bytes)
    split: str | None  # for loose images: "train" | "test" | None
    label: str  # for loose images: "ok" | "nok" | "unknown"


def folder_import_ui(roots: list[Path], default_name: str, *, key: str) -> FolderRequest | None:
    """A form; returns the request when submitted."""
    with st.form(f"{key}_form", border=False):
        folder = st.text_input("Folder on the server", key=f"{key}_folder",
                               placeholder=str(roots[0] / "my-dataset") if roots else "",
                               help="Absolute path of a dataset folder on the server.")
        st.caption("Allowed under: " + ", ".join(f"`{r}`" for r in roots)
                   + " (set PREFILTER_QA_IMPORT_ROOTS to change).")
        c1, c2 = st.columns(2)
        name = c1.text_input("Dataset name", key=f"{key}_name", placeholder="the folder's name",
                             help="Empty: the folder's name. An existing name adds the images to that dataset; "
                                  "a new name creates one.")
        layout = c2.selectbox("Layout", list(LAYOUTS), format_func=LAYOUTS.__getitem__, key=f"{key}_layout")
        if st.form_submit_button("Import folder", icon=":material/drive_folder_upload:", type="primary"):
            return FolderRequest(folder=folder, name=name.strip() or folder_name(folder), layout=layout)
    return None


def folder_name(folder: str) -> str:
    """The dataset name a folder suggests: its last part (`/data/line3-march/` -> "line3-march")."""
    return Path(folder.strip()).expanduser().name if folder.strip() else ""


def upload_ui(default_name: str, *, key: str) -> UploadRequest | None:
    """File uploader (images and/or zips) + where loose images go; returns the request on submit."""
    types = sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS) + ["zip"]
    with st.form(f"{key}_form", border=False, clear_on_submit=True):
        files = st.file_uploader("Images or zip archives", type=types, accept_multiple_files=True,
                                 key=f"{key}_files", max_upload_size=MAX_UPLOAD_MB,
                                 help="A zip may hold loose images or a whole dataset in the seed or "
                                      "MVTec layout (its folders then give split, label and masks).")
        name = st.text_input("Dataset name", key=f"{key}_name",
                             placeholder=f"e.g. {default_name} (the open dataset) or a new name" if default_name
                             else "a new name", help="Required: an existing name adds the images to that "
                             "dataset, a new name creates one. Nothing is filled in, so an upload never lands "
                             "in a dataset by accident.")
        c1, c2 = st.columns(2)
        split = c1.selectbox("Split of loose images", list(SPLITS), format_func=SPLITS.__getitem__,
                             key=f"{key}_split")
        label = c2.selectbox("Label of loose images", list(LABELS), format_func=LABELS.__getitem__,
                             key=f"{key}_label")
        if st.form_submit_button("Upload and import", icon=":material/upload:", type="primary"):
            payload = [(f.name, f.getvalue()) for f in files or []]
            return UploadRequest(name=name, files=payload, split=None if split == "none" else split,
                                 label=label)
    return None


def skipped_table_ui(skipped: list[dict[str, str]]) -> None:
    if skipped:
        st.dataframe([{"File": s["path"], "Reason": s["reason"]} for s in skipped], hide_index=True,
                     width="stretch", height=min(400, 38 + 35 * len(skipped)))


def import_report_ui(report: dict[str, Any]) -> None:
    """Counts of what was imported, then every skipped file with its reason."""
    c = report["imported"]
    names = {"train_ok": "train OK", "test_ok": "test OK", "test_nok": "test NOK", "train_nok": "train NOK",
             "unlabelled": "unlabelled", "masks": "masks"}
    parts = [f"{c[k]} {label}" for k, label in names.items() if c.get(k)]
    st.success(f"Dataset **{report['dataset']}** ({report['layout']} layout): imported "
               + (", ".join(parts) if parts else "no new images")
               + f"; {report['unchanged']} already there, unchanged.", icon=":material/check_circle:")
    if report.get("updated"):
        with st.expander(f"{len(report['updated'])} images updated"):
            st.dataframe([{"File": u["path"], "Why": u["reason"]} for u in report["updated"]],
                         hide_index=True, width="stretch")
    gone = (report.get("missing") or []) + (report.get("changed") or [])
    if gone:
        st.warning(f"{len(report.get('missing') or [])} recorded image(s) missing and "
                   f"{len(report.get('changed') or [])} changed since the last import: they are marked "
                   "missing and left out of counts, training and evaluation until the file is back.",
                   icon=":material/report:")
        skipped_table_ui(gone)
    if report.get("restored"):
        st.info(f"{len(report['restored'])} image(s) are back with their imported content.",
                icon=":material/restore:")
    skipped = report.get("skipped") or []
    if skipped:
        st.warning(f"{len(skipped)} file{'s' if len(skipped) != 1 else ''} skipped — "
                   "each with the reason:", icon=":material/warning:")
        skipped_table_ui(skipped)
