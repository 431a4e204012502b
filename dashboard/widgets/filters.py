"""Image filters (split, label, defect type, has mask) as one row of select boxes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import streamlit as st

_ALL = "All"
SPLIT_OPTIONS = {_ALL: None, "Train": "train", "Test": "test", "Unassigned": "none"}
LABEL_OPTIONS = {_ALL: None, "OK": "ok", "NOK": "nok", "Unlabelled": "unknown"}
MASK_OPTIONS = {_ALL: None, "With mask": True, "Without mask": False}


@dataclass(frozen=True)
class ImageFilter:
    """Keyword arguments of db.datasets.list_images / count_images (None = any)."""

    split: str | None = None  # "train" | "test" | "none" (unassigned)
    label: str | None = None  # "ok" | "nok" | "unknown"
    defect_type: str | None = None
    has_mask: bool | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return any(v is not None for v in asdict(self).values())


def image_filters_ui(defect_types: list[str], *, key: str) -> ImageFilter:
    """Four select boxes side by side; their state survives reruns under `key`_*."""
    c1, c2, c3, c4 = st.columns(4)
    split = c1.selectbox("Split", list(SPLIT_OPTIONS), key=f"{key}_split")
    label = c2.selectbox("Label", list(LABEL_OPTIONS), key=f"{key}_label")
    types = [_ALL, *defect_types]
    if st.session_state.get(f"{key}_defect") not in types:
        st.session_state.pop(f"{key}_defect", None)  # a type from another dataset
    defect = c3.selectbox("Defect type", types, key=f"{key}_defect", disabled=not defect_types)
    mask = c4.selectbox("Mask", list(MASK_OPTIONS), key=f"{key}_mask")
    return ImageFilter(split=SPLIT_OPTIONS[split], label=LABEL_OPTIONS[label],
                       defect_type=None if defect == _ALL else defect, has_mask=MASK_OPTIONS[mask])
