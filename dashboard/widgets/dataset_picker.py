"""Choose a dataset; the choice follows the user across pages (state.SELECTED_DATASET)."""

from __future__ import annotations

import streamlit as st

from dashboard.state import SELECTED_DATASET


def preferred_dataset(names: list[str], *, url: bool = False) -> str | None:
    """The dataset to preselect: ?dataset= (if `url`), else the last one chosen, else the first."""
    if not names:
        return None
    if url and st.query_params.get("dataset") in names:
        return st.query_params["dataset"]
    last = st.session_state.get(SELECTED_DATASET)
    return last if last in names else names[0]


def dataset_picker_ui(names: list[str], *, key: str, label: str = "Dataset", url: bool = False,
                      help: str | None = None) -> str | None:
    """A select box over `names`; with `url` the choice is mirrored in ?dataset=NAME."""
    if not names:
        return None
    if st.session_state.get(key) not in names:
        st.session_state[key] = preferred_dataset(names, url=url)
    name = st.selectbox(label, names, key=key, help=help)
    st.session_state[SELECTED_DATASET] = name
    if url and st.query_params.get("dataset") != name:
        st.query_params["dataset"] = name
    return name
