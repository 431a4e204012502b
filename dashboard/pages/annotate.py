"""Annotate: draw and correct defect masks, image by image through a queue.

Other pages open it with `st.session_state[ANNOTATE_IMAGE] = image_id` (and optionally
`ANNOTATE_QUEUE = [ids]` for prev/next) before `st.switch_page("dashboard/pages/annotate.py")`,
or with a link to `annotate?image=ID` (`&queue=false_negatives&run=ID` also works).
"""

import streamlit as st

from dashboard.widgets import annotate_state as S
from dashboard.widgets.annotate_editor import editor_ui
from dashboard.widgets.annotate_queue import queue_ui, show_in_url, stepper_ui, take_requests

st.title("Annotate")
take_requests()
for kind, message in S.take_flashes():  # toasts outlive the rerun a remounted canvas causes
    st.toast(message, icon=S.FLASH_ICONS[kind], duration="long" if kind in ("error", "warning") else "short")
pos = queue_ui()
if pos is not None and pos.image_id is not None:
    show_in_url(pos.image_id)
    stepper_ui(pos)
    ids = pos.ids
    after = [i for i in ids[ids.index(pos.image_id) + 1:]] if pos.image_id in ids else [i for i in ids if i > pos.image_id]
    editor_ui(pos.image_id, after[0] if after else None)
