"""Datasets: counts, import / upload, a filtered thumbnail grid and one image in detail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard.imports import NoUsableImages, import_server_folder, import_uploads
from dashboard.state import ANNOTATE_IMAGE, SELECTED_DATASET, SELECTED_IMAGE, sessions, workspace
from dashboard.ui import LABEL_COLORS, flash, page_header, query_int, show_flashes
from dashboard.widgets.dataset_picker import dataset_picker_ui
from dashboard.widgets.filters import ImageFilter, image_filters_ui
from dashboard.widgets.gallery import PAGE_SIZE, GalleryItem, gallery_ui, pager_ui
from dashboard.widgets.image_detail import image_edit_ui, image_view_ui
from dashboard.widgets.import_ui import folder_import_ui, import_report_ui, skipped_table_ui, upload_ui
from dashboard.widgets.roi import roi_editor_ui
from db import datasets as dq
from db import masks as mq
from db.errors import NotFoundError
from db.models import Image, Mask
from engine.errors import UserError

PICK, PAGE, FILTERS, REPORT = "datasets_pick", "datasets_page", "datasets_filters", "datasets_report"
ROI_OPEN = "datasets_roi_open"
LABEL_TEXT = {"ok": "OK", "nok": "NOK", "unknown": "?"}

page_header("Datasets", "Import images, browse and filter them, fix labels and splits. "
            "Training uses the OK images of the train split; evaluation the labelled test images.")
show_flashes()
ws, factory = workspace(), sessions()
table_slot = st.container()


def handle_import(action: str, run: Callable[[], dict[str, Any]]) -> None:
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
    st.session_state.pop(PICK, None)
    st.query_params["dataset"] = report["dataset"]


with st.expander("Add images — import a server folder or upload files", icon=":material/add_photo_alternate:",
                 expanded=bool(st.session_state.get(REPORT))):
    default_name = st.session_state.get(SELECTED_DATASET) or ""
    folder_tab, upload_tab = st.tabs(["Folder on the server", "Upload from this computer"])
    with folder_tab:
        req = folder_import_ui(ws.import_roots, default_name, key="import_folder")
        if req:
            handle_import("Importing", lambda: import_server_folder(ws, factory, req.folder, req.name, req.layout))
    with upload_tab:
        up = upload_ui(default_name, key="import_upload")
        if up:
            handle_import("Uploading", lambda: import_uploads(ws, factory, up.name, up.files, up.split, up.label))
    if st.session_state.get(REPORT):
        import_report_ui(st.session_state[REPORT])
        st.button("Dismiss report", key="dismiss_report", on_click=lambda: st.session_state.pop(REPORT, None))

with factory.begin() as s:
    counts = dq.dataset_counts(s)
with table_slot:
    if counts:
        st.dataframe(
            [{"Dataset": c.name, "Train OK": c.train_ok, "Test OK": c.test_ok, "Test NOK": c.test_nok,
              "Masks": c.masks, "Unlabelled": c.unlabelled, "Images": c.total} for c in counts],
            hide_index=True, width="stretch")
    else:
        st.info("No datasets yet. Import a folder or upload images below — or run `prefilter-qa demo` "
                "for a synthetic demo dataset.", icon=":material/info:")
if not counts:
    st.stop()

st.divider()
top_left, top_right = st.columns([1, 2], vertical_alignment="bottom")
with top_left:
    name = dataset_picker_ui([c.name for c in counts], key=PICK, url=True)
ds = next(c for c in counts if c.name == name)
top_right.caption(f"{ds.total} images: {ds.train_ok} train OK, {ds.test_ok} test OK, {ds.test_nok} test NOK "
                  f"({ds.masks} with a mask), {ds.unlabelled} unlabelled.")
with st.expander("Region of interest", icon=":material/crop_free:", key=ROI_OPEN, on_change="rerun"):
    st.caption("Pixels outside the region are ignored by scores, heatmaps and pixel metrics of later runs.")
    if st.session_state.get(ROI_OPEN):  # the editor (a canvas) is only built when opened
        roi_editor_ui(ds.id)  # dashboard/widgets/roi.py (Annotate developer)

with factory.begin() as s:
    types = dq.defect_types(s, ds.id)
flt: ImageFilter = image_filters_ui(types, key=FILTERS)
signature = (ds.id, flt)
if st.session_state.get("_datasets_sig") != signature:  # new dataset or filters: back to page 1
    st.session_state["_datasets_sig"] = signature
    st.session_state[PAGE] = 0


def selected_image_id() -> int | None:
    """The open image: chosen in this session, else ?image= (whose page is then shown)."""
    chosen = st.session_state.get(SELECTED_IMAGE)
    if chosen is None and (from_url := query_int("image")) is not None:
        st.session_state[SELECTED_IMAGE] = chosen = from_url
        with factory.begin() as s:
            pos = dq.image_position(s, ds.id, from_url, **flt.as_kwargs())
        if pos is not None:
            st.session_state[PAGE] = pos // PAGE_SIZE
    return chosen


def open_image(image_id: int) -> None:
    st.session_state[SELECTED_IMAGE] = image_id


def close_image() -> None:
    st.session_state.pop(SELECTED_IMAGE, None)
    st.query_params.pop("image", None)


image_id = selected_image_id()
selected: Image | None = None
mask: Mask | None = None
if image_id is not None:
    with factory.begin() as s:
        try:
            selected = dq.get_image(s, image_id)
        except NotFoundError:
            selected = None
        if selected is not None and selected.dataset_id != ds.id:
            selected = None
        mask = mq.current_mask(s, selected.id) if selected else None
if selected is None:
    close_image()
else:
    st.query_params["image"] = str(selected.id)



def image_detail(img: Image, mask: Mask | None, neighbours: list[int]) -> None:
    """The drawer: previous/next, picture + mask, metadata, relabel form, training, annotate."""
    pos = neighbours.index(img.id) if img.id in neighbours else -1
    nav = st.columns(2)
    for col, step, label, icon in ((nav[0], -1, "Previous", ":material/chevron_left:"),
                                   (nav[1], 1, "Next", ":material/chevron_right:")):
        target = neighbours[pos + step] if pos >= 0 and 0 <= pos + step < len(neighbours) else None
        if col.button(label, icon=icon, width="stretch", disabled=target is None, key=f"detail_{label}",
                      icon_position="left" if step < 0 else "right"):
            st.session_state[SELECTED_IMAGE] = target
            st.rerun()
    image_view_ui(img, mask, key="detail")
    st.divider()
    edit = image_edit_ui(img, types, key="detail")
    b1, b2 = st.columns(2)
    move = b1.button("Move to training", icon=":material/school:", width="stretch",
                     disabled=img.label == "nok" or (img.split, img.label) == ("train", "ok"),
                     help="Label it OK and put it in the train split (used by the next training).")
    if b2.button("Annotate", icon=":material/brush:", width="stretch", help="Draw or correct its mask."):
        close_image()
        st.session_state[ANNOTATE_IMAGE] = img.id
        st.switch_page("dashboard/pages/annotate.py")
    if edit or move:
        with factory.begin() as s:
            if move:
                img = dq.update_image(s, img.id, label="ok", split="train")
            else:
                img = dq.update_image(
                    s, img.id, label=edit.label, split=edit.split,
                    defect_type=edit.defect_type if edit.label != "ok" else None,
                    clear_defect_type=edit.defect_type is None or edit.label == "ok")
        flash(f"Saved {Path(img.rel_path).name}: {LABEL_TEXT[img.label]}, {img.split or 'unassigned'}"
              + (f", {img.defect_type}" if img.defect_type else ""))
        st.rerun()  # counts, filters and the grid all change; the drawer reopens on this image


with factory.begin() as s:
    total = dq.count_images(s, ds.id, **flt.as_kwargs())
offset = pager_ui(total, key=PAGE)
with factory.begin() as s:
    images = dq.list_images(s, ds.id, **flt.as_kwargs(), offset=offset, limit=PAGE_SIZE)
    masks = mq.current_masks(s, [i.id for i in images])
items = []
for img in images:
    m = masks.get(img.id)
    drawn = m is not None and m.path and m.pixels > 0
    items.append(GalleryItem(
        id=img.id, path=Path(img.path), sha256=img.sha256, caption=Path(img.rel_path).name,
        badge=LABEL_TEXT.get(img.label, img.label), badge_color=LABEL_COLORS.get(img.label, "gray"),
        detail=" · ".join(x for x in (img.split or "unassigned", img.defect_type) if x),
        mask_path=Path(m.path) if drawn else None, mask_sha256=m.sha256 if drawn else None))
gallery_ui(items, key="datasets_grid", cache_dir=ws.cache_dir, columns=6,
           selected=selected.id if selected else None, on_click=open_image)
if selected is not None:
    st.dialog(Path(selected.rel_path).name, width=640, position="right",
              on_dismiss=close_image)(image_detail)(selected, mask, [i.id for i in images])
