"""One image: its picture with the current mask overlaid, its metadata, and the relabel form."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image as PILImage

from dashboard.ui import LABEL_COLORS, fmt_when
from db.models import Image, Mask
from engine.errors import InputFileError
from engine.evaluation.heatmaps import mask_overlay
from engine.intake.images import exif_transpose, open_image, read_bytes, to_rgb
from engine.intake.maskfiles import load_mask_file

DISPLAY_SIDE = 1024  # longest side shown; the overlay is computed at full resolution first
SPLITS = {"train": "Train", "test": "Test", "none": "Unassigned"}
LABELS = {"ok": "OK", "nok": "NOK", "unknown": "Unlabelled"}


@dataclass(frozen=True)
class ImageEdit:
    """What the user asked to store for the image (all fields, as the form shows them)."""

    label: str  # ok | nok | unknown
    split: str  # train | test | none
    defect_type: str | None


@st.cache_data(max_entries=64, show_spinner=False)
def display_png(path: str, sha256: str, mask_path: str | None, width: int, height: int,
                show_mask: bool) -> tuple[bytes | None, str | None]:
    """PNG bytes of the image (mask tinted red), or (None, why it cannot be shown).

    Keyed by content hashes' owners (path + sha), so an edit never shows a stale picture.
    """
    try:
        data = read_bytes(Path(path))
    except InputFileError as e:
        return None, f"{path}: {e.reason}"
    if hashlib.sha256(data).hexdigest() != sha256:
        return None, f"{path}: the file changed since it was imported (content hash differs)"
    try:
        rgb = np.asarray(to_rgb(exif_transpose(open_image(data, Path(path))), path), dtype=np.uint8)
        if show_mask and mask_path:
            rgb = mask_overlay(rgb, load_mask_file(mask_path, (height, width)), alpha=0.45)
    except InputFileError as e:
        return None, str(e)
    im = PILImage.fromarray(rgb)
    im.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue(), None


def image_view_ui(img: Image, mask: Mask | None, *, key: str) -> None:
    """The picture (mask overlay switchable) and a compact metadata table."""
    has_mask = mask is not None and mask.path is not None and mask.pixels > 0
    show = st.toggle("Show mask", value=True, key=f"{key}_show_mask", disabled=not has_mask)
    png, problem = display_png(img.path, img.sha256, mask.path if has_mask and mask else None,
                               img.width, img.height, show and has_mask)
    if problem:
        st.error(problem, icon=":material/broken_image:")
    else:
        st.image(png, width="stretch",
                 caption=f"{img.rel_path} · mask in red" if has_mask and show else img.rel_path)
    rows = {
        "Label": f":{LABEL_COLORS.get(img.label, 'gray')}-badge[{LABELS.get(img.label, img.label)}]",
        "Split": SPLITS.get(img.split or "none", img.split or "–"),
        "Defect type": img.defect_type or "–",
        "Size": f"{img.width} × {img.height} px, {img.mode}, {img.size_bytes / 1024:.0f} KiB",
        "Mask": _mask_text(mask),
        "Source": f"{img.source}, {fmt_when(img.created_at)}",
        "File": f"`{img.path}`",
        "SHA-256": f"`{img.sha256[:16]}…`",
    }
    st.markdown("  \n".join(f"**{k}:** {v}" for k, v in rows.items()))


def _mask_text(mask: Mask | None) -> str:
    if mask is None:
        return "none"
    if not mask.path or mask.pixels == 0:
        return f"no defect (version {mask.version}, {mask.author})"
    return (f"version {mask.version}, {mask.pixels:,} px, {mask.source} by {mask.author}, "
            f"{fmt_when(mask.created_at)}")


def image_edit_ui(img: Image, defect_types: list[str], *, key: str, disabled: bool = False) -> ImageEdit | None:
    """Label / split / defect type form; returns the edit when saved (`disabled`: the role may not)."""
    with st.form(f"{key}_edit_{img.id}", border=False):
        c1, c2 = st.columns(2)
        label = c1.radio("Label", list(LABELS), format_func=LABELS.__getitem__, horizontal=True,
                         index=list(LABELS).index(img.label) if img.label in LABELS else 2)
        split = c2.radio("Split", list(SPLITS), format_func=SPLITS.__getitem__, horizontal=True,
                         index=list(SPLITS).index(img.split or "none"))
        choices = sorted(set(defect_types) | ({img.defect_type} if img.defect_type else set()))
        defect = st.selectbox("Defect type", choices, index=choices.index(img.defect_type)
                              if img.defect_type in choices else None, accept_new_options=True,
                              placeholder="none — choose or type a new one",
                              help="Only kept for NOK images; OK images have none.")
        if st.form_submit_button("Save changes", icon=":material/save:", type="primary", disabled=disabled):
            return ImageEdit(label=label, split=split, defect_type=(defect or "").strip() or None)
    return None
