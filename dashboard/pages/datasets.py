"""Datasets: counts, import / upload, a filtered thumbnail grid and one image in detail."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.state import can, role_note, sessions, workspace
from dashboard.ui import LABEL_COLORS, page_header, show_flashes
from dashboard.widgets.dataset_import import add_images_ui
from dashboard.widgets.dataset_picker import dataset_picker_ui
from dashboard.widgets.filters import ImageFilter, image_filters_ui
from dashboard.widgets.gallery import PAGE_SIZE, GalleryItem, gallery_ui, pager_ui
from dashboard.widgets.image_drawer import LABEL_TEXT, close_image, image_drawer_ui, open_image, selected_image
from dashboard.widgets.roi import roi_editor_ui
from db import datasets as dq
from db import masks as mq
from db.auth import Permission

PICK, PAGE, FILTERS, ROI_OPEN = "datasets_pick", "datasets_page", "datasets_filters", "datasets_roi_open"

page_header("Datasets", "Import images, browse and filter them, fix labels and splits. "
            "Training uses the OK images of the train split; evaluation the labelled test images.")
show_flashes()
ws, factory = workspace(), sessions()
table_slot = st.container()
if can(Permission.IMPORT):
    add_images_ui(ws, factory, pick_key=PICK)

with factory.begin() as s:
    counts = dq.dataset_counts(s)
with table_slot:
    if counts:
        st.dataframe(
            [{"Dataset": c.name, "Train OK": c.train_ok, "Test OK": c.test_ok, "Test NOK": c.test_nok,
              "Masks": c.masks, "Unlabelled": c.unlabelled, "Images": c.total, "Missing": c.missing}
             for c in counts],
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
                  f"({ds.masks} with a mask), {ds.unlabelled} unlabelled."
                  + (f" **{ds.missing} missing or changed** since the last import (marked in the grid, "
                     "left out of training and evaluation until the file is back)." if ds.missing else ""))
with st.expander("Region of interest", icon=":material/crop_free:", key=ROI_OPEN, on_change="rerun"):
    st.caption("Pixels outside the region are ignored by scores, heatmaps and pixel metrics of later runs.")
    role_note(Permission.ROI, "change the region of interest (engineer or admin)")
    if st.session_state.get(ROI_OPEN) and can(Permission.ROI):  # the editor (a canvas) is only built when opened
        roi_editor_ui(ds.id)

with factory.begin() as s:
    types = dq.defect_types(s, ds.id)
flt: ImageFilter = image_filters_ui(types, key=FILTERS)
if st.session_state.get("_datasets_sig") != (ds.id, flt):  # new dataset or filters: back to page 1
    st.session_state["_datasets_sig"] = (ds.id, flt)
    st.session_state[PAGE] = 0
selected, mask = selected_image(ds.id, flt, PAGE)

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
    gone = img.file_status != dq.PRESENT  # missing / changed since import: say so before the label
    items.append(GalleryItem(
        id=img.id, path=Path(img.path), sha256=img.sha256, caption=Path(img.rel_path).name,
        badge=f"File {img.file_status}" if gone else LABEL_TEXT.get(img.label, img.label),
        badge_color="red" if gone else LABEL_COLORS.get(img.label, "gray"),
        detail=" · ".join(x for x in (LABEL_TEXT.get(img.label) if gone else None, img.split or "unassigned",
                                      img.defect_type) if x),
        mask_path=Path(m.path) if drawn else None, mask_sha256=m.sha256 if drawn else None))
gallery_ui(items, key="datasets_grid", cache_dir=ws.cache_dir, columns=6,
           selected=selected.id if selected else None, on_click=open_image)
if selected is not None:
    st.dialog(Path(selected.rel_path).name, width=640, position="right",
              on_dismiss=close_image)(image_drawer_ui)(selected, mask, [i.id for i in images], types)
