"""A grid of thumbnails with a button per tile, plus a pager. Generic: any page can show images.

Thumbnails come from the disk cache (engine.intake.thumbnails), keyed by content hash, so a page of
48 costs 48 small file reads after its first visit. Use:

    items = [GalleryItem(id=img.id, path=Path(img.path), sha256=img.sha256, caption=f"#{img.id}",
                         badge="NOK", badge_color="red")]
    clicked = gallery_ui(items, key="results_fp", cache_dir=workspace().cache_dir)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from engine.intake.thumbnails import get_thumbnail

PAGE_SIZE = 48
THUMB_SIZE = 160
_THREADS = 4


@dataclass(frozen=True)
class GalleryItem:
    """One tile. `thumbnail` (a ready image, e.g. a heatmap overlay) replaces the cached one."""

    id: int
    path: Path  # the original image (used to make its thumbnail once)
    sha256: str  # its registered content hash (the cache key; a changed file shows a placeholder)
    caption: str  # the tile's button label
    badge: str | None = None  # short text above the button, e.g. "NOK" or "FP 0.83"
    badge_color: str = "gray"  # st.badge colour: red, orange, yellow, blue, green, violet, gray
    detail: str | None = None  # one small line under the badge (e.g. defect type)
    mask_path: Path | None = None  # ground truth tinted red on the thumbnail
    mask_sha256: str | None = None
    thumbnail: Path | None = None


def thumbnails(cache_dir: Path, items: Sequence[GalleryItem], size: int = THUMB_SIZE) -> list[Path]:
    """The image to show for each item, in order; missing thumbnails are made in a thread pool."""
    def one(item: GalleryItem) -> Path:
        if item.thumbnail is not None:
            return item.thumbnail
        return get_thumbnail(cache_dir, item.path, item.sha256, size,
                             mask_path=item.mask_path, mask_sha256=item.mask_sha256)

    if len(items) <= 1:
        return [one(i) for i in items]
    with ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="gallery") as pool:
        return list(pool.map(one, items))


def gallery_ui(items: Sequence[GalleryItem], *, key: str, cache_dir: Path, columns: int = 6,
               selected: int | None = None, size: int = THUMB_SIZE,
               on_click: Callable[[int], None] | None = None) -> int | None:
    """Render the grid; returns the id of the tile whose button was clicked in this run.

    `selected` highlights a tile. `on_click(id)` runs as a button callback (before the rerun),
    which is the place to set session state that widgets above the grid read.
    """
    if not items:
        st.info("No images match.", icon=":material/image_not_supported:")
        return None
    paths = thumbnails(cache_dir, items, size)
    clicked: int | None = None
    for start in range(0, len(items), columns):
        cols = st.columns(columns, gap="small")
        for col, item, path in zip(cols, items[start:start + columns], paths[start:start + columns]):
            with col, st.container(gap="xsmall"):
                st.image(str(path), width="stretch")
                line = []
                if item.badge:
                    line.append(f":{item.badge_color}-badge[{item.badge}]")
                if item.detail:
                    line.append(f":gray[{item.detail}]")
                if line:
                    st.markdown(" ".join(line))
                kwargs = {"on_click": on_click, "args": (item.id,)} if on_click else {}
                if st.button(item.caption, key=f"{key}_tile_{item.id}", width="stretch", wrap=False,
                             type="primary" if item.id == selected else "secondary", **kwargs):
                    clicked = item.id
    return clicked


def pager_ui(total: int, *, key: str, per_page: int = PAGE_SIZE) -> int:
    """Previous / next / page number; returns the offset of the current page.

    The page lives in st.session_state[key]; pages that change filters should reset it
    (`st.session_state[key] = 0`).
    """
    pages = max(1, -(-total // per_page))
    page = min(max(int(st.session_state.get(key, 0)), 0), pages - 1)
    st.session_state[key] = page

    def go(to: int) -> None:
        st.session_state[key] = min(max(to, 0), pages - 1)

    first = page * per_page
    left, mid, right = st.columns([1, 3, 1], vertical_alignment="center")
    left.button("Previous", key=f"{key}_prev", icon=":material/chevron_left:", disabled=page == 0,
                on_click=go, args=(page - 1,), width="stretch")
    shown = f"{first + 1}–{min(first + per_page, total)} of {total}" if total else "0 images"
    mid.markdown(f"<div style='text-align:center'>Page <b>{page + 1}</b> of {pages} · {shown}</div>",
                 unsafe_allow_html=True)
    right.button("Next", key=f"{key}_next", icon=":material/chevron_right:", icon_position="right",
                 disabled=page >= pages - 1, on_click=go, args=(page + 1,), width="stretch")
    return first
